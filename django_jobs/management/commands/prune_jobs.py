"""``manage.py prune_jobs --completed-older-than 7d --failed-older-than 30d``: delete old finished tasks."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_jobs import retention


class Command(BaseCommand):
    help = (
        "Delete finished tasks older than the given ages, in small batches (pending and running "
        "tasks are never deleted). Ages: 90s, 15m, 12h, 7d, 2w."
    )

    def add_arguments(self, parser: Any) -> None:
        for status in retention.PRUNABLE:
            field = retention.AGE_FIELDS[retention.Status(status)]
            parser.add_argument(f"--{status}-older-than", metavar="AGE",
                                help=f"Delete {status} tasks whose {field} is older than AGE.")
        parser.add_argument("--batch-size", type=int, default=retention.DEFAULT_BATCH_SIZE,
                            help=f"Rows deleted per transaction (default {retention.DEFAULT_BATCH_SIZE}).")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        ages = self.ages(options)
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be at least 1, not {options['batch_size']}.")
        counts = retention.prune(ages, batch_size=options["batch_size"], dry_run=options["dry_run"])
        self.report(counts, options)

    @staticmethod
    def ages(options: dict[str, Any]) -> dict[str, Any]:
        ages = {}
        for status in retention.PRUNABLE:
            value = options[f"{status}_older_than"]
            if value is not None:
                try:
                    ages[status] = retention.parse_duration(value, f"--{status}-older-than")
                except ValueError as error:
                    raise CommandError(str(error)) from None
        if not ages:
            raise CommandError("Nothing to prune: give at least one of --completed-older-than, "
                               "--failed-older-than, --cancelled-older-than (e.g. 7d).")
        return ages

    def report(self, counts: dict[str, int], options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "deleted": counts}, sort_keys=True))
            return
        verb = "Would delete" if options["dry_run"] else "Deleted"
        for status, count in counts.items():
            self.stdout.write(f"{verb} {count} {status} task{'' if count == 1 else 's'}")
        self.stdout.write(f"{verb} {sum(counts.values())} task(s) in all")
