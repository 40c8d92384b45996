"""Benchmarks of the Sampler Scheduler pack (scripts, not tests): ``python -m benchmarks.bench_solvers``."""
