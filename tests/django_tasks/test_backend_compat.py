"""On a Django without ``django.tasks`` (5.2) the backend refuses to import, with a message
that says what to do; the rest of the suite runs on 5.2 in CI and shows everything else works."""

from __future__ import annotations

import importlib
import sys

import django
import pytest
from django.core.exceptions import ImproperlyConfigured


def test_the_backend_needs_django_6(monkeypatch):
    if django.VERSION >= (6, 0):
        # Make this Django look like 5.2, which has no django.tasks package.
        for name in [module for module in sys.modules if module == "django.tasks" or module.startswith("django.tasks.")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "django.tasks", None)
    monkeypatch.delitem(sys.modules, "django_jobs.backend", raising=False)
    with pytest.raises(ImproperlyConfigured, match=r"needs Django's Tasks framework .*Django 6\.0 or later"):
        importlib.import_module("django_jobs.backend")

