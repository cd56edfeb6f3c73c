"""The suite's settings with the app's tables on a database of their own.

``DJANGO_JOBS["DATABASE"] = "queue"``: a second database on the same server (a second
SQLite file), reached through ``django_jobs.routers.JobsRouter``; users, sessions and
the test app stay on ``default``. ``tests/queue_database`` runs with these settings
(``pytest --ds tests.settings_queue_database tests/queue_database``, a command of its
own in tox.ini); worker processes started by those tests get the queue's test database
name in ``DJANGO_JOBS_TEST_QUEUE_DB_NAME``.
"""

import os

from tests.settings import *  # noqa: F403 -- the suite's settings, one alias more
from tests.settings import DATABASES, DJANGO_JOBS

QUEUE_DB_NAME = os.environ.get("DJANGO_JOBS_TEST_QUEUE_DB_NAME")
_default = DATABASES["default"]
_test_name = str(_default["TEST"]["NAME"])
_queue_test_name = (_test_name[:-len(".sqlite3")] + "_queue.sqlite3" if _test_name.endswith(".sqlite3")
                    else _test_name + "_queue")
DATABASES["queue"] = {
    **_default,
    # Outside a test run (``makemigrations --check``, which opens every alias on Django
    # 6.1) the default's database stands in: the queue's test database exists only
    # while pytest runs, and workers get its name in DJANGO_JOBS_TEST_QUEUE_DB_NAME.
    "NAME": QUEUE_DB_NAME or _default["NAME"],
    "TEST": {**_default["TEST"], "NAME": _queue_test_name},
}
DATABASE_ROUTERS = ["django_jobs.routers.JobsRouter"]
DJANGO_JOBS["DATABASE"] = "queue"
