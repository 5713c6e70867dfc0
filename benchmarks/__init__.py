"""Benchmarks runnable as modules: python -m benchmarks.unlearn_speed."""
