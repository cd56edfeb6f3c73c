"""System checks: a wrong setting is reported at start-up with what to change."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import SETTINGS, to_seconds, user_settings
from .exceptions import InvalidJobOption
from .limits import queue_limits
from .retention import parse_policy
from .scheduler import declared_schedules


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    configured = user_settings()
    if not isinstance(configured, dict):
        return [Error("DJANGO_JOBS must be a dict.", id="django_jobs.E001")]
    problems = [
        Error(f"DJANGO_JOBS has an unknown key {key!r}.", hint=f"Known keys: {', '.join(sorted(SETTINGS))}.",
              id="django_jobs.E002")
        for key in configured if key not in SETTINGS
    ]
    problems += duration_problems(configured)
    problems += number_problems(configured)
    problems += retention_problems(configured)
    problems += queue_limit_problems(configured)
    problems += database_problems(configured)
    if not problems:
        problems += heartbeat_problems(configured)
        problems += cron_problems()
    return problems


def cron_problems() -> list[Any]:
    try:
        declared_schedules()
    except ImproperlyConfigured as error:
        return [Error(str(error), hint="Fix the schedule in DJANGO_JOBS['CRON'] or @job(cron=...).", id="django_jobs.E006")]
    return []


def duration_problems(configured: dict[str, Any]) -> list[Any]:
    problems = []
    for key, spec in SETTINGS.items():
        if not spec.is_duration or key not in configured:
            continue
        try:
            seconds = to_seconds(configured[key], key)
        except TypeError as error:
            problems.append(Error(str(error), id="django_jobs.E003"))
            continue
        if seconds <= 0:
            problems.append(Error(f"DJANGO_JOBS[{key!r}] must be positive.", id="django_jobs.E003"))
    return problems


def number_problems(configured: dict[str, Any]) -> list[Any]:
    problems = []
    for key in ("BATCH_SIZE", "CONCURRENCY", "MAX_TRACEBACK_LENGTH", "API_MAX_BODY_SIZE"):
        value = configured.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(Error(f"DJANGO_JOBS[{key!r}] must be a whole number >= 1, not {value!r}.", id="django_jobs.E004"))
    lane = configured.get("ASYNC_CONCURRENCY", 0)
    if isinstance(lane, bool) or not isinstance(lane, int) or lane < 0:
        problems.append(Error(f"DJANGO_JOBS['ASYNC_CONCURRENCY'] must be a whole number >= 0, not {lane!r}.", id="django_jobs.E004"))
    retries = configured.get("DEFAULT_MAX_RETRIES", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(Error(f"DJANGO_JOBS['DEFAULT_MAX_RETRIES'] must be a whole number >= 0, not {retries!r}.", id="django_jobs.E004"))
    queues = configured.get("QUEUES")
    if queues is not None and (isinstance(queues, str) or not all(isinstance(name, str) for name in queues)):
        problems.append(Error("DJANGO_JOBS['QUEUES'] must be a list of queue names or None.", id="django_jobs.E005"))
    return problems


def heartbeat_problems(configured: dict[str, Any]) -> list[Any]:
    interval = to_seconds(configured.get("HEARTBEAT_INTERVAL", SETTINGS["HEARTBEAT_INTERVAL"].default), "HEARTBEAT_INTERVAL")
    timeout = to_seconds(configured.get("HEARTBEAT_TIMEOUT", SETTINGS["HEARTBEAT_TIMEOUT"].default), "HEARTBEAT_TIMEOUT")
    if timeout < 3 * interval:
        return [Warning(
            "HEARTBEAT_TIMEOUT is less than three HEARTBEAT_INTERVALs: a slow heartbeat may make a live "
            "worker look dead and its tasks run twice.",
            hint="Raise HEARTBEAT_TIMEOUT or lower HEARTBEAT_INTERVAL.", id="django_jobs.W001",
        )]
    return []


def retention_problems(configured: dict[str, Any]) -> list[Any]:
    policy = configured.get("RETENTION")
    if policy is None:
        return []
    try:
        parse_policy(policy)
    except (TypeError, ValueError) as error:
        return [Error(str(error), hint="Example: DJANGO_JOBS['RETENTION'] = {'completed': '7d', "
                      "'failed': {'older_than': '30d', 'keep': 1000}}; "
                      "None turns automatic pruning off.", id="django_jobs.E007")]
    return []


def queue_limit_problems(configured: dict[str, Any]) -> list[Any]:
    """E008: QUEUE_LIMITS a worker could not start with (it reads them when it starts)."""
    try:
        queue_limits(configured.get("QUEUE_LIMITS"))
    except InvalidJobOption as error:
        return [Error(str(error), hint="Example: DJANGO_JOBS['QUEUE_LIMITS'] = {'mail': {'concurrency': 5, "
                      "'rate': '10/s'}} (rates: 'N/s', 'N/m', 'N/h').", id="django_jobs.E008")]
    return []


def database_problems(configured: dict[str, Any]) -> list[Any]:
    """E009 and E010: DJANGO_JOBS['DATABASE'] names no database, or nothing routes the app there."""
    from django.conf import settings

    alias = configured.get("DATABASE")
    if alias is None:
        return []
    if alias not in settings.DATABASES:
        return [Error(f"DJANGO_JOBS['DATABASE'] is {alias!r}, which is not an alias of DATABASES.",
                      hint=f"Known aliases: {', '.join(sorted(settings.DATABASES))}; or remove the setting to "
                           "keep the app's tables on your default database.", id="django_jobs.E009")]
    routed = app_databases()
    if routed != {alias}:
        return [Error(f"DJANGO_JOBS['DATABASE'] is {alias!r} but the app's tables are routed to "
                      f"{', '.join(sorted(routed))}.",
                      hint="Add 'django_jobs.routers.JobsRouter' to DATABASE_ROUTERS, before any router of "
                           "yours that places every model.", id="django_jobs.E010")]
    return []


@register()  # reads settings only: no database tag, so that runserver and check report it
def check_sqlite_transaction_mode(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """W002: a SQLite database of this app without ``transaction_mode = "IMMEDIATE"``.

    SQLite starts a transaction as a reader (DEFERRED) and cannot turn a read snapshot
    into a write once another connection has written: the write then fails at once
    with "database is locked", whatever the timeout. Saving a cron schedule (read, then
    write, in one ``atomic()``) or enqueueing inside ``atomic()`` beside a worker or a
    second web thread does that. IMMEDIATE takes the write lock at BEGIN, where the
    timeout makes the transaction wait for it instead.
    """
    return [sqlite_warning(alias) for alias in sorted(app_databases()) if lacks_immediate(alias)]


def app_databases() -> set[str]:
    """The aliases the router writes this app's models to."""
    from django.apps import apps
    from django.db import router

    return {router.db_for_write(model) for model in apps.get_app_config("django_jobs").get_models()}


def lacks_immediate(alias: str) -> bool:
    from django.conf import settings

    database: dict[str, Any] = settings.DATABASES.get(alias, {})
    if not database.get("ENGINE", "").endswith("sqlite3"):
        return False
    return str((database.get("OPTIONS") or {}).get("transaction_mode", "")).upper() != "IMMEDIATE"


def sqlite_warning(alias: str) -> Any:
    return Warning(
        f"DATABASES[{alias!r}] is SQLite without OPTIONS['transaction_mode'] = 'IMMEDIATE': a transaction that "
        "reads and then writes (saving a cron schedule, enqueueing inside atomic()) fails at once with "
        "'database is locked' when another connection writes at the same time.",
        hint=f"Add \"transaction_mode\": \"IMMEDIATE\" to DATABASES[{alias!r}][\"OPTIONS\"] (Django 5.1+), "
             "with a \"timeout\" (seconds) to wait for the write lock.",
        id="django_jobs.W002",
    )


@register()  # reads settings only, like W002
def check_isolation_level(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """W003: the app's database set to an isolation level above READ COMMITTED.

    Flow control's claim locks a key's row, then counts the key's running tasks in a new
    statement, which must see every claim committed before the lock was granted: under
    REPEATABLE READ or SERIALIZABLE the count reads an older snapshot, and two workers
    could exceed a limit together.
    """
    return [isolation_warning(alias, level) for alias in sorted(app_databases())
            if (level := isolation_level(alias)) is not None]


def isolation_level(alias: str) -> str | None:
    """The configured level when it is stricter than READ COMMITTED, else None."""
    from django.conf import settings

    database: dict[str, Any] = settings.DATABASES.get(alias, {})
    level = (database.get("OPTIONS") or {}).get("isolation_level")
    if level is None:
        return None
    name = str(getattr(level, "name", level)).replace("_", " ").replace("-", " ").lower()
    # psycopg 3's IsolationLevel has a name; psycopg2's numbers: 1 READ COMMITTED, 4 READ UNCOMMITTED.
    return None if name in ("read committed", "read uncommitted", "1", "4") else name


def isolation_warning(alias: str, level: str) -> Any:
    return Warning(
        f"DATABASES[{alias!r}] runs at isolation level {level!r}: flow control's concurrency limits rely on "
        "READ COMMITTED (the claim counts a key's running tasks after locking the key).",
        hint=f"Remove OPTIONS['isolation_level'] from DATABASES[{alias!r}] (Django's default is READ COMMITTED).",
        id="django_jobs.W003",
    )


@register()  # reads settings only, like W002
def check_pooled_events(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """W004: ``EVENTS = False`` on a PostgreSQL database behind a transaction pooler.

    The switch the event triggers read is a setting of the database session, and behind
    a pooler such as PgBouncer a session is shared by every client: it would turn the
    trail off for other processes' writes and not follow this one. The app does not set
    it there, so the trail is written.
    """
    from django.conf import settings

    if user_settings().get("EVENTS", True):
        return []
    databases: dict[str, dict[str, Any]] = settings.DATABASES
    pooled = [alias for alias in sorted(app_databases())
              if str(databases.get(alias, {}).get("ENGINE", "")).endswith("postgresql")
              and databases.get(alias, {}).get("DISABLE_SERVER_SIDE_CURSORS")]
    return [Warning(
        f"DJANGO_JOBS['EVENTS'] is False but DATABASES[{alias!r}] goes through a transaction pooler "
        "(DISABLE_SERVER_SIDE_CURSORS): the switch is a session setting, which a pooler shares between clients, "
        "so the event trail is still written there.",
        hint="Remove EVENTS = False, or prune the trail with the tasks (RETENTION).", id="django_jobs.W004",
    ) for alias in pooled]
