"""Rewrite the shipped null distributions, optbench/checkpoints/mnist/null_<n>.json (about
3 minutes per n at 1 thread). Run it after any change to the distribution metrics, the
feature nets or NUMBERS_VERSION: a null whose key no longer matches is not used.

    .venv/bin/python benchmarks/calibrate_null.py
"""
from optbench.referees.null import ship_nulls
from optbench.runner import setup_torch

setup_torch(1)
ship_nulls()
