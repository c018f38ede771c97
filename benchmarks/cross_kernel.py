"""Run a suite under another CPU kernel set and compare every number with the committed
results: how far a user on another CPU lands from what we ship.

torch picks CPU kernels by CPU (ATEN_CPU_CAPABILITY=default/avx2/avx512 selects them by
hand), so the same cells give other last bits, and Adam amplifies those into visibly
different trajectories. This measures what that does to the numbers we report.

    .venv/bin/python benchmarks/cross_kernel.py benchmarks/quick.toml \
        --capability default --reference results/quick

On another machine, compare a folder that machine produced instead of running here
(`results/quick/cross_machine.md` was made so, from a fresh clone's `bash scripts/quick.sh`):

    .venv/bin/python benchmarks/cross_kernel.py benchmarks/quick.toml \
        --reference results/quick --rerun /path/to/clone/results/quick --name cross_machine

Writes <reference>/<name>.md and <name>.json (name: cross_kernel by default): for every summary number of
every curve, the committed mean and interval, the rerun's mean, their difference, and
whether the rerun's mean lies inside the committed interval; and per curve metric the
largest difference at any single pressure level of any seed."""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# Summary numbers compared (mean over seeds, with the committed interval).
SKIP = ("cell_seconds",)
# Per-level curve metrics compared cell by cell.
CURVE_METRICS = ("proxy_prob", "judge_prob", "judge_bncnn_agree", "judge_agree", "kid", "fid",
                 "precision", "recall", "c2st", "l2")


def run_under(suite: Path, capability: str, out: Path, workers: int) -> None:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    cmd = [sys.executable, "-m", "optbench.cli", "run", str(suite), "--out", str(out),
           "--force", "--workers", str(workers), "--device", "cpu"]
    subprocess.run(cmd, env=env, check=True)


def inside(v: float, lo: float, hi: float, w: float) -> bool:
    """The rerun's value lies in the committed interval; with no interval (a number only
    one seed has, so its bounds are NaN), it must equal the committed value."""
    if math.isnan(lo) or math.isnan(hi):
        return w == v
    return bool(lo - 1e-12 <= w <= hi + 1e-12)


def compare_summaries(ref: list[dict], new: list[dict]) -> list[dict]:
    by_label = {r["label"]: r for r in new}
    rows = []
    for r in ref:
        n = by_label[r["label"]]
        for key, v in r.items():
            if (key.endswith(("_lo", "_hi")) or key in SKIP or not isinstance(v, float)
                    or key + "_lo" not in r):
                continue
            lo, hi, w = r[key + "_lo"], r[key + "_hi"], n[key]
            if not all(map(math.isfinite, (v, w))):
                continue
            rows.append({"curve": r["label"], "number": key, "committed": v, "lo": lo, "hi": hi,
                         "rerun": w, "abs_diff": abs(w - v),
                         "rel_diff": abs(w - v) / abs(v) if v else math.nan,
                         "inside": inside(v, lo, hi, w)})
    return rows


def compare_curves(ref_dir: Path, new_dir: Path) -> list[dict]:
    """Largest per-level difference of each metric over every cell, level and seed."""
    out = {}
    for cell in sorted(p for p in ref_dir.iterdir() if (p / "curve.json").exists()):
        other = new_dir / cell.name / "curve.json"
        if not other.exists():
            continue
        a = json.loads((cell / "curve.json").read_text())["rows"]
        b = json.loads(other.read_text())["rows"]
        for m in CURVE_METRICS:
            for ra, rb in zip(a, b):
                x, y = ra.get(m, math.nan), rb.get(m, math.nan)
                if not (math.isfinite(x) and math.isfinite(y)):
                    continue
                d = abs(x - y)
                best = out.get(m)
                if best is None or d > best["abs_diff"]:
                    out[m] = {"metric": m, "abs_diff": d, "committed": x, "rerun": y,
                              "cell": cell.name, "level": ra[next(iter(ra))]}
    return list(out.values())


def markdown(summary: list[dict], curves: list[dict], title: str, ref_machine: dict,
             new_machine: dict) -> str:
    inside = sum(r["inside"] for r in summary)
    worst = max(summary, key=lambda r: r["abs_diff"] / max(r["hi"] - r["lo"], 1e-12))
    lines = [f"# {title}", "",
             f"Committed results: kernels {ref_machine.get('cpu_capability')} on "
             f"{ref_machine.get('cpu_model')}. Rerun: kernels {new_machine.get('cpu_capability')} "
             f"on {new_machine.get('cpu_model')}. Same cell ids, same code.", "",
             f"**{inside} of {len(summary)} summary numbers** have the rerun's mean inside the "
             "committed interval. Largest difference relative to the interval's width: "
             f"`{worst['number']}` of '{worst['curve']}', {worst['committed']:.4g} -> {worst['rerun']:.4g} "
             f"(interval [{worst['lo']:.4g}, {worst['hi']:.4g}]).", "",
             "| curve | number | committed [interval] | rerun | difference | relative | inside |",
             "|---|---|---|---|---|---|---|"]
    for r in summary:
        rel = f"{100 * r['rel_diff']:.2g}%" if math.isfinite(r["rel_diff"]) else "n/a"
        lines.append(f"| {r['curve']} | {r['number']} | {r['committed']:.4g} [{r['lo']:.4g}, {r['hi']:.4g}] | "
                     f"{r['rerun']:.4g} | {r['abs_diff']:.2g} | {rel} | {'yes' if r['inside'] else '**no**'} |")
    lines += ["", "Largest difference at a single pressure level of a single seed (no averaging):", "",
              "| metric | committed | rerun | difference | cell | level |", "|---|---|---|---|---|---|"]
    for c in curves:
        lines.append(f"| {c['metric']} | {c['committed']:.4g} | {c['rerun']:.4g} | {c['abs_diff']:.2g} | "
                     f"{c['cell']} | {c['level']} |")
    return "\n".join(lines) + "\n"


def first_machine(suite_dir: Path) -> dict:
    for meta in sorted(suite_dir.glob("*/meta.json")):
        return json.loads(meta.read_text()).get("machine", {})
    return {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite", type=Path)
    p.add_argument("--capability", default="default", help="ATEN_CPU_CAPABILITY of the rerun")
    p.add_argument("--reference", type=Path, required=True, help="committed results/<suite> folder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rerun", type=Path, help="compare this results folder of the suite (made on another "
                   "machine) instead of running the suite here")
    p.add_argument("--name", default="cross_kernel", help="stem of the written .md and .json")
    a = p.parse_args()
    from optbench.report.summary import summary_rows   # summary.json: {"schema", "rows"} or an older bare list
    ref = summary_rows(json.loads((a.reference / "summary.json").read_text()))
    with tempfile.TemporaryDirectory(prefix="optbench-cross-") as tmp:
        if a.rerun:
            new_dir, title = a.rerun, "Cross-machine rerun: the same suite on another machine"
        else:
            run_under(a.suite, a.capability, Path(tmp), a.workers)
            new_dir = next(d for d in Path(tmp).iterdir() if d.is_dir())
            title = f"Cross-kernel rerun: ATEN_CPU_CAPABILITY={a.capability}"
        new = summary_rows(json.loads((new_dir / "summary.json").read_text()))
        summary = compare_summaries(ref, new)
        curves = compare_curves(a.reference, new_dir)
        md = markdown(summary, curves, title, first_machine(a.reference), first_machine(new_dir))
    (a.reference / f"{a.name}.md").write_text(md)
    (a.reference / f"{a.name}.json").write_text(json.dumps(
        {"capability": None if a.rerun else a.capability, "summary": summary, "curves": curves}, indent=1) + "\n")
    print(md)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
