"""Summaries, plots and grids of a finished suite folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from optbench.report.goodhart import fit_curves, fits_figure, fits_markdown
from optbench.report.grids import cell_grid
from optbench.report.plots import curves_figure, equal_proxy_by_source, equal_proxy_figure
from optbench.report.summary import (EQUAL_PROXY_NOTE, equal_proxy_markdown, equal_proxy_table,
                                     load_cells, summarize, summary_markdown, write_tidy_csv)


def write_suite_outputs(suite_dir: Path) -> dict:
    """summary.md, summary.json, curves.csv, plots/ and report.md/.html for every
    complete cell."""
    suite_dir = Path(suite_dir)
    cells = load_cells(suite_dir)
    if not cells:
        raise RuntimeError(f"no complete cells under {suite_dir}")
    rows = summarize(cells)
    fits = fit_curves(cells)
    name = suite_dir.name
    meta = json.loads((suite_dir / "suite.json").read_text()) if (suite_dir / "suite.json").exists() else {}
    md = [f"# Suite `{name}`", "", meta.get("description", ""), "",
          f"Produced by `{meta.get('command', 'optbench run')}`; each cell's folder holds its spec, "
          "curve (CSV and JSON), image grid and versions.", "", summary_markdown(rows)]
    if fits:
        md += ["## Goodhart-law fits", "", fits_markdown(fits)]
    if len({c["spec"]["knob"] for c in cells}) > 1:
        md += ["## Equal proxy score", "", EQUAL_PROXY_NOTE, "",
               equal_proxy_markdown(equal_proxy_table(cells))]
    (suite_dir / "summary.md").write_text("\n".join(md))
    (suite_dir / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    write_tidy_csv(cells, suite_dir / "curves.csv")
    plots = suite_dir / "plots"
    shutil.rmtree(plots, ignore_errors=True)
    plots.mkdir()
    by_knob: dict[str, list[dict]] = {}
    for c in cells:
        by_knob.setdefault(c["spec"]["knob"], []).append(c)
    if len(by_knob) == 1:
        curves_figure(cells, plots / "curves.png", title=f"suite {name}")
    else:  # curves only share an x axis with curves of the same knob
        for knob, members in by_knob.items():
            curves_figure(members, plots / f"curves_{knob}.png", title=f"suite {name}: x = {knob}")
        equal_proxy_by_source(cells, plots / "equal_proxy.png",
                              title=f"suite {name}: referee metrics at equal proxy score "
                                    "(mean over seeds; dashed grey: judge = proxy)")
    if fits:
        fits_figure(cells, fits, plots / "goodhart.png")
    for generator in sorted({(c["spec"]["domain"], c["spec"]["settings"]["generator"]) for c in cells
                             if "generator" in c["spec"]["settings"]}):
        generator_sheet(*generator, plots / f"samples_{generator[1]}.png")
    # One grid per curve (its first seed), named by label, for the README and reports.
    seen = set()
    for c in cells:
        label = c["spec"]["label"]
        if label in seen:
            continue
        seen.add(label)
        slug = "".join(ch if ch.isalnum() else "_" for ch in label).strip("_")
        cell_grid(suite_dir / c["spec"]["cell_id"], plots / f"grid_{slug}.png")
    from optbench.report.html import write_report
    write_report(suite_dir)
    return {"cells": len(cells), "curves": len(rows)}


def generator_sheet(domain: str, generator: str, out: Path, n: int = 100, seed: int = 5) -> None:
    """A 10 x 10 sheet of the unpressured generator's samples, for looking at the base."""
    from torchvision.utils import save_image
    from optbench.models.checkpoints import load_model
    from optbench.models.gan import generate, sample_latents
    G = load_model(domain, generator)
    save_image(generate(G, sample_latents(n, seed, G.latent_dim)), str(out), nrow=10, padding=2,
               pad_value=0.5)


def write_comparison(suite_dirs: list[Path], out: Path) -> Path:
    """Curves of several suites on common axes: referee metrics at equal proxy score."""
    cells = []
    for d in suite_dirs:
        found = load_cells(d)
        if not found:
            raise RuntimeError(f"no complete cells under {d}")
        cells += found
    out.mkdir(parents=True, exist_ok=True)
    names = ", ".join(d.name for d in suite_dirs)
    equal_proxy_figure(cells, out / "equal_proxy.png",
                       title=f"suites {names}: referee metrics at equal proxy score "
                             "(mean over seeds; dashed: judge = proxy)")
    md = [f"# Equal proxy score: {names}", "",
          EQUAL_PROXY_NOTE, "",
          equal_proxy_markdown(equal_proxy_table(cells)),
          f"Produced by `optbench compare {' '.join(str(d) for d in suite_dirs)} --out {out}`."]
    (out / "equal_proxy.md").write_text("\n".join(md) + "\n")
    return out
