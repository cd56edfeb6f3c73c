"""Database servers that a test may restart, stop and cut off: throwaway ones of its own.

``ThrowawayPostgres`` runs ``initdb`` into a temporary directory and ``pg_ctl`` on a free
port (as the ``postgres`` user when the suite runs as root, which PostgreSQL requires);
``ThrowawayMariaDB`` runs ``mariadb-install-db`` and ``mariadbd`` the same way. Neither
touches the machine's own servers, so restarting them under workers disturbs no other
test. ``LockedSQLite`` stands for an outage on SQLite: another process holding the
database file's write lock.

Each offers what the outage tests need: ``worker_env()`` (the environment that points
``tests.settings`` at it), ``query()`` (raw SQL through a connection of its own, opened
anew each time because the server comes and goes), and the faults themselves.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from glob import glob
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE = "djjobs_outage"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not within {timeout}s")


def run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout


class Server:
    """What the outage tests use of a database; subclasses say how."""

    engine = ""

    def worker_env(self) -> dict[str, str]:
        raise NotImplementedError

    def migrate(self) -> None:
        """Create the app's tables the way a user would: ``manage.py migrate``."""
        env = {**os.environ, **self.worker_env(), "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)}
        run([sys.executable, "-m", "django", "migrate", "--verbosity", "0"], cwd=REPO, env=env)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            rows = list(cursor.fetchall()) if cursor.description else []
            connection.commit()
            return rows
        finally:
            connection.close()

    def connect(self):
        raise NotImplementedError


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class ThrowawayPostgres(Server):
    engine = "postgres"

    def __init__(self) -> None:
        binaries = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        found = shutil.which("pg_ctl") or (binaries[-1] if binaries else None)
        if not found:
            raise RuntimeError("pg_ctl not found: the PostgreSQL server packages are needed")
        self.bin = Path(found).parent
        self.root = Path(tempfile.mkdtemp(prefix="djjobs-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        run(as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                         "--no-sync", "-E", "UTF8"]))
        self.start()
        self.query_admin(f"CREATE DATABASE {DATABASE}")

    def pg_ctl(self, *arguments: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        run(as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                         "-o", options, "-w", "-t", "60", *arguments]))

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def restart(self, mode: str) -> None:
        self.pg_ctl("restart", "-m", mode)

    def cut_connections(self) -> int:
        rows = self.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                          "AND pid <> pg_backend_pid() AND backend_type = 'client backend'", (DATABASE,))
        return sum(1 for (ended,) in rows if ended)

    def worker_env(self) -> dict[str, str]:
        return {"DJANGO_JOBS_TEST_DB": "postgres", "PGHOST": "127.0.0.1", "PGPORT": str(self.port),
                "PGUSER": "postgres", "DJANGO_JOBS_TEST_DB_NAME": DATABASE}

    def connect(self, database: str = DATABASE):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database, connect_timeout=5)

    def query_admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(sql)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayMariaDB(Server):
    engine = "mariadb"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="djjobs-mariadb-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if not install:
            raise RuntimeError("mariadb-install-db not found: the MariaDB server package is needed")
        user = ["--user=root"] if os.geteuid() == 0 else []
        run([install, "--no-defaults", f"--datadir={self.data}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *user])
        self.start()
        self.query_admin(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")

    def start(self) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        user = ["--user=root"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.root / 'sock'}", f"--pid-file={self.root / 'pid'}", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2", "--max-connections=100",
             *user],
            stdout=open(self.root / "log", "a"), stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.connect(None).close() is None, 60, "MariaDB accepting connections")

    def stop(self, mode: str = "fast") -> None:
        """``immediate``: SIGKILL (crash recovery at the next start); ``fast``: SIGTERM (clean shutdown)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL if mode == "immediate" else signal.SIGTERM)
        self.process.wait(60)

    def restart(self, mode: str) -> None:
        self.stop(mode)
        self.start()

    def cut_connections(self) -> int:
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                           (DATABASE,))
            ended = 0
            for (session,) in cursor.fetchall():
                try:
                    cursor.execute(f"KILL CONNECTION {int(session)}")
                    ended += 1
                except Exception:  # noqa: BLE001 - it closed meanwhile
                    pass
            return ended
        finally:
            connection.close()

    def worker_env(self) -> dict[str, str]:
        return {"DJANGO_JOBS_TEST_DB": "mariadb", "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(self.port),
                "MYSQL_USER": "root", "MYSQL_PASSWORD": "", "DJANGO_JOBS_TEST_DB_NAME": DATABASE}

    def connect(self, database: str | None = DATABASE):
        import MySQLdb

        options = {"database": database} if database else {}
        return MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=5,
                               **options)

    def query_admin(self, sql: str) -> None:
        connection = self.connect(None)
        try:
            connection.cursor().execute(sql)
        finally:
            connection.close()

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


class LockedSQLite(Server):
    """An SQLite file of its own; its outage is another process holding the write lock."""

    engine = "sqlite"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="djjobs-sqlite-"))
        self.path = self.root / "outage.sqlite3"

    def worker_env(self) -> dict[str, str]:
        # A short busy timeout: past it a writer gets "database is locked", which is the outage.
        return {"DJANGO_JOBS_TEST_DB": "sqlite", "DJANGO_JOBS_TEST_DB_NAME": str(self.path),
                "DJANGO_JOBS_SQLITE_TIMEOUT": "0.5"}

    def connect(self):
        return sqlite3.connect(self.path, timeout=30)

    def hold_lock(self, seconds: float) -> threading.Thread:
        """Take the write lock in a thread of this process for ``seconds``; returns the thread."""
        locked = threading.Event()

        def hold() -> None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(seconds)
            connection.execute("ROLLBACK")
            connection.close()

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        locked.wait(30)
        return holder

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
