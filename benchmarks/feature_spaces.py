"""Where the feature spaces agree: every proxy variant's KID at equal proxy score in
each feature space, as a ratio to a reference curve's, paired by seed, with Student-t
intervals over the per-seed ratios. Writes <suite>/feature_spaces.md.

    .venv/bin/python benchmarks/feature_spaces.py results/crux_quick --reference "pixel ascent [proxy_cnn]"

With several --reference curves (one per source), each curve is divided by the reference
of its own source; curves whose source has no reference get no ratio.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from optbench.report.intervals import mean_ci, seeds_text
from optbench.report.summary import _fmt, equal_proxy_value, group_cells, kid_spaces, load_cells


def _cell(t) -> str:
    return _fmt(*t, missing="not reached")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite_dir", type=Path)
    ap.add_argument("--reference", required=True, action="append",
                    help="label of the curve the others of its source are divided by (repeatable)")
    ap.add_argument("--level", type=float, default=0.99)
    args = ap.parse_args()
    cells = load_cells(args.suite_dir)
    groups = {m[0]["spec"]["label"]: m for m in group_cells(cells).values()}
    refs = {groups[r][0]["spec"]["source"]: {c["spec"]["seed"]: c for c in groups[r]} for r in args.reference}
    spaces = kid_spaces(cells[0])
    names = ["judge_bncnn (primary)" if k == "kid" else k.split("@")[1] for k in spaces]
    lines = [f"# KID at proxy probability {args.level} in every feature space", "",
             f"Suite `{args.suite_dir.name}`. Each sample stopped where its own proxy probability first "
             f"reached {args.level} (sources without per-sample steps: read where the mean proxy "
             f"probability crosses it, linearly between levels); KID of that set against the reference "
             f"digits, in each feature space. 'ratio' is the curve's KID over that of its source's "
             f"reference curve ({', '.join(f'`{r}`' for r in args.reference)}), per seed (same start "
             f"digits and targets), then averaged; brackets: Student-t 95% interval over seeds "
             f"{seeds_text(len(m) for m in groups.values())}.", "",
             "| curve | " + " | ".join(f"KID {n}" for n in names) + " | " +
             " | ".join(f"ratio to reference, {n}" for n in names) + " |",
             "|---|" + "---|" * (2 * len(spaces))]
    for label, members in groups.items():
        kids = [_cell(mean_ci([equal_proxy_value(c, k, args.level) for c in members])) for k in spaces]
        ratios, ref = [], refs.get(members[0]["spec"]["source"], {})
        for k in spaces:
            per_seed = [equal_proxy_value(c, k, args.level) / equal_proxy_value(ref[c["spec"]["seed"]], k, args.level)
                        for c in members if c["spec"]["seed"] in ref]
            ratios.append(_cell(mean_ci(per_seed)) if ref else "no reference")
        lines.append(f"| {label} | " + " | ".join(kids) + " | " + " | ".join(ratios) + " |")
    flags = " ".join(f'--reference "{r}"' for r in args.reference)
    lines += ["", f"Made by `.venv/bin/python benchmarks/feature_spaces.py {args.suite_dir} {flags} "
              f"--level {args.level}`."]
    (args.suite_dir / "feature_spaces.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
