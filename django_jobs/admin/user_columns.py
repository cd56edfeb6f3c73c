"""Columns that show a user (a task's owner, a token's user, who paused a queue).

On one database the list joins the user table. When the app's tables have a database
of their own (``DJANGO_JOBS["DATABASE"]``) no query can join it: the users of a page
are read in one more query, from the user model's database.
"""

from __future__ import annotations

from typing import Any

from .. import users


class UserColumns:
    """ModelAdmin mixin; ``user_columns`` names the foreign keys to the user model shown in the list."""

    user_columns: tuple[str, ...] = ()

    def get_list_select_related(self, request: Any) -> Any:
        if users.apart():
            return ()  # not False: Django would then join every foreign key of list_display
        return super().get_list_select_related(request)  # type: ignore[misc]

    def get_queryset(self, request: Any) -> Any:
        rows = super().get_queryset(request)  # type: ignore[misc]
        return rows.prefetch_related(*self.user_columns) if users.apart() else rows
