"""Django's Tasks framework (django.tasks) on the JobsBackend, Django 6.0 or later."""
