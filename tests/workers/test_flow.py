"""Flow control kept by real worker processes on the real test database.

tests/test_flow_control.py checks the claim statement by statement; here three
``run_jobworker`` processes compete for limited tasks, and each test judges what
happened by what the jobs wrote themselves (``Execution``: pid, start and end time of
every call), by the task rows (``started_at`` is the claim time, the start a rate
counts; ``executed_at`` the completion) and by the event trail (a ``TaskEvent`` row for
every claim and outcome, written in the change's own transaction):

1. a concurrency limit per key holds at every instant across three workers, and a
   key with a short backlog is not stuck behind a key with a long one;
2. a rate holds in every fixed window, and so within twice the rate in any sliding one;
3. workers killed with SIGKILL mid-run: the limit still holds, nothing is lost;
4. a worker whose clock is behind the others' does not start tasks in a window
   already full;
5. a burst worker does not exit while a limit holds back due tasks.

Run with ``-s`` to see the figures each test measures.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from django.db import connection
from django.utils import timezone

from django_jobs.models import ScheduledTask, TaskEvent, Worker
from tests.conftest import wait_until
from tests.factories import WorkerFactory
from tests.processes import Watched
from tests.testapp import jobs
from tests.testapp.models import Execution

pytestmark = [pytest.mark.once_per_database, pytest.mark.django_db(transaction=True), pytest.mark.slow]

COMPLETED = ScheduledTask.Status.COMPLETED
FAILED = ScheduledTask.Status.FAILED
STARTED = TaskEvent.Kind.STARTED

LIMIT = 2  # tests.limited_record: concurrency=2 per key
LONG, SHORT = "A", "B"  # the keys: a backlog of 60 tasks, and 10 enqueued behind it
LONG_TASKS, SHORT_TASKS = 60, 10
PAUSE = 0.2  # seconds each limited job runs
RATE, RATE_TASKS = 5, 30  # tests.rated_record: rate="5/s"
TOLERANCE = 0.001  # the rows store microseconds; time.time() has more digits


# -- worker processes ------------------------------------------------------------------------
def start(workers, name: str, *arguments: str, env: dict[str, str] | None = None) -> Watched:
    return Watched(workers.start("--worker-id", name, "--no-cron", *arguments, env=env), name)


def start_three(workers, prefix: str, *arguments: str, env: dict[str, str] | None = None) -> list[Watched]:
    """Three workers, registered (so ready to claim) before the test enqueues anything."""
    pool = [start(workers, f"{prefix}-{number}", *arguments, env=env) for number in (1, 2, 3)]
    wait_registered(pool)
    return pool


def wait_registered(pool: list[Watched]) -> None:
    # A worker still importing Django has no signal handler yet: SIGTERM would kill it.
    names = {worker.name for worker in pool}
    wait_for(lambda: set(Worker.objects.filter(worker_id__in=names).values_list("worker_id", flat=True)) == names,
             pool, 60, "the workers registering")


def stop(*pool: Watched, timeout: float = 30.0) -> None:
    """SIGTERM each worker; each must finish what it runs and exit 0."""
    for worker in pool:
        worker.process.send_signal(signal.SIGTERM)
    for worker in pool:
        try:
            code = worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{worker.name} still running {timeout}s after SIGTERM\n{worker.output()}")
        assert code == 0, f"{worker.name} exited {code} after SIGTERM\n{worker.output()}"


def wait_for(predicate, alive: Iterable[Watched], timeout: float, what: str):
    """``wait_until`` that fails at once if a worker that should live has exited, or a task failed."""
    alive = list(alive)

    def check():
        for worker in alive:
            if not worker.alive():
                pytest.fail(f"{worker.name} exited while waiting for {what}\n{worker.output()}")
        if failed := list(ScheduledTask.objects.filter(status=FAILED).values_list("id", "error_message")[:5]):
            pytest.fail(f"tasks failed while waiting for {what}: {failed}")

    return wait_until(predicate, timeout=timeout, interval=0.1, check=check,
                      explain=lambda: f"{what} not within {timeout}s: {status_counts()}\n"
                                      + "\n".join(worker.output() for worker in alive))


def wait_for_completion(alive: list[Watched], timeout: float = 60.0) -> None:
    wait_for(lambda: set(status_counts()) == {COMPLETED}, alive, timeout, "every task completed")


def status_counts() -> dict[str, int]:
    return dict(Counter(ScheduledTask.objects.values_list("status", flat=True)))


# -- what ran ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One call of a job, as the job recorded it."""

    task_id: int
    key: str
    pid: int
    started: float
    ended: float | None


def runs_by_task() -> dict[int, list[Run]]:
    key_of = dict(ScheduledTask.objects.values_list("id", "concurrency_key"))
    runs: dict[int, list[Run]] = defaultdict(list)
    for task_id, pid, started, ended in Execution.objects.values_list("task_id", "pid", "started", "ended"):
        runs[task_id].append(Run(task_id, key_of.get(task_id, "?"), pid, started, ended))
    return {task_id: sorted(task_runs, key=lambda run: run.started) for task_id, task_runs in runs.items()}


def most_at_once(intervals: list[tuple[float, float]]) -> tuple[int, float]:
    """The most half-open intervals [start, end) open at one instant, and the first such instant.

    A sweep: +1 at each start, -1 at each end; an end sorts before a start at the same
    time, so a slot handed over in the same microsecond is not counted twice."""
    points = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most, at, open_now = 0, 0.0, 0
    for instant, change in points:
        open_now += change
        if open_now > most:
            most, at = open_now, instant
    return most, at


def most_running_per_key(runs: dict[int, list[Run]], end_of) -> dict[str, tuple[int, float]]:
    """Per key, the most executions running at one instant (``end_of(run)``: when it stopped)."""
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for task_runs in runs.values():
        for run in task_runs:
            by_key[run.key].append((run.started, end_of(run)))
    return {key: most_at_once(intervals) for key, intervals in by_key.items()}


def running_at(runs: dict[int, list[Run]], key: str, instant: float, end_of) -> list[Run]:
    """The executions of ``key`` running at ``instant`` (for failure messages)."""
    return [run for task_runs in runs.values() for run in task_runs
            if run.key == key and run.started <= instant < end_of(run)]


def most_held_per_key() -> dict[str, int]:
    """Per key, the most tasks ``running`` at once, replaying the event trail in id order.

    ``running`` is what the claim counts (tasks claimed and waiting in a worker's buffer
    included), so this checks the claim itself, where ``Execution`` rows show only the
    jobs' calls. Exact, with no clock involved: every change of a task writes its event
    in its own transaction, and ids grow in the order they are taken. A claim takes its
    events' ids under the lock of its key, after counting the key's running tasks; so
    every claim of the key before it took its ids before, and every outcome the count
    saw committed took its id before too (the count is a statement of its own: under
    READ COMMITTED, Django's level on PostgreSQL and MariaDB, it sees every commit before
    it; SQLite has one writer). Replayed in id order, the tasks running at a claim's
    event are at most those the claim counted, and those it took before in the same
    batch: more than the limit here was more than the limit in the claim.
    """
    key_of = dict(ScheduledTask.objects.values_list("id", "concurrency_key"))
    running: dict[str, set[int]] = defaultdict(set)
    most: dict[str, int] = defaultdict(int)
    for task_id, kind in TaskEvent.objects.filter(task__isnull=False).order_by("id").values_list("task_id", "kind"):
        key = key_of[task_id]
        if kind == STARTED:
            running[key].add(task_id)
            most[key] = max(most[key], len(running[key]))
        else:  # completed, retried, failed, recovered, released: no longer running
            running[key].discard(task_id)
    return dict(most)


def check_completed_once_each(runs: dict[int, list[Run]], task_ids: set[int], pid_of: dict[str, int],
                              killed: Iterable[int] = ()) -> list[str]:
    """Every task completed; its last call ran to its end between the claim and the
    completion its row records (``started_at``, ``executed_at``), in the worker that
    recorded it; a call left unfinished was in a killed process; a task ran again only
    after a failed attempt (a recovery). Returns the problems."""
    problems, killed = [], set(killed)
    rows = ScheduledTask.objects.values_list("id", "status", "retry_count", "worker_id", "started_at", "executed_at")
    for task_id, status, retry_count, worker_id, started_at, executed_at in rows:
        task_runs = runs.get(task_id, [])
        if status != COMPLETED or not task_runs:
            problems.append(f"task {task_id}: {status} with {len(task_runs)} executions")
            continue
        last, claimed, completed = task_runs[-1], started_at.timestamp(), executed_at.timestamp()
        if last.ended is None:
            problems.append(f"task {task_id}: completed, but its last execution never ended: {last}")
        elif not claimed - TOLERANCE <= last.started <= last.ended <= completed + TOLERANCE:
            problems.append(f"task {task_id}: execution {last} outside its claim at {claimed:.6f} "
                            f"and completion at {completed:.6f}")
        if last.pid != pid_of.get(worker_id):
            problems.append(f"task {task_id}: completed by {worker_id!r}, last run in pid {last.pid}")
        if len(task_runs) - 1 > retry_count:
            problems.append(f"task {task_id}: ran {len(task_runs)} times, {retry_count} failed attempts")
        problems.extend(f"task {task_id}: execution {run} unfinished in a process never killed"
                        for run in task_runs if run.ended is None and run.pid not in killed)
    if unknown := set(runs) - task_ids:
        problems.append(f"executions of no task: {sorted(unknown)[:10]}")
    if missing := task_ids - set(rows.values_list("id", flat=True)):
        problems.append(f"tasks gone: {sorted(missing)[:10]}")
    return problems


def enqueue_two_backlogs() -> set[int]:
    """60 tasks of key A, then 10 of key B behind them; their ids."""
    job = jobs.limited_record
    tasks = job.enqueue_many([((), {"key": LONG, "label": f"{LONG}{n}", "pause": PAUSE}) for n in range(LONG_TASKS)])
    tasks += job.enqueue_many([((), {"key": SHORT, "label": f"{SHORT}{n}", "pause": PAUSE})
                               for n in range(SHORT_TASKS)])
    # Keys stored, limits as declared (NULL): the workers apply the job's concurrency=2.
    stored = Counter(ScheduledTask.objects.values_list("concurrency_key", "concurrency_limit"))
    assert stored == {(LONG, None): LONG_TASKS, (SHORT, None): SHORT_TASKS}
    return {task.pk for task in tasks}


def check_limit(runs: dict[int, list[Run]], end_of, figures: str) -> None:
    """Never more than LIMIT tasks of a key at once: in the jobs' own calls, and in the claims."""
    at_once = most_running_per_key(runs, end_of)
    for key, (most, instant) in at_once.items():
        assert most <= LIMIT, (f"{figures}\n{most} executions of key {key} running at {instant:.6f}: "
                               f"{running_at(runs, key, instant, end_of)}")
    held = most_held_per_key()
    assert all(most <= LIMIT for most in held.values()), f"{figures}\ntasks running at once per key, by events: {held}"
    # The limit was reached, not merely kept: each key ran LIMIT jobs at once at some point.
    assert {key: most for key, (most, _) in at_once.items()} == {LONG: LIMIT, SHORT: LIMIT}, figures


def figures_of(title: str, runs: dict[int, list[Run]], end_of, seconds: float, more: str = "") -> str:
    at_once = {key: most for key, (most, _) in most_running_per_key(runs, end_of).items()}
    pids = {key: dict(Counter(run.pid for task_runs in runs.values() for run in task_runs if run.key == key))
            for key in (LONG, SHORT)}
    figures = (f"{title} on {connection.vendor}: {len(runs)} tasks, {sum(map(len, runs.values()))} executions "
               f"in {seconds:.1f}s; most running at once per key: by executions {at_once}, "
               f"by events {most_held_per_key()}; executions per key and pid: {pids}{more}")
    print("\n" + figures)
    return figures


# -- 1. a concurrency limit per key, across workers ------------------------------------------------
def test_a_concurrency_limit_per_key_holds_across_workers_and_a_short_key_is_not_stuck_behind_a_long_one(workers):
    # Batches of 10, fewer than A's backlog: a claim that read the first tasks in claim
    # order, whatever their key, would find only A's (B's were enqueued after them).
    pool = start_three(workers, "limit", "--concurrency", "4", "--batch-size", "10")
    pid_of = {worker.name: worker.pid for worker in pool}
    task_ids = enqueue_two_backlogs()
    began = time.monotonic()
    wait_for_completion(pool)
    seconds = time.monotonic() - began
    stop(*pool)

    runs = runs_by_task()
    long_ends = sorted(run.ended for task_runs in runs.values() for run in task_runs if run.key == LONG)
    short_end = max(run.ended for task_runs in runs.values() for run in task_runs if run.key == SHORT)
    done_before = sum(end < short_end for end in long_ends)
    figures = figures_of("concurrency 2 per key, 3 workers x 4 threads", runs, lambda run: run.ended, seconds,
                         f"; B all done when A had completed {done_before} of {LONG_TASKS}")
    problems = check_completed_once_each(runs, task_ids, pid_of)
    assert not problems, f"{figures}\n" + "\n".join(problems[:20])
    assert all(len(task_runs) == 1 for task_runs in runs.values()), figures
    assert not ScheduledTask.objects.exclude(retry_count=0).exists(), f"{figures}\na task failed an attempt"
    check_limit(runs, lambda run: run.ended, figures)
    # B is not stuck behind A's backlog. Both keys served side by side, each runs 2 jobs
    # of 0.2 s at a time: B's 10 take 5 rounds, in which A completes about 10 of its 60.
    # The criterion, B's last end before A's 20th (a third of its backlog), leaves B
    # twice the time it needs; B waiting behind A would end with A's last tasks, ~6 s in.
    assert done_before < LONG_TASKS // 3, (
        f"{figures}\nB's last task ended after {done_before} of A's {LONG_TASKS} had ended "
        f"({short_end - long_ends[0]:.2f}s after A's first): B waited behind A's backlog")


# -- 2. a rate -----------------------------------------------------------------------------------------
# One thread and batches of 1: a worker holds at most 2 tasks, so the 5 starts of a
# second are shared between workers, each claim counting the others' starts.
RATED_WORKER = ("--concurrency", "1", "--batch-size", "1")


def drain_rated(pool: list[Watched]) -> tuple[set[int], list[tuple[float, str]], str]:
    """RATE_TASKS tasks of tests.rated_record drained by ``pool``: their ids, their claims
    (``started_at``, the claim time the rate counts, and the worker), and the figures."""
    # Three lanes (concurrency keys, not limiting here) under the job's one rate key: claims
    # of different lanes take different rows, so only the rate key's lock serializes them.
    rated = jobs.rated_record.using(concurrency=RATE, concurrency_key="{label}")
    task_ids = {task.pk for task in rated.enqueue_many(
        [((), {"label": "xyz"[n % 3], "pause": 0.05}) for n in range(RATE_TASKS)])}
    began = time.monotonic()
    wait_for_completion(pool)
    seconds = time.monotonic() - began
    stop(*pool)
    claims = sorted((started_at.timestamp(), worker_id)
                    for started_at, worker_id in ScheduledTask.objects.values_list("started_at", "worker_id"))
    starts = [start for start, _ in claims]
    per_window = per_fixed_window(starts)
    sliding, at = most_in_a_sliding_second(starts)
    figures = (f"rate {RATE}/s on {connection.vendor}: {RATE_TASKS} tasks in {seconds:.1f}s, "
               f"starts per fixed window {[per_window[w] for w in sorted(per_window)]}, "
               f"most in a sliding second {sliding} (from {at:.3f}), "
               f"claims per worker {dict(Counter(worker_id for _, worker_id in claims))}")
    print("\n" + figures)
    return task_ids, claims, figures


def per_fixed_window(starts: list[float]) -> Counter:
    """Starts per window of the rate, floor(epoch seconds / 1), as the claim counts them."""
    return Counter(int(start) for start in starts)


def most_in_a_sliding_second(starts: list[float]) -> tuple[int, float]:
    """The most starts in any sliding second [t, t + 1), and its t: the most begins at some start."""
    return max((sum(start <= later < start + 1 for later in starts), start) for start in starts)


def check_fixed_windows(starts: list[float], figures: str) -> None:
    per_window = per_fixed_window(starts)
    over = {window: count for window, count in per_window.items() if count > RATE}
    assert not over, (f"{figures}\nmore than {RATE} starts in fixed window(s) {over}: "
                      f"{[f'{start:.6f}' for start in starts if int(start) in over]}")


def test_a_rate_holds_in_every_fixed_window_and_within_twice_the_rate_in_any_sliding_second(workers):
    pool = start_three(workers, "rate", *RATED_WORKER)
    pid_of = {worker.name: worker.pid for worker in pool}
    task_ids, claims, figures = drain_rated(pool)

    runs = runs_by_task()
    problems = check_completed_once_each(runs, task_ids, pid_of)
    assert not problems, f"{figures}\n" + "\n".join(problems[:20])
    assert all(len(task_runs) == 1 for task_runs in runs.values()), figures
    # What the rate counts is the claim time, the row's started_at (the job itself may
    # start a little later, from the worker's buffer; checked above to be after it).
    starts = [start for start, _ in claims]
    check_fixed_windows(starts, figures)
    # A fixed window lets RATE start at the end of one window and RATE at the start of the
    # next: the guarantee in any sliding second. (It follows from the fixed windows, as a
    # second meets two of them: checked as the figure users read, it cannot fail alone.)
    sliding, at = most_in_a_sliding_second(starts)
    assert sliding <= 2 * RATE, f"{figures}\n{sliding} starts in the second from {at:.6f}"
    # The rate was the limit, and more than one worker started tasks under it.
    assert max(per_fixed_window(starts).values()) == RATE, figures
    assert len({worker_id for _, worker_id in claims}) >= 2, figures


# -- 3. workers killed mid-run ----------------------------------------------------------------------
# Recovery soon after a kill (tests.settings has 5 s): a killed worker's tasks hold their
# slots until then. Six heartbeats to a timeout: a live worker is not taken for dead.
FAST_RECOVERY = {"HEARTBEAT_INTERVAL": 0.5, "HEARTBEAT_TIMEOUT": 3}


def test_workers_killed_mid_run_keep_the_limit_and_lose_no_task(workers):
    env = {"DJANGO_JOBS_TEST_OVERRIDES": json.dumps(FAST_RECOVERY)}
    arguments = ("--concurrency", "4", "--batch-size", "10")
    pool = start_three(workers, "killed", *arguments, env=env)
    everyone = list(pool)
    task_ids = enqueue_two_backlogs()
    began = time.monotonic()
    kills: dict[int, float] = {}  # pid -> a time by which the process was dead
    for completed in (6, 25):  # two kills: early (both keys busy), and in A's backlog
        wait_for(lambda: ScheduledTask.objects.filter(status=COMPLETED).count() >= completed, pool, 60,
                 f"{completed} tasks completed")
        victim = wait_for(lambda: in_a_job(pool), pool, 30, "a worker in the middle of a job")
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        kills[victim.pid] = time.time()
        pool.remove(victim)
        pool.append(start(workers, f"killed-{len(everyone) + 1}", *arguments, env=env))
        everyone.append(pool[-1])
    wait_for_completion(pool)
    seconds = time.monotonic() - began
    wait_registered(pool)
    stop(*pool)

    runs = runs_by_task()

    def end_of(run: Run) -> float:
        """When a job stopped: as recorded; a job cut off by a kill, by the time its process was dead."""
        return run.ended if run.ended is not None else kills.get(run.pid, float("inf"))

    cut_off = [run for task_runs in runs.values() for run in task_runs if run.ended is None]
    recovered = list(ScheduledTask.objects.filter(retry_count__gt=0).values_list("id", "retry_count", "attempt_log"))
    figures = figures_of(f"{len(kills)} workers killed", runs, end_of, seconds,
                         f"; {len(cut_off)} executions cut off, {len(recovered)} tasks recovered")

    problems = check_completed_once_each(runs, task_ids, {worker.name: worker.pid for worker in everyone}, kills)
    assert not problems, f"{figures}\n" + "\n".join(problems[:20])
    check_limit(runs, end_of, figures)
    # The kills cut jobs off, and their tasks came back through recovery, nothing else.
    assert cut_off and recovered, f"{figures}\nthe kills exercised nothing"
    for task_id, retry_count, attempt_log in recovered:
        lost = [entry["exception_class"] for entry in attempt_log]
        assert lost == ["django_jobs.exceptions.WorkerLost"] * retry_count, (task_id, attempt_log)
        assert {entry["worker_id"] for entry in attempt_log} <= {worker.name for worker in everyone
                                                                 if worker.pid in kills}, (task_id, attempt_log)


def in_a_job(pool: list[Watched]) -> Watched | None:
    """A worker of ``pool`` whose job is running now (its Execution row not ended yet)."""
    by_pid = {worker.pid: worker for worker in pool}
    running = Execution.objects.filter(ended__isnull=True, pid__in=by_pid).order_by("-started")
    pid = running.values_list("pid", flat=True).first()
    return by_pid.get(pid)


# -- 4. a worker whose clock is behind --------------------------------------------------------------
# A claim reads its FlowKey row's window. A worker whose clock is behind another's
# (workers on several hosts), or on one host a claim whose ``now`` was read before a
# window's end but which gets the key's lock after a claim in the next window, sees a
# row whose window is LATER than its own. It must start nothing under that rate: not
# reopen its earlier window (a second round of starts in the same real second), nor
# write its earlier window back over the later one (``flow.current_window``). Found
# by this test (a full RATE restarted in an already full window: 12-16 starts in one
# second against 5 on all three databases) before the fix. Here one worker of three
# runs 0.4 s behind.
CLOCK_SKEW = 0.4


def test_a_worker_whose_clock_is_behind_does_not_reopen_a_full_window(workers):
    skewed = {"DJANGO_SETTINGS_MODULE": "tests.workers.skewed_clock", "DJANGO_JOBS_TEST_CLOCK_SKEW": str(CLOCK_SKEW)}
    pool = [start(workers, "on-time-1", *RATED_WORKER), start(workers, "on-time-2", *RATED_WORKER),
            start(workers, "behind", *RATED_WORKER, env=skewed)]
    wait_registered(pool)
    task_ids, claims, figures = drain_rated(pool)

    assert ScheduledTask.objects.filter(pk__in=task_ids, status=COMPLETED).count() == RATE_TASKS, figures
    # Each worker's started_at is its own clock's: the window the claim counted the start in.
    check_fixed_windows([start for start, _ in claims], figures)


# -- 5. a burst worker and tasks a limit holds back ---------------------------------------------
def test_a_burst_worker_waits_for_tasks_a_limit_holds_back_and_runs_them_before_it_exits(workers):
    """``--burst`` exits when nothing is due: a task due but held back by its key's limit
    is due. Before the fix the worker exited at its first claim, leaving it pending."""
    holder = WorkerFactory(worker_id="holder")  # alive (it beat just now): its slots count
    running = [jobs.limited_record.using(queue="default").enqueue("K", label=f"held-{number}") for number in (1, 2)]
    ScheduledTask.objects.filter(pk__in=[task.pk for task in running]).update(
        status="running", worker_id=holder.worker_id, started_at=timezone.now())
    waiting = jobs.limited_record.enqueue("K", label="waiting")
    burst = start(workers, "burst", "--burst", "--interval", "0.2")
    time.sleep(2.0)  # ten polls: each claim finds the key at its limit
    assert burst.alive(), f"the burst worker exited with a task due\n{burst.output()}"
    waiting.refresh_from_db()
    assert waiting.status == ScheduledTask.Status.PENDING and waiting.retry_count == 0
    ScheduledTask.objects.filter(pk__in=[task.pk for task in running]).update(status=COMPLETED)
    assert burst.process.wait(timeout=30) == 0, burst.output()
    waiting.refresh_from_db()
    assert waiting.status == COMPLETED, burst.output()
