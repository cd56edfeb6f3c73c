"""Real run_jobworker processes: running, stopping, crashing, outages, timeouts, races."""
