"""The benchmark harness: ``python -m bench.harness`` (through ``bench/run``).

The orchestrator (``orchestrator.py``) creates the databases and runs each scenario in
a child process of its own (``child.py``, with Django set up on one database); the
child starts real worker processes (``processes.py``), measures (``scenarios.py``,
``peer.py``) and hands back rows, which ``report.py`` turns into one table and a
JSON file.
"""
