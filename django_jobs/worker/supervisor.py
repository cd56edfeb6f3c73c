"""``run_jobworker --processes N``: one process that keeps N worker processes running.

Each child is an ordinary ``run_jobworker`` process with the supervisor's own options
(``--processes`` left out). The supervisor restarts a child that exits, whatever its
status, with a backoff per slot when children keep dying young; forwards SIGTERM and
SIGINT to every child (the first: they finish running jobs; a second: they stop at
once) and restarts nothing after the first; and exits once every child has exited:
0 if each child's last exit status was 0, else 1. With ``--burst`` a child that exits
0 has drained the queues and is not restarted.

Children start in a session of their own, so that a Ctrl-C on the terminal reaches
them once, through the supervisor, and not twice. On Linux each child is sent SIGTERM
by the kernel if the supervisor dies (even of SIGKILL), so none outlives it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.1   # seconds between looks at the children and at signals received
FIRST_DELAY = 1.0     # a child that died young is restarted after 1 s, 2 s, 4 s ...
MAX_DELAY = 30.0      # ... at most this long
STABLE_AFTER = 10.0   # a child that lived this long is restarted at once, its slot's backoff reset
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# The argv of child ``serial`` (counted from 1, restarts included) in slot ``slot`` (from 0).
ChildCommand = Callable[[int, int], list[str]]


@dataclass
class RestartBackoff:
    """How long a slot waits before starting a child again, by how long the last one lived."""

    quick_exits: int = 0

    def delay(self, lived: float) -> float:
        if lived >= STABLE_AFTER:
            self.quick_exits = 0
            return 0.0
        self.quick_exits += 1
        return min(MAX_DELAY, FIRST_DELAY * 2 ** (self.quick_exits - 1))


@dataclass
class Slot:
    """One of the N places for a worker process, and what happened to its last child."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    last_status: int | None = None
    restart_at: float | None = None   # monotonic time of the next start; None: not waiting
    done: bool = False                # burst child that exited 0: the queues are drained
    backoff: RestartBackoff = field(default_factory=RestartBackoff)


class Supervisor:
    """Run with ``Supervisor(n, command, burst=...).run()``; returns the exit status."""

    def __init__(self, processes: int, command: ChildCommand, *, burst: bool = False) -> None:
        self.slots = [Slot(index) for index in range(processes)]
        self.command = command
        self.burst = burst
        self.signals: list[int] = []      # received, not yet forwarded (appended by the handler)
        self.signals_forwarded = 0
        self.children_started = 0
        self.pdeathsig = parent_death_signal()

    def run(self) -> int:
        self.install_signal_handlers()
        logger.info("Supervisor pid=%d starting %d worker processes%s", os.getpid(), len(self.slots),
                    " (burst: each exits once nothing is due)" if self.burst else "")
        if self.pdeathsig is None:
            logger.warning("Supervisor: no PR_SET_PDEATHSIG on %s: children outlive a supervisor killed with SIGKILL",
                           sys.platform)
        for slot in self.slots:
            self.start(slot)
        while any(slot.process is not None or slot.restart_at is not None for slot in self.slots):
            self.forward_signals()
            self.reap()
            self.restart_due()
            time.sleep(POLL_INTERVAL)
        return self.exit_status()

    @property
    def stopping(self) -> bool:
        return self.signals_forwarded > 0 or bool(self.signals)

    # -- children ------------------------------------------------------------------------
    def start(self, slot: Slot) -> None:
        self.children_started += 1
        slot.process = subprocess.Popen(self.command(slot.index, self.children_started), env=child_environment(),
                                        start_new_session=True, preexec_fn=self.pdeathsig)
        slot.started_at, slot.restart_at = time.monotonic(), None
        logger.info("Supervisor: worker process %d started, pid=%d", slot.index + 1, slot.process.pid)

    def reap(self) -> None:
        for slot in self.slots:
            if slot.process is None or (status := slot.process.poll()) is None:
                continue
            lived = time.monotonic() - slot.started_at
            pid, slot.process, slot.last_status = slot.process.pid, None, status
            if self.stopping:
                logger.info("Supervisor: worker process pid=%d exited with %s", pid, describe(status))
            elif self.burst and status == 0:
                slot.done = True
                logger.info("Supervisor: worker process pid=%d drained the queues and exited", pid)
            else:
                delay = slot.backoff.delay(lived)
                slot.restart_at = time.monotonic() + delay
                logger.warning("Supervisor: worker process pid=%d exited with %s after %.1f s; restarting in %.1f s",
                               pid, describe(status), lived, delay)

    def restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self.stopping:
                self.start(slot)

    def exit_status(self) -> int:
        statuses = [slot.last_status for slot in self.slots]
        code = 0 if all(status == 0 for status in statuses) else 1
        logger.info("Supervisor pid=%d exits with status %d (last exit of each worker process: %s)", os.getpid(),
                    code, ", ".join(describe(status) for status in statuses if status is not None))
        return code

    # -- signals ---------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        # Only noted here; the loop forwards them, so that a child started meanwhile is not missed.
        signal.signal(signal.SIGTERM, lambda number, frame: self.signals.append(number))
        signal.signal(signal.SIGINT, lambda number, frame: self.signals.append(number))

    def forward_signals(self) -> None:
        while self.signals:
            number = self.signals.pop(0)
            self.signals_forwarded += 1
            children = [slot.process for slot in self.slots if slot.process is not None]
            for slot in self.slots:
                slot.restart_at = None
            logger.info("Supervisor: %s (%s) forwarded to %d worker process(es): %s; %s",
                        signal.Signals(number).name, "first" if self.signals_forwarded == 1 else "again",
                        len(children), " ".join(f"pid={child.pid}" for child in children),
                        "they finish running jobs, nothing is restarted" if self.signals_forwarded == 1
                        else "they stop at once")
            for child in children:
                child.send_signal(number)


def describe(status: int | None) -> str:
    """An exit status as operators read it: ``status 3``, ``signal SIGKILL``."""
    if status is None:
        return "no status"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


def parent_death_signal() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` asking the kernel to send the child SIGTERM when its parent dies.

    SIGTERM, not SIGKILL: an orphaned worker stops as if asked, finishing its running jobs
    and giving back what it holds. Elsewhere None (nothing equivalent and this simple).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl   # looked up before fork, not in the child
    supervisor = os.getpid()

    def die_with_supervisor() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != supervisor:   # the supervisor died before the request took effect
            os._exit(1)

    return die_with_supervisor


# -- each child's command line -------------------------------------------------------------
def child_environment() -> dict[str, str]:
    """The supervisor's environment (``DJANGO_SETTINGS_MODULE`` included, as ``manage.py``
    or ``--settings`` set it), with the supervisor's first import path in front of PYTHONPATH.

    ``python -m django`` puts the working directory first on the child's path; the
    supervisor's own first entry (``manage.py``'s directory, or ``--pythonpath``) is
    where the project's modules were found, wherever it was started from.
    """
    environment = dict(os.environ)
    first = os.path.abspath(sys.path[0] or os.curdir)
    if first != os.getcwd():
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [first, environment.get("PYTHONPATH")]))
    return environment


class WorkerCommand:
    """``python -m django run_jobworker`` with the supervisor's options, as the parser read them.

    Rebuilt from the parsed options rather than copied from ``sys.argv``, so that it is
    the same whether the supervisor was started by ``manage.py``, ``django-admin``,
    ``python -m django`` or ``call_command``. Two values cannot be shared by workers on
    one host: a ``--worker-id NAME`` becomes ``NAME-<n>`` (n counts every child started,
    so a restarted child never takes over the row of the dead one, whose tasks must be
    recovered), and a ``--metrics-port P`` becomes ``P + slot``.
    """

    def __init__(self, parser: argparse.ArgumentParser, options: Mapping[str, Any]) -> None:
        self.parser = parser
        self.options = dict(options)

    def __call__(self, slot: int, serial: int) -> list[str]:
        options = dict(self.options)
        if options.get("worker_id"):
            options["worker_id"] = f"{options['worker_id']}-{serial}"
        if options.get("metrics_port"):
            options["metrics_port"] += slot
        return [sys.executable, "-m", "django", "run_jobworker", *command_line(self.parser, options, {"processes"})]


def command_line(parser: argparse.ArgumentParser, options: Mapping[str, Any], leave_out: set[str]) -> list[str]:
    """Arguments that ``parser`` reads back as ``options`` (those at their default left out)."""
    arguments: list[str] = []
    # argparse has no public list of a parser's options; Django's call_command reads it too.
    for action in parser._actions:
        if not action.option_strings or action.dest in leave_out or action.dest in ("help", "version"):
            continue
        value = options.get(action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:        # store_true / store_false
            arguments.append(flag)
        elif action.nargs is None:
            arguments += [flag, str(value)]
        else:
            raise TypeError(f"{flag} takes {action.nargs!r} values: not passed on to worker processes")
    return arguments
