"""One scenario on one database, in a process of its own:
``python -m bench.harness.child SCENARIO PARAMS_JSON OUT_JSON`` (the orchestrator runs it).

Writes ``{"rows": [...]}`` or ``{"error": ..., "traceback": ...}`` to OUT_JSON.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback


def main(scenario: str, params_json: str, out_path: str) -> int:
    # SIGTERM from the orchestrator (time is up): unwind, so that finally blocks and
    # atexit stop the workers this process started.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(143))
    import django

    django.setup()
    params = json.loads(params_json)
    if scenario.startswith("peer"):
        from .peer import SCENARIOS  # django_tasks_db is installed only in the peer's run
    elif scenario.startswith("scale"):
        from .scale import SCENARIOS
    elif scenario == "lanes":
        from .lanes import SCENARIOS
    elif scenario == "growth":
        from .growth import SCENARIOS
    else:
        from .scenarios import SCENARIOS
    runner = SCENARIOS[scenario]
    try:
        outcome = {"rows": runner(params)}
        code = 0
    except Exception as error:  # noqa: BLE001 -- reported as an error row, never as a number
        outcome = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        code = 1
    with open(out_path, "w") as out:
        json.dump(outcome, out, default=str)
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
