"""The report on folders it did not write itself: hostile labels, diverged curves, empty
nulls, damaged or foreign cell files, suite-declared domains, long names, and others
reading a shared folder. Results folders are built by hand (no cell is computed)."""
import base64
import csv
import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from optbench.cli import main as cli

LEVELS = (0, 1, 2, 4)
JUDGES = ("judge_a", "judge_b")


def metric_row(level: int, judges=JUDGES, nan: bool = False) -> dict:
    """One curve point with every key the summary and the plots read."""
    v = (lambda x: math.nan) if nan else (lambda x: x)
    t = level / 4
    row = {"steps": level, "pressure": float(level), "diverged_frac": 1.0 if nan else 0.0,
           "n_finite": 0 if nan else 16, "proxy_prob": v(0.1 + 0.8 * t), "judge_prob": v(0.1 + 0.3 * t),
           "gap": v(0.5 * t), "kid": v(0.01 + t), "kid_std": v(0.01), "fid": v(1.0 + 10 * t),
           "precision": v(0.9 - 0.5 * t), "recall": v(0.9), "c2st": v(0.5 + 0.4 * t),
           "diversity": v(3.0), "l2": v(float(level)), "proxy_forward": level, "proxy_backward": level}
    for name in judges:
        row |= {f"{name}_prob": v(0.1 + 0.2 * t), f"{name}_agree": v(0.5)}
    return row


def baseline(judges=JUDGES, nan: bool = False) -> dict:
    v = (lambda x: math.nan) if nan else (lambda x: x)
    return {"kid": v(0.001), "kid_std": v(0.01), "fid": v(0.5), "judge_prob": v(0.9),
            **{f"{name}_prob": v(0.95) for name in judges}}


NULL = {"kid": {"draws": 60, "mean": 0.0, "n": 16, "q01": -0.01, "q99": 0.02, "std": 0.01}}


def write_cell(suite: Path, cell_id: str, label: str, *, rows=None, base=None, null=NULL,
               source="pixel_ascent", domain="mnist", settings=None, seed=0, hw=(8, 8)) -> Path:
    """A complete cell folder as the runner writes it, DONE and all."""
    folder = suite / cell_id
    folder.mkdir(parents=True)
    rows = rows if rows is not None else [metric_row(s) for s in LEVELS]
    spec = {"cell_id": cell_id, "distance": "l2", "domain": domain, "knob": "steps", "label": label,
            "law": "rl", "n_samples": 16, "pressure": "steps x lr", "proxy": "proxy_cnn",
            "proxy_kind": "classifier", "schema": 1, "seed": seed,
            "settings": settings if settings is not None else {"lr": 0.05, "max_steps": 4, "start": "real"},
            "source": source, "versions": {"numbers": 2}}
    curve = {"schema": 1, "cell_id": cell_id, "knob": "steps", "rows": rows,
             "baseline": base if base is not None else baseline(), "equal_proxy": [], "null": null}
    meta = {"wall_seconds": 1.5, "versions": {"optbench": "0.1.0"}, "git_commit": "abc"}
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "curve.json").write_text(json.dumps(curve))
    (folder / "meta.json").write_text(json.dumps(meta))
    snaps = torch.rand(len(rows), 3, 1, *hw)
    levels = torch.tensor([float(r["steps"]) for r in rows])
    save_file({"snapshots": snaps, "targets": torch.tensor([1, 2, 3]), "levels": levels},
              str(folder / "snapshots.safetensors"))
    rehash(folder)
    return folder


def rehash(folder: Path) -> None:
    """DONE listing every other file's sha256: what makes a cell complete."""
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(folder.iterdir()) if p.name != "DONE"}
    (folder / "DONE").write_text(json.dumps(hashes))


def write_suite(suite: Path, labels: dict, **extra) -> None:
    suite.mkdir(parents=True, exist_ok=True)
    (suite / "suite.json").write_text(json.dumps(
        {"schema": 1, "name": suite.name, "description": extra.pop("description", ""),
         "source_file": "s.toml", "cells": list(labels), "labels": labels,
         "command": "optbench run s.toml", **extra}))


def one_cell_suite(tmp_path, label="c", **cell) -> Path:
    suite = tmp_path / "s"
    write_suite(suite, {"c0": label})
    write_cell(suite, "c0", label, **cell)
    return suite


def outputs(suite: Path) -> dict:
    from optbench.report import write_suite_outputs
    return write_suite_outputs(suite)


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- labels are text ------------------------------------------------------------------------

def test_a_label_with_image_syntax_embeds_nothing(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n not for the report")
    label = f"![x]({secret})"
    suite = one_cell_suite(tmp_path, label=label)
    write_suite(suite, {"c0": label}, description=f"# ![d]({secret})", command=f"x` ![c]({secret}) `")
    outputs(suite)
    page = (suite / "report.html").read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert f'<img alt="x" src="{secret}"' not in page
    assert f"![x]({secret})" in page                     # shown as the text it is
    assert f"<p># ![d]({secret})</p>" in page and f"<code>x` ![c]({secret}) `</code>" in page
    summary = (suite / "summary.md").read_text()
    assert f"| \\![x\\]({secret}) | 1 |" in summary


def test_only_images_inside_the_suite_folder_are_embedded(tmp_path):
    from optbench.report.html import _embed_images
    suite, outside = tmp_path / "s", tmp_path / "outside.png"
    (suite / "plots").mkdir(parents=True)
    outside.write_bytes(b"outside")
    (suite / "plots" / "ok.png").write_bytes(b"inside")
    (suite / "plots" / "link.png").symlink_to(outside)
    page = "".join(f'<img alt="a" src="{src}" />' for src in
                   (str(outside), "../outside.png", "plots/link.png", "plots/ok.png"))
    out = _embed_images(page, suite)
    inside, leaked = base64.b64encode(b"inside").decode(), base64.b64encode(b"outside").decode()
    assert out.count(f"data:image/png;base64,{inside}") == 1
    assert leaked not in out


def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote():
    from optbench.report.summary import tidy_csv
    labels = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain"]
    cells = [{"spec": {"cell_id": f"c{i}", "label": lab, "source": "pixel_ascent", "proxy": "p", "seed": 0,
                       "n_samples": 8, "settings": {"start": "-real"}, "knob": "steps"},
              "curve": {"rows": [metric_row(0)], "baseline": {"kid": -0.5}}} for i, lab in enumerate(labels)]
    rows = list(csv.DictReader(io.StringIO(tidy_csv(cells))))
    assert [r["label"] for r in rows] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)",
                                          "'\tx", "'\rx", "plain"]
    assert rows[0]["setting_start"] == "'-real"
    assert rows[0]["baseline_kid"] == "-0.5"              # numbers stay numbers


# -- a curve diverged at every level --------------------------------------------------------

def _figure_texts(monkeypatch) -> list[str]:
    """Every text drawn on the figures the plots module closes."""
    import matplotlib.text
    import optbench.report.plots as plots
    texts, close = [], plots.plt.close

    def keep(fig=None):
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        close(fig)
    monkeypatch.setattr(plots.plt, "close", keep)
    return texts


def test_a_curve_diverged_at_every_level_is_drawn_marked_and_summarized(tmp_path, monkeypatch):
    texts = _figure_texts(monkeypatch)
    suite = tmp_path / "s"
    write_suite(suite, {"c0": "fine", "c1": "blown"})
    write_cell(suite, "c0", "fine")
    write_cell(suite, "c1", "blown", rows=[metric_row(s, nan=True) for s in LEVELS], base=baseline(nan=True),
               settings={"lr": 1e30, "max_steps": 4, "start": "real"})
    assert outputs(suite)["curves"] == 2
    assert (suite / "plots" / "curves.png").is_file() and (suite / "report.html").is_file()
    assert any("all NaN: diverged at every level" in t and "blown" in t for t in texts), texts
    assert "| blown | 1 |" in (suite / "summary.md").read_text()


def test_a_suite_whose_only_curve_diverged_everywhere_still_gets_its_plots(tmp_path):
    suite = one_cell_suite(tmp_path, rows=[metric_row(s, nan=True) for s in LEVELS], base=baseline(nan=True))
    outputs(suite)
    assert (suite / "plots" / "curves.png").is_file() and (suite / "summary.md").is_file()


def test_a_figure_that_cannot_be_drawn_is_named_and_the_summary_is_written(tmp_path, monkeypatch):
    import optbench.report as report

    def fails(*args, **kwargs):
        raise ValueError("Data cannot be log-scaled because all values are <= 0.")
    monkeypatch.setattr(report, "curves_figure", fails)
    suite = one_cell_suite(tmp_path)
    with pytest.raises(RuntimeError) as e:
        outputs(suite)
    assert str(e.value) == (f"cannot draw {suite}/plots/curves.png (ValueError: Data cannot be "
                            "log-scaled because all values are <= 0.); summary.md, summary.json and "
                            "curves.csv are written, the previous plots/ is unchanged")
    assert (suite / "summary.md").is_file() and (suite / "curves.csv").is_file()
    assert not (suite / "plots").exists()


# -- no null, no "never" --------------------------------------------------------------------

def _summary_line(suite_cells, label="c") -> str:
    from optbench.report.summary import summarize, summary_markdown
    md = summary_markdown(summarize(suite_cells))
    return md, next(ln for ln in md.splitlines() if ln.startswith(f"| {label} | "))


def _cell(null, kid_at_end=0.0001, seed=0):
    rows = [dict(metric_row(s), kid=kid_at_end if s else 0.0) for s in LEVELS]
    spec = {"knob": "steps", "label": "c", "source": "pixel_ascent", "proxy": "p", "domain": "d",
            "n_samples": 16, "settings": {}, "seed": seed, "cell_id": f"c{seed}"}
    curve = {"rows": rows, "baseline": baseline()}
    if null is not None:
        curve["null"] = null
    return {"spec": spec, "curve": curve}


def test_an_empty_null_says_no_null_never_never():
    md, line = _summary_line([_cell({})])
    assert line == "| c | 1 | steps 4 | 0.4 | steps no null | 0.5 | 0.9 | 0.4 | 0.0001 | no null |"
    assert "'no null' means the cell stored no real-against-real null" in md
    _, line = _summary_line([_cell(NULL)])          # a measured non-departure
    assert "steps never (0/1 seeds)" in line and "0, 0.02 |" in line


def test_seeds_without_a_null_are_counted():
    _, line = _summary_line([_cell(NULL, seed=0), _cell({}, seed=1)])
    assert "steps never (0/2 seeds; 1 without a null)" in line


# -- the folder alone is enough -------------------------------------------------------------

def test_a_generator_on_an_unknown_domain_needs_no_domain(tmp_path):
    suite = one_cell_suite(tmp_path, source="best_of_n", domain="nowhere_declared",
                           settings={"generator": "gen_x", "pool_size": 64})
    assert outputs(suite)["cells"] == 1
    assert not list((suite / "plots").glob("samples_*"))
    assert (suite / "report.html").is_file()


def test_the_suites_context_is_activated_before_the_report_reads_domains(tmp_path, monkeypatch):
    import optbench.report as report
    from optbench.domains import get_domain
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "report_ctx_plugin_b7.py").write_text("LOADED = True\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((30, 1, 4, 4)).astype(np.float32), y=np.repeat([0, 1, 2], 10))
    table = {"data": "npz", "path": str(tmp_path / "d.npz"), "splits": {"test": 3, "reference": 3}}
    suite = tmp_path / "s"
    write_suite(suite, {"c0": "bon"}, context={"pythonpath": [str(plug)], "plugins": ["report_ctx_plugin_b7"],
                                               "domains": {"ctx_npz_b7": table}})
    write_cell(suite, "c0", "bon", source="best_of_n", domain="ctx_npz_b7",
               settings={"generator": "gen_x", "pool_size": 64})
    seen = []
    monkeypatch.setattr(report, "generator_sheet",
                        lambda domain, generator, out, **kw: seen.append((get_domain(domain).shape, generator)))
    outputs(suite)
    assert seen == [((1, 4, 4), "gen_x")]
    assert sys.modules["report_ctx_plugin_b7"].LOADED


def test_a_missing_suite_json_reports_from_the_cell_folders(tmp_path, capsys):
    suite = one_cell_suite(tmp_path, label="from spec")
    (suite / "suite.json").unlink()
    assert cli(["plot", str(suite)]) == 0
    assert "| from spec | 1 |" in (suite / "summary.md").read_text()


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON (line 1, column 2: Expecting property name enclosed in double quotes)"),
    (b"\xff\xfe", "not valid JSON (byte 0xff at position 0 is not UTF-8)"),
    ("[1, 2]", "expected a JSON object, got a list"),
    ('{"cells": "c0"}', "field 'cells' is not a list of cell folder names"),
    ('{"cells": ["../../etc"]}', "field 'cells' names '../../etc', which is not a cell folder name"),
    ('{"cells": ["c0"], "labels": ["x"]}', "field 'labels' is not a table of strings"),
    ('{"cells": ["c0"], "description": 5}', "field 'description' is not a string"),
    ('{"cells": ["c0"], "context": {"plugins": "x"}}', "field 'context.plugins' is not a list of strings"),
])
def test_a_bad_suite_json_is_one_line_naming_it_and_the_fix(content, problem, tmp_path, capsys):
    suite = one_cell_suite(tmp_path)
    path = suite / "suite.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for command in ("plot", "report"):
        assert cli([command, str(suite)]) == 2
        assert error_line(capsys) == (f"optbench: error: {path}: {problem}; rerun `optbench run <suite "
                                      "file>` to rewrite it")


# -- damaged cell files ---------------------------------------------------------------------

def _damage(folder: Path, name: str, change) -> None:
    path = folder / name
    data = json.loads(path.read_text())
    path.write_text(change(data) if callable(change) else change)
    rehash(folder)


BAD_CELLS = [
    ("curve.json", lambda c: json.dumps({"schema": 1}), "field 'rows' is missing or not a list"),
    ("curve.json", lambda c: json.dumps(c | {"rows": []}), "field 'rows' is empty"),
    ("curve.json", lambda c: json.dumps(c | {"rows": [1, 2]}), "rows[0] is not a table"),
    ("curve.json", lambda c: json.dumps(c | {"rows": [{k: v for k, v in r.items() if k != "kid"}
                                                       for r in c["rows"]]}),
     "rows[0]: field 'kid' is missing or not a number"),
    ("curve.json", lambda c: json.dumps(c | {"rows": [r | {"steps": "0"} for r in c["rows"]]}),
     "rows[0]: field 'steps' is missing or not a number"),
    ("curve.json", lambda c: json.dumps(c | {"baseline": []}), "field 'baseline' is missing or not a table"),
    ("curve.json", lambda c: json.dumps(c | {"null": {"kid": {"q99": 1}}}),
     "null['kid']: field 'q01' is missing or not a number"),
    ("curve.json", lambda c: json.dumps(c | {"equal_proxy": [{"threshold": 0.5}]}),
     "equal_proxy[0]: field 'reached_frac' is missing or not a number"),
    ("curve.json", "{garbage", "not valid JSON (line 1, column 2: Expecting property name enclosed in "
                               "double quotes)"),
    ("spec.json", lambda s: json.dumps(s | {"label": 5}), "field 'label' is missing or not a string"),
    ("spec.json", lambda s: json.dumps(s | {"seed": True}), "field 'seed' is missing or not an integer"),
    ("spec.json", lambda s: json.dumps(s | {"settings": None}), "field 'settings' is missing or not a table"),
    ("meta.json", lambda m: "[]", "expected a JSON object, got a list"),
]


@pytest.mark.parametrize("name, change, problem", BAD_CELLS)
def test_read_cell_names_the_file_and_field(name, change, problem, tmp_path):
    from optbench.record import read_cell
    folder = write_cell(tmp_path, "c0", "c")
    _damage(folder, name, change)
    with pytest.raises(ValueError) as e:
        read_cell(folder)
    assert str(e.value) == f"{folder / name}: {problem}"


@pytest.mark.parametrize("name, change, problem", BAD_CELLS[:1] + BAD_CELLS[3:4] + BAD_CELLS[9:10])
def test_a_bad_cell_is_left_out_with_the_warning(name, change, problem, tmp_path, capsys):
    suite = tmp_path / "s"
    write_suite(suite, {"good": "good", "bad": "bad"})
    write_cell(suite, "good", "good")
    _damage(write_cell(suite, "bad", "bad", settings={"lr": 0.1}), name, change)
    assert cli(["plot", str(suite)]) == 0
    err = capsys.readouterr().err
    assert "1 cell(s) missing, partial or corrupted were left out of the summary: bad (" in err
    assert f"{name}: {problem}); rerun the suite" in err   # the reason, naming the file
    summary = (suite / "summary.md").read_text()
    assert "| good | 1 |" in summary and "| bad |" not in summary


# -- long names, shared folders -------------------------------------------------------------

def test_long_labels_make_short_distinct_grid_files(tmp_path):
    long_a, long_b = "a" * 299 + "1", "a" * 299 + "2"
    suite = tmp_path / "s"
    write_suite(suite, {"c0": long_a, "c1": long_b})
    write_cell(suite, "c0", long_a)
    write_cell(suite, "c1", long_b, settings={"lr": 0.1, "max_steps": 4, "start": "real"})
    outputs(suite)
    grids = sorted(p.name for p in (suite / "plots").glob("grid_*.png"))
    digest = lambda s: hashlib.sha256(s.encode()).hexdigest()[:8]  # noqa: E731
    assert grids == sorted(f"grid_{'a' * 80}_{digest(s)}.png" for s in (long_a, long_b))
    assert f"### {long_a}" in (suite / "report.md").read_text()    # headings keep the label
    from optbench.text import unique_slugs                   # short ones keep their names
    assert unique_slugs(["Adam [proxy_cnn]", "tiny start=real", "a b", "a_b"]) == {
        "Adam [proxy_cnn]": "Adam__proxy_cnn", "tiny start=real": "tiny_start_real", "a b": "a_b",
        "a_b": "a_b_" + hashlib.sha256(b"a_b").hexdigest()[:6]}


@pytest.mark.parametrize("mask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_plots_folder_follows_the_umask(mask, mode, tmp_path):
    suite = one_cell_suite(tmp_path)
    old = os.umask(mask)
    try:
        outputs(suite)
    finally:
        os.umask(old)
    assert (suite / "plots").stat().st_mode & 0o777 == mode


# -- judges by any name, grids of any shape, any domain's words -----------------------------

def test_judges_not_named_judge_star_get_their_column():
    from optbench.report.summary import summarize, summary_markdown
    judges = ("referee_a", "judge_b")
    cell = _cell(NULL)
    cell["curve"]["rows"] = [metric_row(s, judges=judges) for s in LEVELS]
    cell["curve"]["baseline"] = baseline(judges=judges)
    md = summary_markdown(summarize([cell]))
    assert "| curve | referee_a | judge_b |" in md
    assert "| c | 0.3 (real 0.950) | 0.3 (real 0.950) |" in md


def test_grid_rows_are_labelled_at_each_rows_middle_on_non_square_images(tmp_path, monkeypatch):
    import optbench.grids as grids
    folder = write_cell(tmp_path, "c0", "c", hw=(8, 24))
    ticks = {}
    close = grids.plt.close

    def keep(fig=None):
        ax = fig.axes[0]
        ticks["y"], ticks["x"] = list(ax.get_yticks()), list(ax.get_xticks())
        close(fig)
    monkeypatch.setattr(grids.plt, "close", keep)
    grids.cell_grid(folder, tmp_path / "g.png")
    # make_grid: a 2-pixel border, then tiles of 8 x 24 pixels 2 apart; pixel centres are integers
    assert ticks["y"] == [2 + 10 * i + 3.5 for i in range(len(LEVELS))]
    assert ticks["x"] == [2 + 26 * j + 11.5 for j in range(3)]


def test_generic_text_does_not_say_digits():
    from optbench.report.controls import CONTROLS_NOTE
    from optbench.report.summary import summarize, summary_markdown
    md = summary_markdown(summarize([_cell(NULL)]))
    assert "digit" not in md and "digit" not in CONTROLS_NOTE
    assert "real examples of the target class" in md


def test_a_missing_plugin_costs_only_its_figures_with_a_warning(tmp_path, capsys):
    """A results folder reports from its files alone: a plug-in recorded in suite.json
    that is gone is a warning naming suite.json, and the summary is written."""
    suite = one_cell_suite(tmp_path)
    meta = json.loads((suite / "suite.json").read_text())
    meta["context"] = {"pythonpath": [], "plugins": ["no_such_plugin_9d1"], "domains": {}}
    (suite / "suite.json").write_text(json.dumps(meta))
    assert cli(["plot", str(suite)]) == 0
    err = capsys.readouterr().err
    assert f"optbench: warning: {suite / 'suite.json'}: cannot load the suite's plug-ins and domains (" in err
    assert "no_such_plugin_9d1" in err
    assert (suite / "summary.md").is_file() and "| c |" in (suite / "summary.md").read_text()
