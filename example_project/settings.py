"""Settings of the example project, read from the environment with django-environ.

Every value has a development default, so ``python manage.py migrate`` works out of
the box on a SQLite file next to this module. Override with environment variables
(or an ``example_project/.env`` file), e.g.::

    DATABASE_URL=postgres://user:pass@localhost/shop DEBUG=false python manage.py run_jobworker
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent

env = environ.Env(
    DEBUG=(bool, True),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]"]),
)
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY", default="django-insecure-example-project-dev-key-do-not-use-in-production")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker runs jobs on threads while the web process writes too: wait for the
    # write lock instead of failing with "database is locked", and let readers work
    # alongside the writer (WAL). IMMEDIATE takes the write lock when a transaction
    # begins: a transaction that reads and then writes (saving a cron schedule) can
    # otherwise not wait for it and fails at once (system check django_jobs.W002).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "example_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# Mail goes to the console: the welcome email job prints what it would send.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "shop@example.com"

DJANGO_JOBS = {
    # Enqueueing to a queue not listed here raises at once: catches typos.
    "QUEUES": ["default", "mail", "reports"],
    # Seconds an idle worker waits before looking for due tasks again.
    "POLL_INTERVAL": 1.0,
    # Jobs one worker process runs at once (threads); --concurrency overrides it.
    "CONCURRENCY": 2,
    # A worker beats every 5 s; one silent for 60 s is presumed dead and its
    # running tasks are retried (or failed when no attempts are left).
    "HEARTBEAT_INTERVAL": 5,
    "HEARTBEAT_TIMEOUT": 60,
    # Retries after the first attempt, for jobs that do not set max_retries.
    "DEFAULT_MAX_RETRIES": 3,
    # DJANGO_JOBS_IMMEDIATE=true runs every job inline at enqueue: no worker needed.
    "IMMEDIATE": env.bool("DJANGO_JOBS_IMMEDIATE", default=False),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "simple": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "datefmt": "%H:%M:%S"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "simple"},
    },
    "loggers": {
        # Worker start/stop, and one line per task attempt with task id, job, queue and attempt.
        "django_jobs": {"handlers": ["console"], "level": env("DJANGO_JOBS_LOG_LEVEL", default="INFO"), "propagate": False},
    },
}
