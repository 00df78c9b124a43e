"""Benchmarks against NAS-Bench-201 ground truth: rank correlations and plots."""
