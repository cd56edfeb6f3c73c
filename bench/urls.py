"""The admin, for the ``growth`` scenario's page loads (bench/benchsettings.py's ROOT_URLCONF)."""

from django.contrib import admin
from django.urls import path

import django_jobs.admin  # noqa: F401 -- registers the task admin (the simple admin config does not autodiscover)

urlpatterns = [path("admin/", admin.site.urls)]
