"""One contender of ``test_unique_race``: enqueue one unique key many times, print the ids.

Run as ``python -m tests.unique_race_client GO_FILE KEY COUNT MODE [PAUSE]`` with the test
database in ``DJANGO_JOBS_TEST_DB_NAME``. It sets Django up, waits until GO_FILE
exists (so that every contender starts at once), then enqueues. MODE ``plain``
enqueues in autocommit; ``atomic`` inside ``transaction.atomic()`` after a read,
as a view with ATOMIC_REQUESTS would (on SQLite with ``transaction_mode: IMMEDIATE``,
which such projects need anyway). PAUSE: seconds between two enqueues (default none),
so that another writer gets its turn even on SQLite, whose lock goes to whoever retries
first.
"""

import json
import os
import sys
import time

import django


def main(go_file: str, key: str, count: int, mode: str, pause: float = 0.0) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.conf import settings

    database = settings.DATABASES["default"]
    if mode == "atomic" and database["ENGINE"].endswith("sqlite3"):
        # A deferred SQLite transaction that reads and then writes fails at once with
        # "database is locked" when another process wrote in between (SQLite cannot
        # upgrade its snapshot); projects that enqueue in such transactions need this.
        database["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    django.setup()
    from django.db import OperationalError, transaction

    from django_jobs.models import ScheduledTask
    from tests.testapp import jobs

    job = jobs.noop.using(unique_key=key)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    ids, deadlocks = [], 0
    for _ in range(count):
        if pause:
            time.sleep(pause)
        if mode != "atomic":
            ids.append(job.enqueue().pk)
            continue
        for _attempt in range(10):
            try:
                with transaction.atomic():
                    ScheduledTask.objects.filter(unique_key=key).exists()
                    ids.append(job.enqueue().pk)
                break
            except OperationalError as error:
                # InnoDB may pick this transaction as a deadlock victim when it races a
                # worker finishing the key's task; the README tells users to retry it.
                if "deadlock" not in str(error).lower():
                    raise
                deadlocks += 1
    print(json.dumps({"ids": ids, "deadlocks": deadlocks}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], *(float(value) for value in sys.argv[5:6]))
