"""``manage.py jobs_api_token create|list|revoke``: bearer tokens for the JSON API.

The token is printed once, on standard output alone (so ``TOKEN=$(...)`` works);
only its SHA-256 hash is stored, so it cannot be shown again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from django_jobs.models import ApiToken
from django_jobs.users import with_users


class Command(BaseCommand):
    help = "Create, list or revoke bearer tokens for the django_jobs JSON API."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a token for a user and print it (once).")
        create.add_argument("username", help="Requests with the token act as this user, with their permissions.")
        create.add_argument("--name", default="", help="What the token is for (shown in admin and list).")
        create.add_argument("--days", type=int, help="Expire after this many days (default: never).")
        listing = actions.add_parser("list", help="List tokens (never the tokens themselves).")
        listing.add_argument("--user", help="Only this user's tokens.")
        revoke = actions.add_parser("revoke", help="Revoke a token by its id.")
        revoke.add_argument("id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"handle_{options['action']}")(**options)

    def handle_create(self, username: str, name: str, days: int | None, **options: Any) -> None:
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        user = find_user(username)
        expires_at = timezone.now() + timedelta(days=days) if days else None
        row, token = ApiToken.issue(user, name=name, expires_at=expires_at)
        self.stdout.write(token)
        self.stderr.write(f"Token {row.pk} for {user.get_username()} created. Store it now: only its hash is "
                          f"kept, so it cannot be shown again. Send it as 'Authorization: Bearer <token>'.")

    def handle_list(self, user: str | None, **options: Any) -> None:
        rows = with_users(ApiToken.objects.order_by("pk"), "user")
        if user:
            rows = rows.filter(user=find_user(user))
        self.stdout.write(f"{'ID':>4}  {'USER':<16} {'NAME':<20} {'STARTS WITH':<13} {'LAST USED':<17} STATE")
        for row in rows:
            self.stdout.write(f"{row.pk:>4}  {row.user.get_username():<16.16} {row.name:<20.20} {row.hint + '…':<13} "
                              f"{short(row.last_used_at):<17} {state(row)}")

    def handle_revoke(self, id: int, **options: Any) -> None:
        row = with_users(ApiToken.objects.filter(pk=id), "user").first()
        if row is None:
            raise CommandError(f"No token with id {id}.")
        if not row.revoke():
            raise CommandError(f"Token {id} was already revoked.")
        self.stdout.write(f"Token {id} ({row.user.get_username()}, {row.name or 'no name'}) revoked.")


def find_user(username: str) -> Any:
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(f"No user {username!r}.") from None


def short(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "never"


def state(row: ApiToken) -> str:
    if row.revoked_at:
        return f"revoked {short(row.revoked_at)}"
    if row.expires_at and row.expires_at <= timezone.now():
        return f"expired {short(row.expires_at)}"
    return f"active until {short(row.expires_at)}" if row.expires_at else "active"
