"""A real HTTP server for the JSON API's outside-client tests: ``manage.py runserver``
(threaded WSGI) in a subprocess, on the test database, spoken to over TCP.

A subprocess rather than a server thread of the test process: it has its own
connections and settings (SQLite's transaction mode is chosen per server), as a
deployed site would. Rows the test writes must be committed to be seen there, so
tests using it need ``django_db(transaction=True)``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from django.db import connection

from tests.conftest import REPO


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, as a client saw it."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ApiServer:
    """``runserver`` on 127.0.0.1 serving ``tests.urls`` (the API at /jobs/api/)."""

    def __init__(self, *, sqlite_transaction_mode: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"],
            "DJANGO_JOBS_TEST_SQLITE_TRANSACTION_MODE": sqlite_transaction_mode,
            "PYTHONPATH": str(REPO),
        }
        # A file, not a pipe: a pipe nobody reads would fill up and stop the server.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{self.port}"],
            cwd=REPO, env=environment, stdout=self.log, stderr=subprocess.STDOUT, text=True,
        )
        self.wait_until_up()

    def wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runserver exited: {self.output()}")
            try:
                if self.request("GET", "/jobs/api/openapi.json").status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"runserver did not answer within {timeout} s")

    def request(self, method: str, path: str, body: Any = None, *, token: str = "") -> Answer:
        """One request on a new connection (as separate clients would make)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            client.request(method, path, None if body is None else json.dumps(body), headers)
            response = client.getresponse()
            return Answer(response.status, {name.lower(): value for name, value in response.getheaders()},
                          response.read())
        finally:
            client.close()

    def stop(self) -> str:
        """Stop the server; its output (the log of the requests)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()
