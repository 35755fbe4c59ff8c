"""Benchmarks: `python -m bench [NAME ...]` runs bench/<NAME>_bench.py (all by default)."""
