"""Recompute cells of a committed suite and compare their curves byte for byte: the check
that a refactor changed no numbers (same machine, same torch, one thread per cell as
the committed runs used).

    .venv/bin/python benchmarks/check_unchanged.py benchmarks/gan.toml results/gan --per-curve 1
    .venv/bin/python benchmarks/check_unchanged.py benchmarks/quick.toml results/quick

--per-curve k recomputes the first k seeds of each curve (default: every cell). A cell
is matched to the committed one by its spec and seed, so a cell whose id changed (a
version in its id moved) is still compared. Exit status 1 if any recomputed curve.json
differs from the committed one; --json writes the comparison, cell by cell, with the
columns that differ. Columns the
committed curve lacks (added since, e.g. proxy_forward) are listed, not compared, and so
are exact equal-proxy points where the committed curve has none (a source that reports
crossings since): every value the committed curve has must be the same to the last bit."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from optbench.runner import run_suite
from optbench.suite import Suite, curve_key, load_suite
from optbench.workers import setup_torch


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("suite")
    p.add_argument("results")
    p.add_argument("--per-curve", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="write the comparison here (results/unchanged/<suite>.json)")
    a = p.parse_args()
    setup_torch(1)
    suite = load_suite(a.suite)
    cells, seen = [], {}
    for c in suite.cells:
        k = seen.setdefault(c.group_key(), 0)
        if not a.per_curve or k < a.per_curve:
            cells.append(c)
            seen[c.group_key()] = k + 1
    committed = committed_cells(Path(a.results))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        run_suite(Suite(suite.name, suite.description, tuple(cells), suite.path), Path(tmp),
                  workers=a.workers, log=lambda *_: None)
        seconds = round(time.time() - t0)
        report = {"suite": suite.name, "suite_file": a.suite, "results": a.results, "per_curve": a.per_curve,
                  "cells": [], "added": set(), "new_ids": 0}
        for c in cells:
            ours = json.loads((Path(tmp) / suite.name / c.cell_id / "curve.json").read_text())
            key = curve_key(c.canonical()), c.seed
            if key not in committed:
                report["cells"].append({"cell_id": c.cell_id, "label": c.label, "seed": c.seed,
                                        "status": "not in the committed folder"})
                continue
            old_id, theirs = committed[key]
            report["new_ids"] += old_id != c.cell_id
            report["added"] |= {k for row in ours["rows"] for k in row} - {k for row in theirs["rows"] for k in row}
            ours["rows"] = [{k: v for k, v in row.items() if k in old} for row, old in zip(ours["rows"], theirs["rows"])]
            if ours.get("equal_proxy") and not theirs.get("equal_proxy"):
                report["added"].add("equal_proxy points")
                ours["equal_proxy"] = theirs.get("equal_proxy")
            elif theirs.get("equal_proxy"):   # values the committed points lack: added since
                ours["equal_proxy"] = [{k: v for k, v in p.items() if k in old}
                                       for p, old in zip(ours["equal_proxy"], theirs["equal_proxy"])]
            theirs["null"] = {k: v for k, v in (theirs.get("null") or {}).items()}
            report["added"] |= {f"null of {k}" for k in set(ours.get("null") or {}) - set(theirs["null"])}
            ours["null"] = {k: v for k, v in (ours.get("null") or {}).items() if k in theirs["null"]}
            changed = differing_columns(ours, theirs)
            report["cells"].append({"cell_id": c.cell_id, "committed_id": old_id, "label": c.label, "seed": c.seed,
                                    "status": "identical" if not changed else "differs", "differs_in": changed,
                                    "largest_relative_difference": largest_difference(ours, theirs)})
            if changed:
                print(f"DIFFERS: {c.cell_id} {c.label} seed={c.seed}: {', '.join(changed[:8])}")
        if report["added"]:
            print(f"added since (not compared): {', '.join(sorted(report['added']))}")
    same = sum(r["status"] == "identical" for r in report["cells"])
    print(f"{suite.name}: {same} of {len(cells)} recomputed cells identical to {a.results} ({seconds} s; "
          f"{report['new_ids']} under a new cell id)")
    if a.json:
        report |= {"identical": same, "recomputed": len(cells), "seconds": seconds,
                   "added": sorted(report["added"]), "schema": 1}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if same == len(cells) else 1


def committed_cells(folder: Path) -> dict:
    """(curve key, seed) -> (cell id, curve) of every complete cell in a results folder:
    a cell is matched by its spec, so one whose id changed (a version in its id moved)
    is still compared."""
    out = {}
    for spec_file in folder.glob("*/spec.json"):
        spec = json.loads(spec_file.read_text())
        curve = spec_file.parent / "curve.json"
        if curve.exists():
            out[curve_key(spec), spec["seed"]] = spec["cell_id"], json.loads(curve.read_text())
    return out


def largest_difference(ours: dict, theirs: dict) -> float:
    """The largest |a - b| / max(|a|, |b|) over the rows' numbers both curves have (0 when
    bit-identical)."""
    worst = 0.0
    for row, old in zip(ours["rows"], theirs["rows"]):
        for k, b in old.items():
            a = row.get(k)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == a and b == b and a != b:
                worst = max(worst, abs(a - b) / max(abs(a), abs(b)))
    return worst


def differing_columns(ours: dict, theirs: dict) -> list[str]:
    """The row columns, baseline keys and other fields whose values differ (NaN equals NaN)."""
    def same(a, b):
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    out = []
    keys = dict.fromkeys(k for row in theirs["rows"] for k in row)
    out += [k for k in keys if not same([r.get(k) for r in ours["rows"]], [r.get(k) for r in theirs["rows"]])]
    out += [f"baseline.{k}" for k in theirs.get("baseline", {}) if not same(ours["baseline"].get(k), theirs["baseline"][k])]
    out += [f"{f}" for f in ("null", "equal_proxy", "knob") if not same(ours.get(f), theirs.get(f))]
    return out


if __name__ == "__main__":
    sys.exit(main())
