"""The jobs the benchmark runs: a no-op, one that reports when it was entered, and their
limited variants for the flow scenario."""
