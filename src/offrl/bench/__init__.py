"""Benchmark sweeps: run (Ray), tables, plots, report."""
