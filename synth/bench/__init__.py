"""Benchmarks that write their results, with machine and date, to ``bench/results/``."""
