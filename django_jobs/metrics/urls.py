"""``path("metrics/", include("django_jobs.metrics.urls"))`` serves the metrics there."""

from django.urls import path

from .views import metrics_view

app_name = "django_jobs_metrics"
urlpatterns = [path("", metrics_view, name="metrics")]
