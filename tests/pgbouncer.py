"""A real PgBouncer in transaction pooling mode, started by the tests on a free port.

Debian's ``pgbouncer`` (installed by ``scripts/lib.sh``) in front of this machine's
PostgreSQL, with a server pool smaller than the number of clients: consecutive
transactions of one client land on different server connections, and one server
connection serves several clients, as in production. What a client leaves on a
server connection (a prepared statement, a session setting, a LISTEN) then shows up
elsewhere, or is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARY = "/usr/sbin/pgbouncer"
SERVER_POOL_SIZE = 2  # fewer than the clients of every test that uses it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PgBouncer:
    """``with PgBouncer() as bouncer:`` ``bouncer.port`` forwards to 127.0.0.1:5432."""

    def __init__(self, server_port: int = 5432, pool_size: int = SERVER_POOL_SIZE) -> None:
        self.server_port, self.pool_size = server_port, pool_size
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> PgBouncer:
        config = self.directory / "pgbouncer.ini"
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        config.write_text(f"""[databases]
* = host=127.0.0.1 port={self.server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.directory}/users.txt
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {self.directory}/pgbouncer.log
pidfile = {self.directory}/pgbouncer.pid
admin_users = postgres
""")
        # PgBouncer refuses to run as root: it runs as postgres (-u), which must read its files.
        if os.getuid() == 0:
            shutil.chown(self.directory, "postgres")
            for path in self.directory.iterdir():
                shutil.chown(path, "postgres")
        user = ["-u", "postgres"] if os.getuid() == 0 else []
        self.process = subprocess.Popen([BINARY, *user, str(config)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self._wait_for_port()
        return self

    def _wait_for_port(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self.process.stdout.read() if self.process.stdout else ''}"
                                   f"{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout}s: {self.log()}")

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
