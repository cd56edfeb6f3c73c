"""MariaDB/MySQL: the ORM's claim with ``FOR UPDATE SKIP LOCKED`` (MariaDB 10.6+, MySQL 8+)
and the batch writes of ``Engine`` suit it; what differs is said here.

No statement triggers and no ``UPDATE … RETURNING``: the event trail is written beside
each change (row triggers were measured: the drain −30 %, ``enqueue_many`` twice as slow).
No NOTIFY: workers poll.
"""

from __future__ import annotations

from .engine import Engine


class MySQLEngine(Engine):
    vendor = "mysql"
