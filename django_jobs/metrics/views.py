"""A view exposing the metrics for Prometheus from the web process.

``path("metrics/", include("django_jobs.metrics.urls"))``, or route
``metrics_view`` yourself. It is not authenticated (Prometheus scrapes without a
session): mount it where only your monitoring can reach it, or wrap it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from . import AVAILABLE, register_collector


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The default registry in Prometheus text format, with the queue-depth gauges."""
    if not AVAILABLE:
        return HttpResponse("prometheus-client is not installed: pip install 'django-dbjobs[metrics]'\n",
                            status=501, content_type="text/plain")
    import prometheus_client

    register_collector()
    return HttpResponse(prometheus_client.generate_latest(prometheus_client.REGISTRY),
                        content_type=prometheus_client.CONTENT_TYPE_LATEST)
