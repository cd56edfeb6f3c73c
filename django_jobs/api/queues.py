"""Queue operations: which queues are paused, pause one, resume one.
Workers claim nothing from a paused queue (``django_jobs.pause_queue``)."""

from __future__ import annotations

from django.http import HttpResponse

import django_jobs

from .. import validation
from ..exceptions import InvalidJobOption
from ..models import PausedQueue
from .fields import Text
from .http import Call, bad_input, json_response
from .serializers import paused_queue

PAUSE_INPUT = {"reason": Text(max_length=500, default="", description="Shown to other operators.")}


def list_paused(call: Call) -> HttpResponse:
    rows = PausedQueue.objects.select_related("paused_by").order_by("queue")
    return json_response({"results": [paused_queue(row) for row in rows]})


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
