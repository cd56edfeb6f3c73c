"""``manage.py prune_jobs --completed-older-than 7d --keep-failed 1000``: delete old finished tasks."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_jobs import retention


class Command(BaseCommand):
    help = (
        "Delete finished tasks older than the given ages, or beyond the newest N of their status, in "
        "small batches (pending and running tasks are never deleted). Ages: 90s, 15m, 12h, 7d, 2w."
    )

    def add_arguments(self, parser: Any) -> None:
        for status in retention.PRUNABLE:
            field = retention.AGE_FIELDS[retention.Status(status)]
            parser.add_argument(f"--{status}-older-than", metavar="AGE",
                                help=f"Delete {status} tasks whose {field} is older than AGE.")
            parser.add_argument(f"--keep-{status}", metavar="N",
                                help=f"Keep only the newest N {status} tasks (by {field}); delete the others.")
        parser.add_argument("--batch-size", type=int, default=retention.DEFAULT_BATCH_SIZE,
                            help=f"Rows deleted per transaction (default {retention.DEFAULT_BATCH_SIZE}).")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        policy = self.policy(options)
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be at least 1, not {options['batch_size']}.")
        counts = retention.prune(policy, batch_size=options["batch_size"], dry_run=options["dry_run"])
        self.report(counts, options)

    @staticmethod
    def policy(options: dict[str, Any]) -> dict[str, Any]:
        """``{status: {"older_than": timedelta, "keep": int}}`` from the options given."""
        policy: dict[str, Any] = {}
        for status in retention.PRUNABLE:
            limit: dict[str, Any] = {}
            age, keep = options[f"{status}_older_than"], options[f"keep_{status}"]
            try:
                if age is not None:
                    limit["older_than"] = retention.parse_duration(age, f"--{status}-older-than")
                if keep is not None:
                    if not keep.isdigit():
                        raise ValueError(f"--keep-{status}: {keep!r} is not a count; use a whole number, 0 or more")
                    limit["keep"] = int(keep)
            except ValueError as error:
                raise CommandError(str(error)) from None
            if limit:
                policy[status] = limit
        if not policy:
            raise CommandError("Nothing to prune: give at least one of --completed-older-than, "
                               "--failed-older-than, --cancelled-older-than (e.g. 7d) or --keep-completed, "
                               "--keep-failed, --keep-cancelled (e.g. 100).")
        return policy

    def report(self, counts: dict[str, int], options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "deleted": counts}, sort_keys=True))
            return
        verb = "Would delete" if options["dry_run"] else "Deleted"
        for status, count in counts.items():
            self.stdout.write(f"{verb} {count} {status} task{'' if count == 1 else 's'}")
        self.stdout.write(f"{verb} {sum(counts.values())} task(s) in all")
