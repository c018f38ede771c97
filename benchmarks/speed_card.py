"""How long `optbench card` takes: a small CNN (SmallCNN, width 16: the shipped
proxy_cnn's weights under another name, so no cell is shared with any other folder)
through MNIST's battery, full and --quick, each from an empty folder with 2 workers,
as a user runs it (the `optbench` command in a subprocess: start-up included).

    python benchmarks/speed_card.py [--workers 2] [--out results/speed/card.json]

Prints and writes the wall time of each run, the cells, the time spent inside cells
(summed over workers) and the rest (start-up, pre-flight, summaries, figures, card)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optbench.models.checkpoints import catalog, checkpoint_dir
from optbench.runner import machine

SCHEMA = "optbench.speed_card/1"


def run(quick: bool, workers: int, scratch: Path) -> dict:
    entry = catalog("mnist")["proxy_cnn"]
    weights = scratch / "small_cnn.safetensors"
    shutil.copy2(checkpoint_dir("mnist") / entry["file"], weights)
    out = scratch / ("quick" if quick else "full")
    cmd = [str(Path(sys.executable).parent / "optbench"), "card", "--domain", "mnist", "--name", "small_cnn",
           "--model", entry["arch"], "--weights", str(weights), "--arch-kwargs", json.dumps(entry["arch_kwargs"]),
           "--out", str(out), "--workers", str(workers), *(["--quick"] if quick else [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    folder = next(out.iterdir())
    card = json.loads((folder / "card.json").read_text())
    cell_seconds = sum(json.loads((folder / c / "meta.json").read_text())["wall_seconds"] for c in card["cells"])
    return {"quick": quick, "workers": workers, "wall_seconds": round(wall, 1), "cells": len(card["cells"]),
            "cell_seconds_summed": round(cell_seconds, 1),
            "outside_cells_seconds": round(wall - cell_seconds / workers, 1),
            "protocol": {k: card["protocol"][k] for k in ("battery", "version", "seeds", "n_samples", "pressure")}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="results/speed/card.json")
    a = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for quick in (True, False):
            r = run(quick, a.workers, Path(scratch))
            runs.append(r)
            print(f"{'--quick' if quick else 'full':8s} {r['wall_seconds']:7.1f} s wall, {r['cells']} cells, "
                  f"{r['cell_seconds_summed']:.0f} s in cells over {a.workers} workers, "
                  f"{r['outside_cells_seconds']:.0f} s outside", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"schema": SCHEMA, "machine": machine(), "cores": os.cpu_count(),
                                       "runs": runs}, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
