"""Users beside the app's rows, on one database or on two (``DJANGO_JOBS["DATABASE"]``).

On one database a task's owner is joined (``select_related``) and filtered by its
username in the same query. When the app's tables live on a database of their own, no
query can join the two: users are read with a second query (``prefetch_related``, which
Django sends to the user model's database) and filters by a user's field become a list
of ids. The rows of a deleted user are cleared here, as the foreign key would have.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.db.models import Model, Q, QuerySet


def apart() -> bool:
    """Whether the user model and the app's tables are on two databases."""
    from .models import ScheduledTask  # the models import this module (ApiToken.authenticate)

    return router.db_for_read(get_user_model()) != router.db_for_read(ScheduledTask)


def with_users(queryset: QuerySet[Any], *fields: str) -> QuerySet[Any]:
    """``queryset`` with the users of ``fields`` loaded: joined, or read in one more query."""
    return queryset.prefetch_related(*fields) if apart() else queryset.select_related(*fields)


def user_is(field: str, **lookups: Any) -> Q:
    """Rows whose ``field`` is a user matching ``lookups`` (``user_is("owner", username="ann")``)."""
    if not apart():
        return Q(**{f"{field}__{name}": value for name, value in lookups.items()})
    ids = list(get_user_model()._default_manager.filter(**lookups).values_list("pk", flat=True))
    return Q(**{f"{field}_id__in": ids})


def forget_deleted_user(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    """``post_delete`` of the user model, connected when the app's tables are apart:
    once the deletion commits, what the foreign keys would have done (SET_NULL, CASCADE)."""
    user_id = instance.pk
    transaction.on_commit(lambda: clear_user(user_id), using=using)


def clear_user(user_id: Any) -> None:
    from .models import ApiToken, CronSchedule, PausedQueue, ScheduledTask  # as above

    ScheduledTask.objects.filter(owner_id=user_id).update(owner=None)
    CronSchedule.objects.filter(owner_id=user_id).update(owner=None)
    PausedQueue.objects.filter(paused_by_id=user_id).update(paused_by=None)
    ApiToken.objects.filter(user_id=user_id).delete()
