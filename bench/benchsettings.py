"""Settings of the benchmark processes (harness and workers alike).

``BENCH_DB`` picks the database: ``postgres``, ``mariadb`` or ``sqlite``; ``BENCH_DB_NAME``
its name (a file path for SQLite). ``BENCH_PEER=1`` installs django-tasks-db instead of
nothing extra, for the side-by-side run of the peer. The harness sets all three.

Two switches of the ``scale`` scenario (README "Scale-out"), unset elsewhere:
``BENCH_QUEUE_DB_NAME`` puts every table of django_jobs on a second database of that
name on the same server (a second file for SQLite), alias ``queue``, through
``JobsRouter``; ``BENCH_POOLED_PORT`` sends the PostgreSQL connections to a PgBouncer in
transaction pooling on that port, with ``DISABLE_SERVER_SIDE_CURSORS`` (how django_jobs
knows it is pooled).
"""

import os

ENGINE = os.environ.get("BENCH_DB", "postgres")
NAME = os.environ.get("BENCH_DB_NAME", "djjobs_bench")
PEER = os.environ.get("BENCH_PEER") == "1"

if ENGINE == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": NAME,
        "USER": os.environ.get("PGUSER", "postgres"), "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"), "PORT": os.environ.get("PGPORT", "5432"),
    }}
elif ENGINE == "mariadb":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.mysql", "NAME": NAME,
        "USER": os.environ.get("MYSQL_USER", "root"), "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
        "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"), "PORT": os.environ.get("MYSQL_PORT", "3306"),
        "OPTIONS": {"charset": "utf8mb4"},
    }}
elif ENGINE == "sqlite":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": NAME,
        # WAL lets readers and one writer work at once: what anyone running workers on SQLite uses.
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }}
else:
    raise RuntimeError(f"BENCH_DB must be postgres, mariadb or sqlite, not {ENGINE!r}")

# Persistent connections: django_jobs keeps its connection whatever this says, but
# the peer's worker calls close_old_connections() around every task, and at Django's
# default of 0 it would reconnect per task (several times slower). Be fair to it.
DATABASES["default"]["CONN_MAX_AGE"] = None

POOLED_PORT = os.environ.get("BENCH_POOLED_PORT")
if POOLED_PORT and ENGINE == "postgres":
    DATABASES["default"].update(PORT=POOLED_PORT, DISABLE_SERVER_SIDE_CURSORS=True)
QUEUE_DB_NAME = os.environ.get("BENCH_QUEUE_DB_NAME")
if QUEUE_DB_NAME:
    DATABASES["queue"] = {**DATABASES["default"], "NAME": QUEUE_DB_NAME}
    DATABASE_ROUTERS = ["django_jobs.routers.JobsRouter"]

SECRET_KEY = "bench-only-not-secret"
DEBUG = False          # DEBUG keeps every query in memory: it would skew time and RSS
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The admin pages the ``growth`` scenario loads (django.test.Client in its process). The
# simple admin config does not autodiscover: only bench/urls.py imports django_jobs'
# admin, so worker processes load nothing more than before.
INSTALLED_APPS = [
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_jobs",
    "bench.benchapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "bench.urls"
ALLOWED_HOSTS = ["testserver"]   # django.test.Client's host
STATIC_URL = "static/"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
if PEER:
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

DJANGO_JOBS = {
    # A stopped benchmark worker should not linger.
    "SHUTDOWN_GRACE": 5,
    # The drain scenario measures the event trail off as well (DJANGO_JOBS_BENCH_EVENTS=0 for its workers).
    "EVENTS": os.environ.get("DJANGO_JOBS_BENCH_EVENTS", "1") != "0",
}
if QUEUE_DB_NAME:
    DJANGO_JOBS["DATABASE"] = "queue"

# Warnings only: a worker writing two INFO lines per job to a log file would measure
# logging, not the queue. Both queues log through their own loggers at this level.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_jobs": {"handlers": ["console"], "level": "WARNING"},
        "django_tasks_db": {"handlers": ["console"], "level": "WARNING"},
        "django.tasks": {"handlers": ["console"], "level": "WARNING"},
    },
}
