"""The runner's cost: overhead per cell (storage, hashing, grid) over the cell's own
compute, and the quick suite's wall time in-process at 1 and 2 threads and in a 2-worker
process pool.

    .venv/bin/python benchmarks/speed_runner.py            # overhead only (seconds)
    .venv/bin/python benchmarks/speed_runner.py --quick    # also the quick suite, 3 ways (~12 min)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optbench.referees import Referee
from optbench.runner import compute_cell, run_suite
from optbench.suite import parse_suite
from optbench.workers import setup_torch

TINY = """
name = "overhead"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
[[cell]]
domain = "mnist"
source = "pixel_ascent"
n_samples = 32
settings = { max_steps = 4 }
"""


def overhead() -> None:
    setup_torch(1)
    suite = parse_suite(TINY)
    referee = Referee("mnist", "proxy_cnn")
    compute_cell(suite.cells[0], referee)  # warm-up
    t0 = time.perf_counter()
    for spec in suite.cells:
        compute_cell(spec, referee)
    compute = (time.perf_counter() - t0) / len(suite.cells)
    with tempfile.TemporaryDirectory() as d:
        run_suite(suite, Path(d), device="cpu", log=lambda *_: None)  # loads models once
        t0 = time.perf_counter()
        run_suite(suite, Path(d), device="cpu", force=True, log=lambda *_: None)
        total = (time.perf_counter() - t0) / len(suite.cells)
        t0 = time.perf_counter()
        run_suite(suite, Path(d), device="cpu", log=lambda *_: None)
        skip = (time.perf_counter() - t0) / len(suite.cells)
    print(f"per cell (tiny cells, 1 thread): compute {compute * 1e3:.0f} ms, run_suite {total * 1e3:.0f} ms, "
          f"overhead {(total - compute) * 1e3:.0f} ms (write, sha256, grid); resume check of a "
          f"complete cell {skip * 1e3:.1f} ms")


def quick() -> None:
    runs = {"in-process, 1 thread": ["--threads", "1", "run"],
            "in-process, 2 threads": ["--threads", "2", "run"],
            "process pool, 2 workers x 1 thread": ["run", "--workers", "2"]}
    for name, args in runs.items():
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "optbench.cli", *args, "benchmarks/quick.toml",
                            "--out", d, "--device", "cpu"], check=True, capture_output=True)
            print(f"quick suite, {name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    overhead()
    if a.quick:
        quick()
