"""Benchmark harness for batchling: `python -m benchmarks --help`."""
