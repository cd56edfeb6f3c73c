"""A web process's enqueues through PgBouncer (``tests/workers/test_pgbouncer.py``).

Run as ``python -m tests.pgbouncer_client GO_FILE LABEL COUNT`` with ``PGPORT`` at the
bouncer and the test database in ``DJANGO_JOBS_TEST_DB_NAME``. It waits for GO_FILE
(so that every client starts at once), then enqueues COUNT tasks of its own job
(``tests.collect`` for label ``A``, ``tests.noop`` for any other), each with ``[LABEL, n]``
in its arguments and ``n // 3 % 3`` as its priority, in turn: a single enqueue in autocommit (PostgreSQL's prepared path
when allowed), one inside ``transaction.atomic()``, and one ``enqueue_many``.
Prints how many statements it prepared and how many tasks it enqueued.
"""

import os
import sys
import time

import django


def main(go_file: str, label: str, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.db import transaction

    from tests.testapp import jobs

    base = jobs.collect if label == "A" else jobs.noop
    # Three sets of options, so three prepared statements per process where they are
    # allowed: their names are the same in every process, their statements are not.
    variants = [base.using(priority=number) for number in range(3)]
    while not os.path.exists(go_file):
        time.sleep(0.001)
    for n in range(count):
        value = [label, n]
        job = variants[n // 3 % len(variants)]
        if n % 3 == 0:
            job.enqueue(value)
        elif n % 3 == 1:
            with transaction.atomic():
                job.enqueue(value)
        else:
            job.enqueue_many([((value,), {})])
    # Statements this process prepared on the server (django_jobs.db.prepared_insert):
    # behind a transaction pooler the next call may run on a server connection where
    # another client prepared another statement under that name.
    from django.db import connection

    state = getattr(connection, "_django_jobs_statements", None)
    print(f"prepared={len(state[1]) if state else 0} enqueued={count}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
