import django
from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

from .routers import apart_from_users


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
        if apart_from_users():
            # No foreign key can reach the user model on its own database: the app
            # clears a deleted user's rows itself (``django_jobs.users``).
            from django.contrib.auth import get_user_model
            from django.db.models.signals import post_delete

            from .users import forget_deleted_user

            post_delete.connect(forget_deleted_user, sender=get_user_model(), dispatch_uid="django_jobs.users")
        if django.VERSION >= (6, 0):
            # Django's @task functions run on the same path: rows name them by module
            # path, and Django's task signals follow ours.
            from .tasks_bridge import install

            install()
