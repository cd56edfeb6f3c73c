"""Running one task and recording what it came to: used by worker threads, by
``IMMEDIATE`` mode and by the test helpers alike.

``outcome`` (what an attempt came to) <- ``calling`` (call the job) <- ``isolation``
(the same in a child process, for jobs with a timeout) <- ``executor`` (one attempt,
start to recorded) -> ``recording`` (conditional UPDATEs) -> ``outcome``. This
``__init__`` imports nothing: a job's child process imports ``isolation`` before
Django is set up.
"""
