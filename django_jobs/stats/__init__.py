"""Every number operators read about the queue, computed in one place.

- ``counts``: tasks by status (exact, or capped so a huge status stops early), and
  the exact breakdowns by job and by queue;
- ``live``: what is waiting or running per queue now, and the live workers;
- ``history``: what finished or failed over time, slowest and most-failing jobs;
- ``flow``: flow control read for operators: why a pending task waits (its full
  concurrency or rate limit), and the busiest keys;
- ``summary``: the answers built from them: ``get_statistics()`` (the public API,
  ``jobs_stats``, the JSON API's ``statistics``) and the ``jobs_stats --watch`` frame.

The admin dashboard and the Prometheus collector read ``counts``, ``live`` and
``history`` directly; admin, the API and ``manage.py jobs`` read ``flow``. Nothing here writes.
"""
