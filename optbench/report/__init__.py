"""Summaries, plots and grids of a finished suite folder, read from its files.

No model is loaded here: what a figure needs from one (a proxy's decision regions, the
exact referee's projections, a generator's samples) the runner stored in the folder
(optbench/figure_inputs.py). The report reads the cells' files, suite.json, those
stored arrays, and a domain's own data where a figure draws it (the reference split, a
mixture's exact density); a folder that predates the stored arrays is drawn without
them, with a note to rerun the suite with --force."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from optbench.report.goodhart import fits_figure, fits_markdown
from optbench.grids import cell_grid, grid_files
from optbench.report.plots import curves_figure, equal_compute_figure, equal_proxy_by_source, equal_proxy_figure
from optbench.report.controls import CONTROLS_NOTE, control_pairs, controls_figure, controls_markdown
from optbench.report.results import RESULTS_FILE, SuiteTables, clean, results_document, suite_commit, suite_tables
from optbench.report.summary import (EQUAL_COMPUTE_NOTE, EQUAL_PROXY_NOTE, equal_compute_markdown, spends_queries,
                                     equal_proxy_markdown, equal_proxy_table,
                                     group_cells, load_cells, scan_cells, suite_meta,
                                     summary_document, summary_markdown, tidy_csv)
from optbench.text import file_slug, md_code, md_text
from optbench.domains import get_domain
from optbench.figure_inputs import read_generator_samples
from optbench.report.audit import TRUTH
from optbench.report.detectors import detector_names
from optbench.storage import PLOTS_NEW, PLOTS_OLD, StorageError, shared_mkdtemp, suite_lock, write_atomic


def write_suite_outputs(suite_dir: Path) -> dict:
    """summary.md, summary.json, results.json, curves.csv, plots/ and report.md/.html
    for every complete cell. Holds the suite folder's lock; every file is replaced only once its
    new version is complete (plots/ as a whole), so a full disk loses nothing."""
    suite_dir = Path(suite_dir)
    with suite_lock(suite_dir):
        return _write_outputs(suite_dir)


def render_report(suite_dir: Path) -> dict:
    """`optbench report`: report.md and the standalone report.html rendered again from the
    summary.md and plots/ already in the folder (what `optbench plot` or `run` wrote),
    recomputing no summary, fit or figure: seconds, where `plot` takes longer. Returns
    the paths and a warning when summary.md predates the folder's last run."""
    suite_dir = Path(suite_dir)
    with suite_lock(suite_dir):
        suite_meta(suite_dir)   # a bad suite.json is its one-line error, as for `plot`
        summary = suite_dir / "summary.md"
        if not summary.is_file():
            raise ValueError(f"{suite_dir}: no summary.md to render; `optbench plot {suite_dir}` "
                             "writes the summary, plots and report")
        run = suite_dir / "suite.json"
        stale = run.is_file() and run.stat().st_mtime > summary.stat().st_mtime
        from optbench.report.html import write_report
        md, html = write_report(suite_dir)
    return {"report": md, "html": html,
            "warnings": [f"{summary} predates the last run into {suite_dir}; `optbench plot {suite_dir}` "
                         "rewrites the summary and plots from its cells"] if stale else []}


def activate_context(suite_dir: Path, meta: dict) -> str | None:
    """The suite's pythonpath, plug-ins and file-based domains, as its run had them
    (suite.json's "context"), imported like a suite file's: plug-in metrics and sources
    name the curves' values, and a vector domain's figures draw its reference split.
    Best effort: a results folder reports from its files alone, so a plug-in or data set
    that has moved only costs the figures that need it; returns the warning then. Older
    folders have no context."""
    context = meta.get("context")
    if not context:
        return None
    from optbench.errors import first_line
    from optbench.suite import Context
    try:
        extensions = context.get("extensions")
        Context(pythonpath=tuple(context.get("pythonpath", [])), plugins=tuple(context.get("plugins", [])),
                domains=json.dumps(context.get("domains", {}), sort_keys=True),
                extensions=json.dumps(extensions, sort_keys=True) if extensions else "").activate()
    except Exception as e:   # a plug-in may raise anything at import
        return (f"{Path(suite_dir) / 'suite.json'}: cannot load the suite's plug-ins and domains "
                f"({first_line(e)}); figures that need them (a domain's data) are left out")
    return None


def _write_outputs(suite_dir: Path) -> dict:
    meta = suite_meta(suite_dir)
    warning = activate_context(suite_dir, meta)
    cells, left_out = scan_cells(suite_dir)
    if not cells:
        raise RuntimeError(f"no complete cells under {suite_dir}")
    tables = suite_tables(cells)   # every number of the summaries, once
    from optbench.runner import git_commit
    results = results_document(suite_dir.name, meta, cells, tables, left_out, suite_commit(meta, cells),
                               git_commit())
    md = _summary_md(suite_dir.name, meta, cells, tables, list(left_out))
    staging = shared_mkdtemp(PLOTS_NEW, suite_dir)
    try:
        left_without = _draw_plots(cells, tables, suite_dir, staging)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(f"cannot write plots under {suite_dir}: {e.strerror or e}; the "
                           "previous plots/ and summaries are unchanged") from None
    except FigureError:   # a figure that cannot be drawn must not cost the numbers
        shutil.rmtree(staging, ignore_errors=True)
        _write_summaries(suite_dir, md, tables.rows, cells, results)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    note = predates_note(str(suite_dir), left_without)
    if note:
        md += [f"**Note:** {md_text(predates_note('this results folder', left_without), in_table=False)}.", ""]
    _write_summaries(suite_dir, md, tables.rows, cells, results)
    plots = suite_dir / "plots"
    old = suite_dir / f"{PLOTS_OLD}{os.getpid()}"
    if plots.exists():
        _keep_undrawn(plots, staging)
        os.replace(plots, old)
    os.replace(staging, plots)
    shutil.rmtree(old, ignore_errors=True)
    from optbench.report.html import write_report
    write_report(suite_dir)
    return {"cells": len(cells), "curves": len(tables.rows), "left_out": list(left_out), "why_left_out": left_out,
            "warnings": [w for w in (warning, note) if w]}


# Figures named after curve labels or knobs: an old one the new drawing lacks shows a curve
# the suite no longer has, so it goes. Any other old figure the drawing lacks is kept: a
# benchmark script wrote it (top_of_million_*), or the folder predates the stored inputs
# the report now draws it from (a GAN's samples_*.png).
REDRAWN_BY_NAME = ("grid_", "curves_")


def _keep_undrawn(plots: Path, staging: Path) -> None:
    for f in plots.iterdir():
        if f.is_file() and not f.name.startswith(REDRAWN_BY_NAME) and not (staging / f.name).exists():
            shutil.copy2(f, staging / f.name)


def _write_summaries(suite_dir: Path, md: list[str], rows: list[dict], cells: list[dict], results: dict) -> None:
    write_atomic(suite_dir / "summary.md", "\n".join(md))
    write_atomic(suite_dir / "summary.json", json.dumps(summary_document(rows), indent=1) + "\n")
    write_atomic(suite_dir / RESULTS_FILE, json.dumps(clean(results), indent=1, allow_nan=False) + "\n")
    write_atomic(suite_dir / "curves.csv", tidy_csv(cells))


def _summary_md(name: str, meta: dict, cells: list[dict], tables: SuiteTables,
                left_out: list[str]) -> list[str]:
    rows, fits = tables.rows, tables.fits
    md = [f"# Suite {md_code(name)}", "", md_text(meta.get("description", ""), in_table=False), "",
          f"Produced by {md_code(meta.get('command', 'optbench run'))}; each cell's folder holds its spec, "
          "curve (CSV and JSON), image grid and versions.", ""]
    if left_out:
        md += [f"**{len(left_out)} cell(s) missing, partial or corrupted, and left out of every "
               f"number below:** {md_text(', '.join(left_out), in_table=False)}. Rerun the suite to "
               "recompute them.", ""]
    md += [summary_markdown(rows)]
    if fits:
        md += ["## Goodhart-law fits", "", fits_markdown(fits)]
    if tables.equal_proxy is not None:   # one table holds the headline metrics and every KID space
        table, spaces = tables.equal_proxy, tables.spaces
        md += ["## Equal proxy score", "", EQUAL_PROXY_NOTE, "", equal_proxy_markdown(table, metrics=tables.headline)]
        if any(spends_queries(r) for r in table):
            md += ["## Equal proxy compute", "", EQUAL_COMPUTE_NOTE, "", equal_compute_markdown(table)]
        if len(spaces) > 1:
            md += ["KID at equal proxy score in every feature space (`kid`: the primary space):", "",
                   equal_proxy_markdown(table, metrics=tuple(spaces))]
    if any(TRUTH in c["curve"]["rows"][0] for c in cells):
        md += ["## Referee audit against the exact departure", "",
               "See [audit.md](audit.md): each learned referee graded against the exact "
               "departure of the same outputs (plots/audit_misses_<domain>.png, plots/picture_<domain>.png).", ""]
    if any(detector_names(c) for c in cells[:1]):
        md += ["## Detectors graded against the gold", "",
               "See [detectors.md](detectors.md): each over-optimization detector (the proxy's side "
               "only) graded against the gold's departure, with the regret of stopping when it fires "
               "(plots/detectors.png).", ""]
    if tables.controls:
        md += ["## Controls: pressure-attributable departure", "", CONTROLS_NOTE, "",
               controls_markdown(tables.controls)]
    return md


def predates_note(folder: str, left_without: list[str]) -> str | None:
    """One line for a folder written before runs stored what figures need from models
    (`left_without`: what each such figure lacks)."""
    if not left_without:
        return None
    return (f"{folder} predates the stored figure inputs: {'; '.join(left_without)}; "
            "rerun the suite with --force to add them")


class FigureError(RuntimeError):
    """A figure that cannot be drawn from these results (not a disk error)."""


@contextlib.contextmanager
def _drawing(suite_dir: Path, name: str):
    """Name the figure that cannot be drawn (matplotlib's own message names nothing);
    OSErrors stay what they are: the disk's, not the figure's."""
    try:
        yield
    except OSError:
        raise
    except Exception as e:
        from optbench.errors import first_line
        raise FigureError(f"cannot draw {suite_dir / 'plots' / name} ({first_line(e)}); "
                           "summary.md, summary.json and curves.csv are written, the previous "
                           "plots/ is unchanged") from e


def _draw_plots(cells: list[dict], tables: SuiteTables, suite_dir: Path, plots: Path) -> list[str]:
    """Every figure of a suite into the folder `plots`; returns what was left out of them
    because the folder predates stored figure inputs (predates_note)."""
    name, fits = suite_dir.name, tables.fits
    by_knob: dict[str, list[dict]] = {}
    for c in cells:
        by_knob.setdefault(c["spec"]["knob"], []).append(c)
    if len(by_knob) == 1:
        with _drawing(suite_dir, "curves.png"):
            curves_figure(cells, plots / "curves.png", title=f"suite {name}")
    else:  # curves only share an x axis with curves of the same knob
        for knob, members in by_knob.items():
            out = f"curves_{file_slug(knob)}.png"
            with _drawing(suite_dir, out):
                curves_figure(members, plots / out, title=f"suite {name}: x = {knob}")
        with _drawing(suite_dir, "equal_proxy.png"):
            equal_proxy_by_source(cells, plots / "equal_proxy.png",
                                  title=f"suite {name}: referee metrics at equal proxy score "
                                        "(mean over seeds; dashed grey: judge = proxy)")
        with _drawing(suite_dir, "equal_compute.png"):
            equal_compute_figure(cells, plots / "equal_compute.png",
                                 title=f"suite {name}: proxy score and referee metrics at equal proxy "
                                       "compute (mean over seeds)")
    if fits:
        with _drawing(suite_dir, "goodhart.png"):
            fits_figure(cells, fits, plots / "goodhart.png")
    left_without = _draw_gold(cells, tables, suite_dir, plots)
    if control_pairs(group_cells(cells)):
        with _drawing(suite_dir, "controls.png"):
            controls_figure(group_cells(cells), plots / "controls.png")
    generators = {(c["spec"]["domain"], str(c["spec"]["settings"]["generator"])):
                  c["spec"].get("bounds", (0.0, 1.0)) for c in cells if "generator" in c["spec"]["settings"]}
    stored = read_generator_samples(suite_dir) if generators else None
    for (domain, generator), bounds in sorted(generators.items()):
        out = f"samples_{file_slug(generator)}.png"
        with _drawing(suite_dir, out):
            if generator_sheet(domain, generator, plots / out, bounds=tuple(bounds), stored=stored):
                left_without.append(f"plots/{out} is not drawn")
    # One grid per curve (its first seed), named by label, for the README and reports.
    for _, (c, out) in grid_files(cells).items():
        with _drawing(suite_dir, out):
            cell_grid(suite_dir / c["spec"]["cell_id"], plots / out)
    return left_without


def _draw_gold(cells: list[dict], tables: SuiteTables, suite_dir: Path, plots: Path) -> list[str]:
    """Detector grading and the referee audit, for cells that recorded them; returns
    the layers left out of the ground-truth figures (predates_note)."""
    from optbench.report.detectors import write_grading
    with _drawing(suite_dir, "detectors.png"):
        write_grading(cells, suite_dir, plots, tables.detectors, tables.detector_false_positives,
                      tables.detector_equal_proxy)
    from optbench.report.audit import has_gold, write_audit
    with _drawing(suite_dir, "audit_misses_*.png (the referee audit)"):
        audited = write_audit(cells, suite_dir, plots, tables.audit, tables.audit_families)
    if not audited:   # ground-truth domains only: learned referees graded
        return []
    from optbench.report.gold_figures import picture, projections_figure
    left_without = []
    for domain in sorted({c["spec"]["domain"] for c in cells if has_gold(c)}):
        image = get_domain(domain).is_image
        out = f"{'projections' if image else 'picture'}_{file_slug(domain)}.png"
        with _drawing(suite_dir, out):
            left_without.append((projections_figure if image else picture)(suite_dir, cells, domain, plots / out))
    return [w for w in left_without if w]


def generator_sheet(domain: str, generator: str, out: Path, bounds: tuple = (0.0, 1.0),
                    stored: dict | None = None) -> bool:
    """A 10 x 10 sheet of the unpressured generator's samples, for looking at the base,
    from the samples the run stored (`stored`: figure_inputs.read_generator_samples).
    A generator the run stored none for has no sheet (a diffusion model has no latent; a
    vector domain's samples are in the grids). True when the folder predates stored
    samples (`stored` None) and the generator's domain, where this process knows it,
    has images: the sheet is left out and the report says how to add it."""
    if stored is None:
        from optbench.domains import DOMAINS
        from optbench.registry import PluginError
        try:
            return DOMAINS[domain].is_image
        except (KeyError, PluginError):   # a folder from a run that did not record its context
            return False
    x = stored.get(f"{domain}/{generator}")
    if x is None:
        return False
    from torchvision.utils import save_image
    lo, hi = bounds
    save_image(((x.float() - lo) / (hi - lo)).clamp(0, 1), str(out), nrow=10, padding=2, pad_value=0.5)
    return False


def write_comparison(suite_dirs: list[Path], out: Path) -> Path:
    """Curves of several suites on common axes: referee metrics at equal proxy score."""
    cells = []
    # Each curve is named by its suite too: two suites may hold curves of one label (or
    # the same curve), and they stay apart in the table, its suite column, and the figure.
    tags = [d.name for d in suite_dirs]
    if len(set(tags)) < len(tags):   # results/quick and other/quick: name them by path
        tags = [str(d) for d in suite_dirs]
    for d, tag in zip(suite_dirs, tags):
        found = load_cells(d)
        if not found:
            raise RuntimeError(f"no complete cells under {d}")
        cells += [{**c, "suite": tag} for c in found]
    out.mkdir(parents=True, exist_ok=True)
    names = ", ".join(tags)
    equal_proxy_figure([{**c, "spec": {**c["spec"], "label": f"{c['suite']}: {c['spec']['label']}"}}
                        for c in cells], out / "equal_proxy.png",
                       title=f"suites {names}: referee metrics at equal proxy score "
                             "(mean over seeds; dashed: judge = proxy)")
    md = [f"# Equal proxy score: {names}", "",
          EQUAL_PROXY_NOTE, "",
          equal_proxy_markdown(equal_proxy_table(cells)),
          f"Produced by `optbench compare {' '.join(str(d) for d in suite_dirs)} --out {out}`."]
    write_atomic(out / "equal_proxy.md", "\n".join(md) + "\n")
    return out
