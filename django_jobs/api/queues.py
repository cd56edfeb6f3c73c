"""Queue operations: which queues are paused, pause one, resume one, pause and resume
all of them (the seeds' ``POST scheduler/pause|resume``). Workers claim nothing from a
paused queue (``django_jobs.pause_queue``), nor anything at all, nor fire cron, under
``django_jobs.pause_all``."""

from __future__ import annotations

from django.http import HttpResponse

import django_jobs

from .. import validation
from ..exceptions import InvalidJobOption
from ..models import PausedQueue
from ..queues import all_paused
from ..users import with_users
from ..validation import ALL_QUEUES
from .fields import Text
from .http import Call, bad_input, json_response
from .serializers import paused_queue

PAUSE_INPUT = {"reason": Text(max_length=500, default="", description="Shown to other operators.")}


def list_paused(call: Call) -> HttpResponse:
    rows = with_users(PausedQueue.objects.order_by("queue"), "paused_by")
    everything = next((row for row in rows if row.queue == ALL_QUEUES), None)
    return json_response({"results": [paused_queue(row) for row in rows if row.queue != ALL_QUEUES],
                          "all": paused_queue(everything) if everything else None})


def pause_all(call: Call) -> HttpResponse:
    """Pause every queue and cron: 200 whether it changed or was in force already."""
    changed = django_jobs.pause_all(by=call.user, reason=call.body["reason"])
    return scheduler_state(changed)


def resume_all(call: Call) -> HttpResponse:
    """Undo ``scheduler/pause`` (queues paused one by one stay paused); idle workers are woken."""
    return scheduler_state(django_jobs.resume_all())


def scheduler_state(changed: bool) -> HttpResponse:
    pause = all_paused()
    return json_response({"paused": pause is not None, "changed": changed,
                          "pause": paused_queue(pause) if pause else None})


def pause(call: Call) -> HttpResponse:
    """Pause the queue: 200 whether it was running (changed) or paused already."""
    name = call.params["name"]
    try:
        validation.queue(name)  # DJANGO_JOBS["QUEUES"], when set, names the queues there are
    except InvalidJobOption as error:
        raise bad_input("name", str(error)) from None
    changed = django_jobs.pause_queue(name, by=call.user, reason=call.body["reason"])
    return json_response({"queue": name, "paused": True, "changed": changed})


def resume(call: Call) -> HttpResponse:
    """Resume the queue: 200 whether it was paused (changed) or not."""
    name = call.params["name"]
    changed = django_jobs.resume_queue(name)
    return json_response({"queue": name, "paused": False, "changed": changed})
