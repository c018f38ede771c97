"""Summaries, plots and grids of a finished suite folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from optbench.report.goodhart import fit_curves, fits_figure, fits_markdown
from optbench.report.grids import cell_grid
from optbench.report.plots import curves_figure, equal_compute_figure, equal_proxy_by_source, equal_proxy_figure
from optbench.report.controls import CONTROLS_NOTE, control_pairs, controls_figure, controls_markdown, controls_table
from optbench.report.summary import (EQUAL_COMPUTE_NOTE, EQUAL_PROXY_NOTE, equal_compute_markdown, spends_queries,
                                     equal_proxy_markdown, equal_proxy_table,
                                     group_cells, incomplete_cells, kid_spaces, load_cells, summarize,
                                     summary_markdown, tidy_csv)
from optbench.domains import get_domain
from optbench.report.audit import TRUTH
from optbench.storage import StorageError, suite_lock, write_atomic


def write_suite_outputs(suite_dir: Path) -> dict:
    """summary.md, summary.json, curves.csv, plots/ and report.md/.html for every
    complete cell. Holds the suite folder's lock; every file is replaced only once its
    new version is complete (plots/ as a whole), so a full disk loses nothing."""
    suite_dir = Path(suite_dir)
    with suite_lock(suite_dir):
        return _write_outputs(suite_dir)


def _write_outputs(suite_dir: Path) -> dict:
    cells = load_cells(suite_dir)
    if not cells:
        raise RuntimeError(f"no complete cells under {suite_dir}")
    left_out = incomplete_cells(suite_dir)
    rows = summarize(cells)
    fits = fit_curves(cells)
    name = suite_dir.name
    meta = json.loads((suite_dir / "suite.json").read_text()) if (suite_dir / "suite.json").exists() else {}
    md = [f"# Suite `{name}`", "", meta.get("description", ""), "",
          f"Produced by `{meta.get('command', 'optbench run')}`; each cell's folder holds its spec, "
          "curve (CSV and JSON), image grid and versions.", ""]
    if left_out:
        md += [f"**{len(left_out)} cell(s) missing, partial or corrupted, and left out of every "
               f"number below:** {', '.join(left_out)}. Rerun the suite to recompute them.", ""]
    md += [summary_markdown(rows)]
    if fits:
        md += ["## Goodhart-law fits", "", fits_markdown(fits)]
    if len({c["spec"]["knob"] for c in cells}) > 1 or any(c["curve"].get("equal_proxy") for c in cells):
        table = equal_proxy_table(cells)
        md += ["## Equal proxy score", "", EQUAL_PROXY_NOTE, "", equal_proxy_markdown(table)]
        if any(spends_queries(r) for r in table):
            md += ["## Equal proxy compute", "", EQUAL_COMPUTE_NOTE, "", equal_compute_markdown(table)]
        spaces = kid_spaces(cells[0])
        if len(spaces) > 1:
            md += ["KID at equal proxy score in every feature space (`kid`: the primary space):", "",
                   equal_proxy_markdown(equal_proxy_table(cells, metrics=spaces), metrics=spaces)]
    if any(TRUTH in c["curve"]["rows"][0] for c in cells):
        md += ["## Referee audit against the exact departure", "",
               "See [audit.md](audit.md): each learned referee graded against the exact "
               "departure of the same outputs (plots/audit_misses_<domain>.png, plots/picture_<domain>.png).", ""]
    if any(k.startswith("det_") for c in cells[:1] for k in c["curve"]["rows"][0]):
        md += ["## Detectors graded against the gold", "",
               "See [detectors.md](detectors.md): each over-optimization detector (the proxy's side "
               "only) graded against the gold's departure, with the regret of stopping when it fires "
               "(plots/detectors.png).", ""]
    controls = controls_table(group_cells(cells))
    if controls:
        md += ["## Controls: pressure-attributable departure", "", CONTROLS_NOTE, "",
               controls_markdown(controls)]
    staging = Path(tempfile.mkdtemp(prefix=".plots-new.", dir=suite_dir))
    try:
        _draw_plots(cells, fits, suite_dir, staging)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(f"cannot write plots under {suite_dir}: {e.strerror or e}; the "
                           "previous plots/ and summaries are unchanged") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_atomic(suite_dir / "summary.md", "\n".join(md))
    write_atomic(suite_dir / "summary.json", json.dumps(rows, indent=1) + "\n")
    write_atomic(suite_dir / "curves.csv", tidy_csv(cells))
    plots = suite_dir / "plots"
    old = suite_dir / f".plots-old.{os.getpid()}"
    if plots.exists():
        os.replace(plots, old)
    os.replace(staging, plots)
    shutil.rmtree(old, ignore_errors=True)
    from optbench.report.html import write_report
    write_report(suite_dir)
    return {"cells": len(cells), "curves": len(rows), "left_out": left_out}


def _draw_plots(cells: list[dict], fits, suite_dir: Path, plots: Path) -> None:
    """Every figure of a suite into the folder `plots`."""
    name = suite_dir.name
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
        equal_compute_figure(cells, plots / "equal_compute.png",
                             title=f"suite {name}: proxy score and referee metrics at equal proxy "
                                   "compute (mean over seeds)")
    if fits:
        fits_figure(cells, fits, plots / "goodhart.png")
    from optbench.report.detectors import write_grading
    write_grading(cells, suite_dir, plots)
    from optbench.report.audit import has_gold, write_audit
    if write_audit(cells, suite_dir, plots):   # ground-truth domains: learned referees graded
        from optbench.report.gold_figures import picture, projections_figure
        for domain in sorted({c["spec"]["domain"] for c in cells if has_gold(c)}):
            if get_domain(domain).is_image:
                projections_figure(suite_dir, cells, domain, plots / f"projections_{domain}.png")
            else:
                picture(suite_dir, cells, domain, plots / f"picture_{domain}.png")
    if control_pairs(group_cells(cells)):
        controls_figure(group_cells(cells), plots / "controls.png")
    for generator in sorted({(c["spec"]["domain"], c["spec"]["settings"]["generator"]) for c in cells
                             if "generator" in c["spec"]["settings"]}):
        generator_sheet(*generator, plots / f"samples_{generator[1]}.png")
    # One grid per curve (its first seed), named by label, for the README and reports.
    seen, slugs = set(), {}
    for c in cells:
        label = c["spec"]["label"]
        if label in seen:
            continue
        seen.add(label)
        slug = "".join(ch if ch.isalnum() else "_" for ch in label).strip("_")
        if slugs.setdefault(slug, label) != label:   # "a b" and "a_b": keep both grids
            slug += "_" + hashlib.sha256(label.encode()).hexdigest()[:6]
        cell_grid(suite_dir / c["spec"]["cell_id"], plots / f"grid_{slug}.png")


def generator_sheet(domain: str, generator: str, out: Path, n: int = 100, seed: int = 5) -> None:
    """A 10 x 10 sheet of the unpressured generator's samples, for looking at the base."""
    from torchvision.utils import save_image
    from optbench.models.checkpoints import load_model
    from optbench.models.gan import generate, sample_latents
    from optbench.domains import get_domain
    G = load_model(domain, generator)
    if not get_domain(domain).is_image or not hasattr(G, "latent_dim"):
        return   # a vector domain's samples are in the grids; a diffusion model has no latent
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
    write_atomic(out / "equal_proxy.md", "\n".join(md) + "\n")
    return out
