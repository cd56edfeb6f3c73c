"""A small shop that uses django_jobs: run ``scripts/demo`` to see it work."""
