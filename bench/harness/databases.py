"""The bench's own databases: created fresh at the start of a run, dropped at its end.

PostgreSQL ``djjobs_bench`` (and ``djjobs_bench_peer`` for the peer), MariaDB
``djjobs_bench``, and an SQLite file in a temporary directory. Servers and users
come from the usual PG*/MYSQL_* variables, defaulting to this machine's.
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


@dataclass
class Database:
    label: str           # postgres, mariadb, sqlite, peer
    engine: str          # BENCH_DB
    name: str            # BENCH_DB_NAME
    peer: bool = False
    tmpdir: str | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(BENCH_DB=self.engine, BENCH_DB_NAME=self.name, BENCH_PEER="1" if self.peer else "0",
                   DJANGO_SETTINGS_MODULE="bench.benchsettings")
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
        return Database("postgres", "postgres", "djjobs_bench")
    if label == "peer":
        return Database("peer", "postgres", "djjobs_bench_peer", peer=True)
    if label == "mariadb":
        return Database("mariadb", "mariadb", "djjobs_bench")
    if label == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="djjobs_bench_")
        return Database("sqlite", "sqlite", str(Path(tmpdir) / "bench.sqlite3"), tmpdir=tmpdir)
    raise ValueError(f"unknown database {label!r}")


def create(database: Database) -> None:
    """Drop any leftover of an earlier run, create the database empty, migrate it."""
    drop(database)
    on_server(database, postgres=f'CREATE DATABASE "{database.name}"',
              mariadb=f"CREATE DATABASE `{database.name}` CHARACTER SET utf8mb4")
    subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput", "--verbosity", "0"],
                   cwd=ROOT, env=database.env(), check=True, timeout=300)


def drop(database: Database) -> None:
    on_server(database, postgres=f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)',
              mariadb=f"DROP DATABASE IF EXISTS `{database.name}`")
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
