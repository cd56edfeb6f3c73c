"""The bench's own databases: created fresh at the start of a run, dropped at its end.

PostgreSQL ``djjobs_bench`` (and ``djjobs_bench_peer`` for the peer), MariaDB
``djjobs_bench``, and an SQLite file in a temporary directory. When the ``scale``
scenario runs, each also gets a second database on the same server (a second file),
``djjobs_bench_queue``, with django_jobs' tables only: the queue's database of its own.
Servers and users come from the usual PG*/MYSQL_* variables, defaulting to this machine's.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUEUE_NAME = "djjobs_bench_queue"


@dataclass
class Database:
    label: str           # postgres, mariadb, sqlite, peer
    engine: str          # BENCH_DB
    name: str            # BENCH_DB_NAME
    peer: bool = False
    tmpdir: str | None = field(default=None, repr=False)
    queue_name: str | None = None   # BENCH_QUEUE_DB_NAME of the scale scenario's separate database

    def env(self, **switches: str) -> dict[str, str]:
        """The environment of a process on this database; ``switches``: more BENCH_* variables."""
        env = os.environ.copy()
        env.update(BENCH_DB=self.engine, BENCH_DB_NAME=self.name, BENCH_PEER="1" if self.peer else "0",
                   DJANGO_SETTINGS_MODULE="bench.benchsettings", **switches)
        return env


def pg_connect():
    import psycopg

    return psycopg.connect(host=os.environ.get("PGHOST", "127.0.0.1"), port=os.environ.get("PGPORT", "5432"),
                           user=os.environ.get("PGUSER", "postgres"), password=os.environ.get("PGPASSWORD", ""),
                           dbname="postgres", autocommit=True)


def mysql_connect():
    import MySQLdb

    return MySQLdb.connect(host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
                           port=int(os.environ.get("MYSQL_PORT", "3306")),
                           user=os.environ.get("MYSQL_USER", "root"), password=os.environ.get("MYSQL_PASSWORD", ""))


def define(label: str) -> Database:
    if label == "postgres":
        return Database("postgres", "postgres", "djjobs_bench", queue_name=QUEUE_NAME)
    if label == "peer":
        return Database("peer", "postgres", "djjobs_bench_peer", peer=True)
    if label == "mariadb":
        return Database("mariadb", "mariadb", "djjobs_bench", queue_name=QUEUE_NAME)
    if label == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="djjobs_bench_")
        return Database("sqlite", "sqlite", str(Path(tmpdir) / "bench.sqlite3"), tmpdir=tmpdir,
                        queue_name=str(Path(tmpdir) / f"{QUEUE_NAME}.sqlite3"))
    raise ValueError(f"unknown database {label!r}")


def create(database: Database, with_queue: bool = False) -> None:
    """Drop any leftover of an earlier run, create the database empty, migrate it; with
    ``with_queue``, the same for the queue's database of its own (django_jobs' tables only,
    migrated as ``migrate --database queue`` with the app's tables routed there)."""
    drop(database)
    create_empty(database, database.name)
    migrate(database.env())
    if with_queue and database.queue_name:
        create_empty(database, database.queue_name)
        migrate(database.env(BENCH_QUEUE_DB_NAME=database.queue_name), "--database", "queue")


def create_empty(database: Database, name: str) -> None:
    on_server(database, postgres=f'CREATE DATABASE "{name}"', mariadb=f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")


def migrate(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput", "--verbosity", "0", *args],
                   cwd=ROOT, env=env, check=True, timeout=300)


def drop(database: Database) -> None:
    """Drop the database and its queue database (whether or not this run made one)."""
    for name in filter(None, (database.name, database.queue_name)):
        on_server(database, postgres=f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                  mariadb=f"DROP DATABASE IF EXISTS `{name}`")
    if database.tmpdir:
        shutil.rmtree(database.tmpdir, ignore_errors=True)
        os.makedirs(database.tmpdir, exist_ok=True)


def on_server(database: Database, *, postgres: str, mariadb: str) -> None:
    """Run the statement for ``database``'s server (none for SQLite, a file)."""
    if database.engine == "postgres":
        with pg_connect() as connection:
            connection.execute(postgres)
    elif database.engine == "mariadb":
        connection = mysql_connect()
        try:
            connection.cursor().execute(mariadb)
        finally:
            connection.close()


def discard(database: Database) -> None:
    drop(database)
    if database.tmpdir:
        shutil.rmtree(database.tmpdir, ignore_errors=True)


def server_version(database: Database) -> str:
    try:
        if database.engine == "postgres":
            with pg_connect() as connection:
                return "PostgreSQL " + connection.execute("SHOW server_version").fetchone()[0]
        if database.engine == "mariadb":
            connection = mysql_connect()
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT VERSION()")
                return "MariaDB/MySQL " + cursor.fetchone()[0]
            finally:
                connection.close()
        return "SQLite " + sqlite3.sqlite_version + " (WAL)"
    except Exception as error:  # noqa: BLE001 -- informational only
        return f"unknown ({error})"
