"""``bench/run``: set up the databases, run each scenario in a child process with a
deadline, print one table and write bench/results/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from . import databases, plan, report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
SCENARIO_ORDER = ("enqueue", "drain", "pickup", "flow", "scale", "lanes", "flat", "memory", "growth")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description="django_jobs benchmark suite (issue 8).")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of every scenario")
    parser.add_argument("--only", help=f"comma-separated scenarios to run ({', '.join(plan.SCENARIOS)}; "
                                       f"growth only when named)")
    parser.add_argument("--db", action="append", choices=plan.DATABASES,
                        help="database(s) to run the django_jobs scenarios on (default: all three)")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench databases after the run")
    parser.add_argument("--growth-rows", type=int, metavar="N",
                        help="rows of the growth scenario's filled table (default 10,000,000; --quick 200,000)")
    args = parser.parse_args(argv)
    args.scenarios = [name.strip() for name in (args.only or ",".join(plan.DEFAULT_SCENARIOS)).split(",") if name.strip()]
    unknown = set(args.scenarios) - set(plan.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(plan.SCENARIOS)}")
    args.databases = args.db or list(plan.DATABASES)
    return args


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict] = []
        self.created: list[databases.Database] = []
        self.child: subprocess.Popen | None = None
        self.loads: list[dict] = []   # other work on this machine skews every number: recorded

    def scenario(self, database: databases.Database, name: str, params: dict) -> None:
        """One scenario child: rows on success, an error row on failure or overrun."""
        busy = cores_busy()
        self.loads.append({"scenario": name, "database": database.label, "cores_busy_before": round(busy, 2)})
        warning = ""
        if busy > 0.3:
            warning = f" (other work keeps {busy:.1f} of {os.cpu_count()} cores busy: numbers will be low)"
        progress(f"{name} on {database.label} ...{warning}")
        out = RESULTS / "raw" / f"{database.label}-{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        started = time.monotonic()
        timeout = plan.child_timeout(name, params)
        self.child = subprocess.Popen(
            [sys.executable, "-m", "bench.harness.child", name, json.dumps(params), str(out)],
            cwd=ROOT, env=database.env(), start_new_session=True,
        )
        try:
            self.child.wait(timeout)
            missing = {"error": f"child exited {self.child.returncode}"}
            outcome = json.loads(out.read_text()) if out.exists() else missing
        except subprocess.TimeoutExpired:
            self.kill_child()
            outcome = {"error": f"scenario did not finish within {timeout:.0f} s; its processes were killed"}
        # (On Ctrl-C or SIGTERM self.child stays set: cleanup() ends its process group.)
        self.child = None
        shown = "postgres" if database.peer else database.label
        if "error" in outcome:
            progress(f"{name} on {database.label} FAILED: {outcome['error']}")
            if outcome.get("traceback"):
                print(outcome["traceback"], file=sys.stderr)
            self.rows.append({"scenario": name, "database": shown, "error": outcome["error"]})
        else:
            for row in outcome["rows"]:
                self.rows.append({"database": shown, **row})
            progress(f"{name} on {database.label} done in {time.monotonic() - started:.0f} s")

    def kill_child(self) -> None:
        """The child and every worker it started share one process group: end them all."""
        if self.child is None or self.child.poll() is not None:
            return
        group = os.getpgid(self.child.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.child.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.child.wait(5)

    def prepare(self, label: str) -> databases.Database:
        database = databases.define(label)
        # The scale scenario also puts the queue on a second database of the same server.
        with_queue = "scale" in self.args.scenarios and database.queue_name is not None
        also = f" and its queue database ({database.queue_name})" if with_queue else ""
        progress(f"creating and migrating the {label} database ({database.name}){also}")
        databases.create(database, with_queue=with_queue)
        self.created.append(database)
        return database

    def best_config(self, label: str) -> dict:
        drains = [row for row in self.rows
                  if row["scenario"] == "drain" and row["database"] == label and row.get("jobs_per_s")]
        if not drains:
            return plan.DEFAULT_CONFIG
        return max(drains, key=lambda row: row["jobs_per_s"])["metrics"]["worker_config"]

    def run_database(self, label: str) -> None:
        wanted = [name for name in SCENARIO_ORDER if name in self.args.scenarios]
        if not wanted:
            return
        try:
            database = self.prepare(label)
        except Exception as error:  # noqa: BLE001 -- server down, migration broken: report, go on
            progress(f"setting up {label} FAILED: {error}")
            self.rows.append({"scenario": "setup", "database": label, "error": f"{type(error).__name__}: {error}"})
            return
        for name in wanted:
            params = plan.params_for(self.args.quick, label, self.args.growth_rows)
            params["worker_config"] = self.best_config(label)
            params["queue_db_name"] = database.queue_name
            params["keep_db"] = self.args.keep_db
            self.scenario(database, name, params)

    def run_peer(self) -> None:
        try:
            database = self.prepare("peer")
        except Exception as error:  # noqa: BLE001 -- as in run_database
            progress(f"setting up the peer FAILED: {error}")
            error_text = f"{type(error).__name__}: {error}"
            self.rows.append({"scenario": "peer setup", "database": "postgres", "error": error_text})
            return
        params = plan.params_for(self.args.quick, "peer")
        self.scenario(database, "peer_drain", params)
        self.scenario(database, "peer_pickup", params)

    def cleanup(self) -> None:
        self.kill_child()
        if self.args.keep_db:
            return
        for database in self.created:
            try:
                databases.discard(database)
            except Exception as error:  # noqa: BLE001 -- say so, drop the others
                progress(f"could not drop {database.label} database {database.name}: {error}")


def cores_busy(seconds: float = 0.25) -> float:
    """Cores kept busy by other processes, measured while the bench itself is idle (/proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        idle = values[3] + values[4]   # idle + iowait
        return sum(values[:8]), idle

    try:
        total_before, idle_before = sample()
        time.sleep(seconds)
        total_after, idle_after = sample()
    except OSError:
        return 0.0
    total = total_after - total_before
    return (1 - (idle_after - idle_before) / total) * (os.cpu_count() or 1) if total else 0.0


def meta(args: argparse.Namespace, started: float, run: Run) -> dict:
    def git(*command: str) -> str:
        try:
            done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    return {
        "mode": "quick" if args.quick else "full",
        "scenarios": args.scenarios,
        "databases": args.databases,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "git_commit": git("rev-parse", "HEAD"),
        "django_jobs_uncommitted_changes": bool(git("status", "--porcelain", "--", "django_jobs")),
        "versions": {
            "python": platform.python_version(), "django": version("Django"), "django-dbjobs": version("django-dbjobs"),
            "django-tasks-db": version("django-tasks-db"), "psycopg": version("psycopg"),
            "mysqlclient": version("mysqlclient"),
        },
        "servers": {database.label: databases.server_version(database) for database in run.created},
        "machine_load": run.loads,
        "cpus": os.cpu_count(),
        "params": plan.params_for(args.quick, "-"),
    }


class Stopped(Exception):
    """SIGTERM: end the running scenario, report what was measured."""


def stop_on_sigterm(number, frame):
    raise Stopped()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    run = Run(args)
    shutil.rmtree(RESULTS / "logs", ignore_errors=True)   # the logs of this run only
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    code = 0
    try:
        for label in args.databases:
            run.run_database(label)
            if label == "postgres" and "peer" in args.scenarios:
                run.run_peer()
        if args.only and "peer" in args.scenarios and "postgres" not in args.databases:
            run.run_peer()   # asked for by name: the peer always runs on PostgreSQL
    except (KeyboardInterrupt, Stopped):
        progress("interrupted: stopping workers, dropping databases, reporting what was measured")
        code = 130
    finally:
        # Ctrl-C, SIGTERM or an error: the scenario's processes end, the databases go.
        run.cleanup()
    info = meta(args, started, run)
    info["interrupted"] = code == 130
    rows = report.judge(run.rows, quick=args.quick)
    report.write_json(RESULTS / "results.json", info, rows)
    print(report.table(rows))
    progress(f"{info['mode']} run took {info['duration_s']:.0f} s; results in bench/results/results.json, "
             f"worker logs in bench/results/logs/")
    return code or (1 if any("error" in row for row in rows) else 0)
