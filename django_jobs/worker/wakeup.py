"""How an idle worker learns that there may be work: a timer, and where the database
engine can listen (PostgreSQL) a connection that hears the NOTIFY each enqueue sends
on commit.

Polling stays on as the fallback: a lost notification only delays a task by one
poll interval, it never loses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from django.db import router

from ..db import engine
from ..models import ScheduledTask

logger = logging.getLogger(__name__)

RECONNECT_PAUSE = 1.0
# How often the listener looks up from the connection to see whether the worker is stopping.
HEARING_TIMEOUT = 0.5


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
    """Sets ``wakeup`` when a task is enqueued to one of ``queues`` (engines that ``can_listen``)."""

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
        return engine(router.db_for_write(ScheduledTask)).can_listen

    @staticmethod
    def why_not() -> str | None:
        """Why this database's idle workers poll although it can notify, or None."""
        return engine(router.db_for_write(ScheduledTask)).why_not_listening

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
        with engine(router.db_for_write(ScheduledTask)).listening() as heard:
            self.listening.set()
            while not self.stopped.is_set():
                for queue in heard(HEARING_TIMEOUT):
                    if not self.queues or queue in self.queues or queue == "*":
                        self.wakeup.set()
