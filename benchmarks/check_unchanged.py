"""Recompute cells of a committed suite and compare their curves byte for byte: the check
that a refactor changed no numbers (same machine, same torch, one thread per cell as
the committed runs used).

    .venv/bin/python benchmarks/check_unchanged.py benchmarks/gan.toml results/gan --per-curve 1
    .venv/bin/python benchmarks/check_unchanged.py benchmarks/quick.toml results/quick

--per-curve k recomputes the first k seeds of each curve (default: every cell). Exit
status 1 if any recomputed curve.json differs from the committed one. Columns the
committed curve lacks (added since, e.g. proxy_forward) are listed, not compared: every
value the committed curve has must be the same to the last bit."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from optbench.runner import run_suite, setup_torch
from optbench.suite import Suite, load_suite


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("suite")
    p.add_argument("results")
    p.add_argument("--per-curve", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    setup_torch(1)
    suite = load_suite(a.suite)
    cells, seen = [], {}
    for c in suite.cells:
        k = seen.setdefault(c.group_key(), 0)
        if not a.per_curve or k < a.per_curve:
            cells.append(c)
            seen[c.group_key()] = k + 1
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        run_suite(Suite(suite.name, suite.description, tuple(cells), suite.path), Path(tmp),
                  workers=a.workers, log=lambda *_: None)
        same = differ = 0
        added: set[str] = set()
        for c in cells:
            ours = json.loads((Path(tmp) / suite.name / c.cell_id / "curve.json").read_text())
            theirs = json.loads((Path(a.results) / c.cell_id / "curve.json").read_text())
            added |= {k for row in ours["rows"] for k in row} - {k for row in theirs["rows"] for k in row}
            ours["rows"] = [{k: v for k, v in row.items() if k in old} for row, old in zip(ours["rows"], theirs["rows"])]
            if json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True):
                same += 1
            else:
                differ += 1
                print(f"DIFFERS: {c.cell_id} {c.label} seed={c.seed}")
        if added:
            print(f"columns added since (not compared): {', '.join(sorted(added))}")
    print(f"{suite.name}: {same} of {len(cells)} recomputed cells identical to {a.results} "
          f"({time.time() - t0:.0f} s)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
