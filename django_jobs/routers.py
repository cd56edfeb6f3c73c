"""A queue database of its own: ``DJANGO_JOBS["DATABASE"] = "queue"`` and ``JobsRouter``.

Every table of the app lives on that alias: the worker, enqueue, admin, the API, cron,
statistics and the Django Tasks backend all reach it through Django's router
(``router.db_for_write(ScheduledTask)``), so the router is the one place that decides.
Users add it to ``DATABASE_ROUTERS`` (Django offers no supported way for an app to
install a router itself); system check ``django_jobs.E009`` says when it is missing.

The app's models point at the user model (a task's owner, a schedule's owner, a
paused queue's ``paused_by``, an API token's user), which stays on its own database.
No database can hold a foreign key into another, so when the queue has a database of
its own those columns are plain ids (``user_link``): the app clears or deletes the
rows of a deleted user itself (``forget_deleted_user``), and reads users with a second
query where it would join them (``users``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, models

APP_LABEL = "django_jobs"


def queue_alias() -> str | None:
    """The alias named by ``DJANGO_JOBS["DATABASE"]``, or None (the app follows your routers)."""
    return (getattr(settings, "DJANGO_JOBS", None) or {}).get("DATABASE")


def apart_from_users() -> bool:
    """Whether the app's tables live on another database than the user model's (the default one).

    Read when the models are defined (their foreign keys depend on it), so it takes the
    setting as the process started with it.
    """
    alias = queue_alias()
    return alias is not None and alias != DEFAULT_DB_ALIAS


def user_link(on_delete: Any) -> dict[str, Any]:
    """The arguments of a foreign key to the user model: a real constraint on one database,
    a plain id when the app's tables are apart (the app applies ``on_delete`` itself)."""
    if apart_from_users():
        return {"on_delete": models.DO_NOTHING, "db_constraint": False}
    return {"on_delete": on_delete}


class JobsRouter:
    """Sends the app's reads, writes and migrations to ``DJANGO_JOBS["DATABASE"]``.

    No opinion on anything when the setting is unset, so that a project's own routers
    (or the default database) decide as before. The queue's alias, when it is not the
    default one, holds the app's tables only: other apps are not migrated there.
    """

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return self._route(model, hints)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str | None:
        return self._route(model, hints)

    def allow_relation(self, first: models.Model, second: models.Model, **hints: Any) -> bool | None:
        # A task's owner (a user, on the default database) may be set on a task that
        # lives on the queue's database: the column is a plain id there (``user_link``).
        if queue_alias() is None:
            return None
        ours = (first._meta.app_label == APP_LABEL, second._meta.app_label == APP_LABEL)
        return True if any(ours) else None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        alias = queue_alias()
        if alias is None:
            return None
        if app_label == APP_LABEL:
            return db == alias
        return False if db == alias and alias != DEFAULT_DB_ALIAS else None

    @staticmethod
    def _route(model: type[models.Model], hints: dict[str, Any]) -> str | None:
        alias = queue_alias()
        if alias is None:
            return None
        if model._meta.app_label == APP_LABEL:
            return alias
        # A user read through a task (``task.owner``): Django would otherwise take the
        # task's database, where no user table is. The user's own database is the one
        # the other routers (or the default) give it without the hint.
        instance = hints.get("instance")
        if instance is not None and instance._meta.app_label == APP_LABEL:
            return users_alias(model)
        return None


def users_alias(model: type[models.Model]) -> str:
    """The database of ``model`` as the project's routers other than ours place it."""
    from django.db import router

    for other in router.routers:
        if isinstance(other, JobsRouter) or not hasattr(other, "db_for_read"):
            continue
        chosen = other.db_for_read(model)
        if chosen:
            return str(chosen)
    return DEFAULT_DB_ALIAS
