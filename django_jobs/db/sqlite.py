"""SQLite: one writer at a time and no row locks, so the claim is a conditional UPDATE
(``Engine.claim_with_conditional_update``): two workers can never both match a row.

The event trail is written beside each change (row triggers cost ``enqueue_many``
~35 %, measured). No NOTIFY: workers poll.
"""

from __future__ import annotations

from .engine import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"

    @property
    def skips_locked(self) -> bool:
        return False
