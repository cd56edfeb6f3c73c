"""The async lane: a worker's ``async def`` jobs on one event loop, many at once.

Why: a job thread that runs an ``async def`` job holds its thread through every
``await``, so four threads awaiting half a second each run eight jobs a second. Here
one thread runs an event loop on which up to ``capacity`` (``--async-concurrency``)
such jobs are in flight together, beside the job threads, which keep the sync jobs: a
sync job never runs on the loop (it would stop every job on it).

The claim loop hands the lane the async tasks of each claim (``put``); the lane starts
them as slots free up and gives each outcome to the recorder, as a job thread does.
Up to ``prefetch`` (the batch size) tasks may wait here beyond the full loop, so that a
slot freed is filled at once rather than after an outcome is written and a claim made
(on PostgreSQL that wait took 2,000 half-second jobs from 400/s towards 255/s). What
waits here is held but not started: it is given back on a stop, and, like the buffer's
tasks, when no job on a full loop has finished for ``PREFETCH_HOLD`` (slow jobs: other
workers may have room).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..execution.calling import is_async
from ..execution.executor import attempt_async
from ..registry import registry
from ..resilience import worker_error
from .holdings import Holdings
from .job_threads import PREFETCH_HOLD
from .recorder import Recorder

if TYPE_CHECKING:
    from ..models import ScheduledTask


class AsyncLane:
    def __init__(self, worker_id: str, capacity: int, holdings: Holdings, recorder: Recorder,
                 prefetch: int = 0) -> None:
        self.worker_id = worker_id
        self.capacity = capacity
        self.prefetch = prefetch
        self._progress_at = time.monotonic()  # a job of the lane started or finished
        self.holdings = holdings
        self.recorder = recorder
        self._waiting: deque[ScheduledTask] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._ready = threading.Event()
        self._kinds: dict[str, bool] = {}  # job name -> async, looked up once (the claim loop's thread only)
        self.thread: threading.Thread | None = None

    # -- from the claim loop's thread -------------------------------------------------
    def start(self, spawn: Callable[[Callable[[], None], str], threading.Thread]) -> None:
        self.thread = spawn(self.run, "django-jobs-async")
        self._ready.wait()

    def put(self, tasks: list[ScheduledTask]) -> None:
        with self._lock:
            self._waiting.extend(tasks)
        self._wake()

    def runs(self, task: ScheduledTask) -> bool:
        """Whether ``task`` is one of the lane's: its job is ``async def``. A job this
        worker does not know goes to a job thread, which fails it as unknown."""
        kind = self._kinds.get(task.identifier)
        if kind is None:
            try:
                kind = is_async(registry.get(task.identifier))
            except Exception:
                kind = False
            self._kinds[task.identifier] = kind
        return kind

    def has_room(self) -> bool:
        """Whether a task claimed now would start at once, or as soon as a slot frees."""
        with self._lock:
            return len(self._waiting) + self._in_flight < self.capacity + self.prefetch and not self._stuck()

    def stuck(self) -> bool:
        """The loop is full and none of its jobs started or finished for ``PREFETCH_HOLD``:
        what waits here would wait behind slow jobs."""
        with self._lock:
            return self._stuck()

    def _stuck(self) -> bool:
        return self._in_flight >= self.capacity and time.monotonic() - self._progress_at >= PREFETCH_HOLD

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def take_all(self) -> list[ScheduledTask]:
        """Remove every waiting task (to release them); none of them has started."""
        with self._lock:
            tasks = list(self._waiting)
            self._waiting.clear()
            return tasks

    def close(self) -> None:
        """Start what is waiting, then stop once nothing is in flight."""
        with self._lock:
            self._closed = True
        self._wake()

    def wait(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for the lane to end; True if it did."""
        if self.thread is None:
            return True
        self.thread.join(grace)
        return not self.thread.is_alive()

    def _wake(self) -> None:
        loop, kick = self._loop, self._kick
        if loop is not None and kick is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(kick.set)
            except RuntimeError:  # closed between the check and the call: nothing left to wake
                pass

    # -- on the lane's own thread -----------------------------------------------------
    def run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._kick = loop, asyncio.Event()
        self._ready.set()
        started: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones
        while True:
            for task in self._next_to_start():
                running = asyncio.create_task(self._run_one(task))
                started.add(running)
                running.add_done_callback(started.discard)
            with self._lock:
                if self._closed and not self._waiting and not self._in_flight:
                    return
            await self._kick.wait()
            self._kick.clear()

    def _next_to_start(self) -> list[ScheduledTask]:
        with self._lock:
            free = self.capacity - self._in_flight
            chosen = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            self._in_flight += len(chosen)
            if chosen:
                self._progress_at = time.monotonic()
            return chosen

    async def _run_one(self, task: ScheduledTask) -> None:
        try:
            outcome = await attempt_async(task, self.worker_id)
        except Exception as error:
            # Not the job (its exceptions are its outcome) but our plumbing around it:
            # hand the task back for another try, as a job thread does.
            worker_error(self.worker_id, "run", error, f"task {task.pk} will be given back to the queue")
            self.holdings.give_back_later([task.pk])
        else:
            self.recorder.put(task, outcome)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._progress_at = time.monotonic()
            assert self._kick is not None
            self._kick.set()
