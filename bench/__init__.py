"""Benchmark harness (`make bench`): our service against the seed baseline, same data."""
