"""Rewrite the shipped null distributions, optbench/checkpoints/<domain>/null_<n>.json
(about 3 minutes per n at 1 thread for MNIST). Run it after any change to the distribution
metrics, the feature nets or NUMBERS_VERSION: a null whose key no longer matches is not used.

    .venv/bin/python benchmarks/calibrate_null.py                 # mnist, n = 128 and 200
    .venv/bin/python benchmarks/calibrate_null.py digits8 128     # a domain and sizes
"""
import sys
import time

from optbench.domains import get_domain
from optbench.referees import Referee
from optbench.referees.null import NULL_DRAWS, SHIPPED_N, ship_null
from optbench.workers import setup_torch

setup_torch(1)
domain = sys.argv[1] if len(sys.argv) > 1 else "mnist"
referee = Referee(domain, get_domain(domain).default_proxy)
for n in tuple(int(n) for n in sys.argv[2:]) or SHIPPED_N:
    t0 = time.time()
    path = ship_null(referee, n)
    print(f"{path}: {NULL_DRAWS} draws of n = {n} in {time.time() - t0:.0f} s")
