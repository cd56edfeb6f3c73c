"""The jobs the benchmark runs: a no-op, and one that reports when it was entered."""
