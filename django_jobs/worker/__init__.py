"""The worker process: claim -> job threads -> record -> heartbeat/recover -> wait.

``JobWorker`` (``process``) puts the parts together. The main thread runs the
``ClaimLoop``, claiming due tasks in batches (``claiming``) into a ``TaskBuffer``;
``JobThreads`` run them through ``django_jobs.execution``; the ``Recorder`` writes
outcomes, many in one statement when the queue is busy; ``Holdings`` is what the
worker holds and gives back; the ``Lease`` (heartbeat thread) keeps the worker's row
fresh and recovers tasks of workers that stopped beating (``recovery``); the
``CronTicker`` fires schedules; a ``Wakeup`` (with a LISTEN thread on PostgreSQL,
``wakeup``) ends the wait when there may be work.

Threads suit the usual job (I/O: mail, HTTP, queries); run more processes, on one
host or many, to use more cores.
"""

from .options import WorkerOptions, default_worker_id
from .process import JobWorker
from .recovery import recover_lost_tasks

__all__ = ["JobWorker", "WorkerOptions", "default_worker_id", "recover_lost_tasks"]
