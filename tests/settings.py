"""Settings of the test suite. ``DJANGO_JOBS_TEST_DB`` picks the database:
``sqlite`` (default), ``postgres`` or ``mariadb``, each on this machine's server.

Worker processes started by tests get ``DJANGO_JOBS_TEST_DB_NAME``, the name of the
test database pytest-django created, so they work on the same rows.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import django

ENGINE = os.environ.get("DJANGO_JOBS_TEST_DB", "sqlite")
DATABASES: dict[str, dict[str, Any]]
WORKER_DB_NAME = os.environ.get("DJANGO_JOBS_TEST_DB_NAME")
SQLITE_DIR = Path(os.environ.get("DJANGO_JOBS_SQLITE_DIR", tempfile.gettempdir()))
# The suite runs SQLite in its default (DEFERRED) transaction mode; servers started by
# the API's tests set IMMEDIATE here to compare (tests/api/test_api_live.py).
SQLITE_TRANSACTION_MODE = os.environ.get("DJANGO_JOBS_TEST_SQLITE_TRANSACTION_MODE", "")

if ENGINE == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # A file, not :memory:, so that worker processes share it.
            "NAME": WORKER_DB_NAME or str(SQLITE_DIR / f"django_jobs_{os.getpid()}.sqlite3"),
            "TEST": {"NAME": str(SQLITE_DIR / f"django_jobs_test_{os.getpid()}.sqlite3")},
            # The outage tests shorten the busy timeout to turn a held lock into errors.
            "OPTIONS": {"timeout": float(os.environ.get("DJANGO_JOBS_SQLITE_TIMEOUT", 30)),
                        "init_command": "PRAGMA journal_mode=WAL;",
                        **({"transaction_mode": SQLITE_TRANSACTION_MODE} if SQLITE_TRANSACTION_MODE else {})},
        }
    }
elif ENGINE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": WORKER_DB_NAME or os.environ.get("PGDATABASE", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": f"test_django_jobs_{os.getpid()}"},
            # Processes that the PgBouncer tests start go through it (transaction pooling);
            # this is how Django, and so django_jobs, learns of a pooler.
            "DISABLE_SERVER_SIDE_CURSORS": os.environ.get("DJANGO_JOBS_TEST_POOLED") == "1",
        }
    }
elif ENGINE == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": WORKER_DB_NAME or os.environ.get("MYSQL_DATABASE", "test"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": f"test_django_jobs_{os.getpid()}", "CHARSET": "utf8mb4"},
        }
    }
else:
    raise RuntimeError(f"DJANGO_JOBS_TEST_DB must be sqlite, postgres or mariadb, not {ENGINE!r}")

SECRET_KEY = "tests-only-not-secret"
# The suite keeps SQLite's default transaction mode on purpose (above): the warning
# that the README's advice is missing would only repeat in every worker process.
SILENCED_SYSTEM_CHECKS = ["django_jobs.W002"]
# Servers started by tests (runserver in a subprocess) are reached on the loopback address.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DJANGO_JOBS = {
    "POLL_INTERVAL": 0.2,
    "HEARTBEAT_INTERVAL": 1,
    "HEARTBEAT_TIMEOUT": 5,
    "SHUTDOWN_GRACE": 20,
}
if django.VERSION >= (6, 0):
    # Django's Tasks framework on django_jobs (tests/test_backend*.py). Django's own
    # backends are here too, for tasks that must not be ours. max_retries=0: a failing
    # Django task fails at once, as with Django's backends; tests that retry say so.
    TASKS = {
        "default": {
            "BACKEND": "django_jobs.backend.JobsBackend",
            "QUEUES": ["default", "queue_1", "mail"],
            "OPTIONS": {"max_retries": 0},
        },
        "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend", "QUEUES": []},
    }
# Worker processes started by a test may get extra settings as JSON.
DJANGO_JOBS.update(json.loads(os.environ.get("DJANGO_JOBS_TEST_OVERRIDES", "{}")))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_jobs": {"handlers": ["console"], "level": os.environ.get("DJANGO_JOBS_LOG_LEVEL", "WARNING")}},
}
