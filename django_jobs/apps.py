import django
from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjangoJobsConfig(AppConfig):
    name = "django_jobs"
    verbose_name = "Jobs"
    # Pinned so that migrations do not change with a project's DEFAULT_AUTO_FIELD.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401  (registers the system checks)
        from .events import configure_connection

        # Before any migration or query: the event triggers read this per connection.
        connection_created.connect(configure_connection, dispatch_uid="django_jobs.events")

        # Import every installed app's jobs.py, as admin does with admin.py, so any
        # process (worker, shell, web) knows every @job without configuration.
        autodiscover_modules("jobs")
        if django.VERSION >= (6, 0):
            # Django's @task functions run on the same path: rows name them by module
            # path, and Django's task signals follow ours.
            from .tasks_bridge import install

            install()
