"""Benchmarks of memevolve itself: search efficiency, evaluation throughput, scale."""
