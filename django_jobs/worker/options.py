"""How one worker process is asked to run: its queues, threads, batch and limits."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from ..conf import jobs_settings


@dataclass
class WorkerOptions:
    queues: list[str] | None = None
    concurrency: int = field(default_factory=lambda: jobs_settings.CONCURRENCY)
    async_concurrency: int = field(default_factory=lambda: jobs_settings.ASYNC_CONCURRENCY)
    interval: float = field(default_factory=lambda: jobs_settings.POLL_INTERVAL)
    batch_size: int = field(default_factory=lambda: jobs_settings.BATCH_SIZE)
    max_jobs: int | None = None
    max_seconds: float | None = None
    burst: bool = False
    worker_id: str = ""
    cron: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("concurrency and batch size must be at least 1")
        if self.async_concurrency < 0:
            raise ValueError("async concurrency must be at least 0 (0: async jobs run on the job threads)")
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        self.worker_id = self.worker_id or default_worker_id()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
