"""How an idle worker learns that there may be work: a timer, and on PostgreSQL
a LISTEN connection that hears the NOTIFY each enqueue sends on commit.

Polling stays on as the fallback: a lost notification only delays a task by one
poll interval, it never loses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from django.db import connections, router

from ..db import engine
from ..models import ScheduledTask
from ..notify import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

RECONNECT_PAUSE = 1.0


class Wakeup:
    """An event the worker waits on; anything that may mean work sets it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke


class NotificationListener(threading.Thread):
    """Sets ``wakeup`` when a task is enqueued to one of ``queues`` (PostgreSQL, psycopg 3)."""

    def __init__(self, wakeup: Wakeup, queues: Iterable[str] | None, stopped: threading.Event,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name="django-jobs-listener", daemon=True)
        self.on_error = on_error
        self.wakeup = wakeup
        self.queues = set(queues or ())
        self.stopped = stopped
        self.listening = threading.Event()

    @staticmethod
    def available() -> bool:
        if not engine(router.db_for_write(ScheduledTask)).can_notify:
            return False
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        return is_psycopg3

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.listen()
            except Exception as error:  # the database went away: poll until it is back
                self.listening.clear()
                if self.on_error is not None:
                    self.on_error(error)
                else:
                    logger.warning("LISTEN connection lost (%s); relying on polling until it is back", error)
                self.stopped.wait(RECONNECT_PAUSE)

    def listen(self) -> None:
        raw = open_raw_connection()
        try:
            raw.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.listening.set()
            while not self.stopped.is_set():
                for notification in raw.notifies(timeout=0.5):
                    if not self.queues or notification.payload in self.queues or notification.payload == "*":
                        self.wakeup.set()
        finally:
            raw.close()


def open_raw_connection():
    """A new psycopg connection with the project's settings, outside Django's pool."""
    wrapper = connections[router.db_for_write(ScheduledTask)]
    raw = wrapper.get_new_connection(wrapper.get_connection_params())
    raw.autocommit = True
    return raw
