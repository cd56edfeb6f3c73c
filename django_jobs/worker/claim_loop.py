"""The main thread's loop: keep the buffer topped up with claimed tasks, and wait.

Claims run on this thread only, one statement for up to ``batch_size`` rows. It waits
on the wakeup (an outcome written, a NOTIFY, a cron fire) or the poll interval, and
gives back waiting tasks that would sit behind slow jobs or in a queue paused meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

# django.db.Error covers InterfaceError ("connection already closed") as well as
# DatabaseError: both happen when the server restarts under a worker.
from django.db import Error as DatabaseError

from ..queues import paused_names
from ..resilience import Backoff, reconnect, worker_error
from . import claiming
from .async_lane import AsyncLane
from .buffer import TaskBuffer
from .holdings import Holdings
from .job_threads import JobThreads
from .options import WorkerOptions
from .wakeup import Wakeup

if TYPE_CHECKING:
    from ..models import ScheduledTask

logger = logging.getLogger(__name__)

# After a database error the loop waits 0.5 s, 1 s, 2 s ... up to this, then tries again:
# short, so that the queue drains again within seconds of a server's restart.
MAX_ERROR_PAUSE = 5.0


class ClaimLoop:
    def __init__(self, options: WorkerOptions, buffer: TaskBuffer, holdings: Holdings, job_threads: JobThreads,
                 wakeup: Wakeup, stopping: threading.Event, lane: AsyncLane | None = None) -> None:
        self.options = options
        self.worker_id = options.worker_id
        self.buffer = buffer
        self.holdings = holdings
        self.job_threads = job_threads
        self.lane = lane
        self.wakeup = wakeup
        self.stopping = stopping
        self.claimed_count = 0
        self.paused_checked_at = 0.0
        self.in_doubt = False  # a claim failed: it may have committed all the same
        # QUEUE_LIMITS as they are when the worker starts, and its round of flow keys.
        self.flow = claiming.new_flow()

    def run(self) -> None:
        """Claim until stopped, a limit is reached, or (``burst``) nothing is due."""
        started = time.monotonic()
        backoff = Backoff(cap=MAX_ERROR_PAUSE)
        while not self.stopping.is_set() and not self.limit_reached(started):
            # Read before claiming: a job finishing during the claim may have
            # committed a retry that this claim could not see yet.
            was_busy = bool(self.holdings.held)
            try:
                claimed = self.claim_free_slots()
                self.give_back_paused()
                backoff.reset()
            except DatabaseError as error:
                self.in_doubt = True
                pause = backoff.next()
                worker_error(self.worker_id, "claim", error, f"retrying in {pause:.1f} s")
                reconnect()
                self.stopping.wait(pause)
                continue
            if claimed:
                continue
            # Due tasks that limits held back are work to wait for, not the end of it.
            if self.options.burst and not was_busy and not self.holdings.count() and not self.flow.held_back:
                logger.info("Nothing due; burst worker %s exits", self.worker_id)
                return
            self.wakeup.wait(self.wait_time(started))

    def claim_free_slots(self) -> int:
        """Top the buffer (and the async lane) up to ``batch_size`` waiting tasks, in one
        claim; return how many claimed tasks stay here."""
        if self.in_doubt:
            self.holdings.release_orphans()
            self.in_doubt = False
        if self.holdings.has_unrecorded():
            self.holdings.release_unrecorded()  # the heartbeat does it too; here it is at once
        stuck = self.job_threads.all_stuck()
        if stuck and len(self.buffer):
            # No job thread could start more now; what waits goes to other workers.
            self.give_back_waiting()
        if self.lane is not None and self.lane.stuck() and self.lane.waiting():
            self.give_back_lane_waiting()
        threads_have_room = not stuck and len(self.buffer) <= self.options.concurrency
        if not threads_have_room and not (self.lane is not None and self.lane.has_room()):
            return 0  # enough waiting; claim when the threads (or the lane) have caught up
        waiting = len(self.buffer) + (self.lane.waiting() if self.lane is not None else 0)
        limit = self.options.batch_size - waiting
        if self.options.max_jobs is not None:
            limit = min(limit, self.options.max_jobs - self.claimed_count)
        if limit <= 0:
            return 0
        tasks = claiming.claim(self.worker_id, self.options.queues, limit, flow=self.flow)
        self.holdings.claimed(task.pk for task in tasks)
        self.claimed_count += len(tasks)
        return self.hand_out(tasks, threads_have_room)

    def hand_out(self, tasks: list[ScheduledTask], threads_have_room: bool) -> int:
        """``async def`` jobs to the lane, the rest to the job threads' buffer. A claim made
        for the lane while the threads are stuck gives its sync tasks back at once, and
        counts only what stays: the loop then waits instead of claiming them again."""
        if self.lane is None:
            self.buffer.put(tasks)
            return len(tasks)
        for_lane: list[ScheduledTask] = []
        for_threads: list[ScheduledTask] = []
        for task in tasks:
            (for_lane if self.lane.runs(task) else for_threads).append(task)
        if for_lane:
            self.lane.put(for_lane)
        if for_threads and not threads_have_room and self.job_threads.all_stuck():
            self.release_unstarted([task.pk for task in for_threads])
            return len(for_lane)
        self.buffer.put(for_threads)
        return len(tasks)

    def give_back_waiting(self) -> None:
        # Tasks would wait behind slow jobs: let other workers have them.
        released = self.release_unstarted([task.pk for task in self.buffer.take_all()])
        logger.info("Every job thread is on a slow job; %d waiting task(s) returned to the queue", released)

    def give_back_lane_waiting(self) -> None:
        # Every slot of the event loop is on a slow job: let other workers have the rest.
        assert self.lane is not None
        released = self.release_unstarted([task.pk for task in self.lane.take_all()])
        logger.info("The event loop's every slot is on a slow job; %d waiting task(s) returned to the queue", released)

    def release_unstarted(self, ids: list[int]) -> int:
        """Give back held tasks that nothing here will start; return how many went back."""
        try:
            return self.holdings.release(ids)
        except DatabaseError:
            # They are out of the buffer and the lane and nothing will run them: the
            # heartbeat thread gives them back once the database answers again.
            self.holdings.give_back_later(ids)
            raise

    def give_back_paused(self) -> None:
        """Within a poll interval of a pause, release the waiting tasks of paused queues.

        The claim already skips paused queues; this covers tasks claimed just before.
        """
        now = time.monotonic()
        if not len(self.buffer) or now - self.paused_checked_at < self.options.interval:
            return
        self.paused_checked_at = now
        paused = paused_names()
        if "*" in paused:  # pause_all(): every waiting task goes back
            paused = {task.queue for task in self.buffer.snapshot()}
        if paused and (ids := [task.pk for task in self.buffer.take_queues(paused)]):
            logger.info("Queue(s) %s paused; %d waiting task(s) returned", ",".join(sorted(paused)),
                        self.holdings.release(ids))

    def wait_time(self, started: float) -> float:
        """The poll interval, cut short so that --max-seconds is kept."""
        if self.options.max_seconds is None:
            return self.options.interval
        left = self.options.max_seconds - (time.monotonic() - started)
        return max(0.0, min(self.options.interval, left))

    def limit_reached(self, started: float) -> bool:
        if self.options.max_jobs is not None and self.claimed_count >= self.options.max_jobs:
            return True
        return self.options.max_seconds is not None and time.monotonic() - started >= self.options.max_seconds
