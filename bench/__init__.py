"""Benchmarks: each module's `run()` returns its figures (name -> value, target); never a test."""
