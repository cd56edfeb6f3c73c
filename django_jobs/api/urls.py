"""Mount with ``path("jobs/api/", include("django_jobs.api.urls"))``."""

from django.urls import path, re_path

from .routes import by_path, django_route, route_name
from .views import endpoint, not_found

app_name = "django_jobs_api"

urlpatterns = [
    *(path(django_route(route), endpoint(operations), name=route_name(route))
      for route, operations in by_path().items()),
    # Anything else under the mount point: a JSON 404, not the project's HTML page.
    re_path(r"", not_found),
]
