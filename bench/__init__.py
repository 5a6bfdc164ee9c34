"""Benchmarks: one script per benchmark, each against a peer in the same run (run as `python bench/X.py`)."""
