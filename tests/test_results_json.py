"""results.json: every number of summary.md under a citable key, valid against the
shipped schema, equal to the same numbers recomputed here from the cell files alone;
and every JSON file a run writes names its schema."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from scipy import stats

SUITE = """
name = "cite"
seeds = [0, 1]

[[cell]]
label = "ascent"
domain = "gmm2"
proxy = "proxy_mlp"
source = "pixel_ascent"
n_samples = 32
settings = { start = "real", lr = 0.05, max_steps = 16 }

[[cell]]
label = "noise"
domain = "gmm2"
proxy = "proxy_mlp"
source = "pixel_ascent"
n_samples = 32
settings = { start = "real", lr = 0.05, max_steps = 16, optimizer = "random_sign" }

[[cell]]
label = "best-of-n"
domain = "gmm2"
proxy = "proxy_mlp"
source = "best_of_n"
n_samples = 32
settings = { generator = "sampler_exact", pool_size = 256 }
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The suite run and reported, with results.json loaded: (folder, results, start time)."""
    from optbench.report import write_suite_outputs
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    start = time.time()
    out = tmp_path_factory.mktemp("results")
    counts = run_suite(parse_suite(SUITE), out, device="cpu", log=lambda *_: None)
    assert counts["computed"] == 6 and counts["failed"] == 0, counts
    folder = out / "cite"
    write_suite_outputs(folder)
    return folder, json.loads((folder / "results.json").read_text()), start


def schema() -> dict:
    from optbench.report.results import schema_text
    return json.loads(schema_text())


def cells_of(folder: Path, label: str) -> list[dict]:
    """The curve's cells from their files, by seed: spec and curve as stored."""
    out = []
    for spec_file in sorted(folder.glob("*/spec.json")):
        spec = json.loads(spec_file.read_text())
        if spec["label"] == label:
            out.append({"spec": spec, "curve": json.loads((spec_file.parent / "curve.json").read_text())})
    return sorted(out, key=lambda c: c["spec"]["seed"])


def t_interval(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def close(entry: dict, mean: float, lo: float | None = None, hi: float | None = None) -> None:
    assert entry["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
    if lo is not None:
        assert entry["lo"] == pytest.approx(lo, rel=1e-9, abs=1e-12)
        assert entry["hi"] == pytest.approx(hi, rel=1e-9, abs=1e-12)


def test_results_json_validates_against_the_shipped_schema(suite):
    _, results, _ = suite
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.validate(results, schema())
    from optbench import __version__
    from optbench.cache import NUMBERS_VERSION
    assert results["schema"] == "optbench.results/1" and results["optbench"] == __version__
    assert results["numbers_version"] == NUMBERS_VERSION and results["suite"] == "cite"
    assert len(results["commit"]) == 40 or results["commit"] == "unknown"
    # this run wrote suite.json, with the commit it ran at; the tables were made now
    assert results["commit"] == json.loads((suite[0] / "suite.json").read_text())["git_commit"]
    from optbench.runner import git_commit
    assert results["report_commit"] == git_commit()
    assert results["command"].startswith("optbench run")
    assert set(results["curves"]) == {"ascent", "noise", "best-of-n"}
    # every summary number has its place: nothing fell through to "other"
    assert all(c["other"] == {} for c in results["curves"].values())


def test_a_schema_violation_is_caught():
    bad = {"schema": "optbench.results/1"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())


def test_every_cell_id_is_a_cell_folder_of_the_suite(suite):
    folder, results, _ = suite
    listed = [c for curve in results["curves"].values() for c in curve["cells"]]
    assert len(listed) == 6
    for c in listed:
        spec = json.loads((folder / c["id"] / "spec.json").read_text())
        assert spec["seed"] == c["seed"] and spec["cell_id"] == c["id"]
        assert c["commit"] == json.loads((folder / c["id"] / "meta.json").read_text())["git_commit"]
    assert sorted(c["id"] for c in listed) == sorted(json.loads((folder / "suite.json").read_text())["cells"])


def test_departure_and_values_at_max_equal_a_recomputation_from_the_cells(suite):
    folder, results, _ = suite
    curve = results["curves"]["ascent"]
    cells = cells_of(folder, "ascent")
    # KID's departure: the first level from which KID stays above its null's q99
    levels = []
    for c in cells:
        knob, thr = c["spec"]["knob"], c["curve"]["null"]["kid"]["q99"]
        rows = [r for r in c["curve"]["rows"] if math.isfinite(r["kid"])]
        above = np.array([r["kid"] > thr for r in rows])
        first = next((i for i in range(len(rows)) if above[i:].all()), None)
        levels.append(rows[first][knob] if first is not None else math.nan)
    # The median over the seeds not off the data at the first level (never: +inf), and
    # [min, max], which covers the median of 2 seeds with probability 1 - 2 (1/2)^2.
    first_level = cells[0]["curve"]["rows"][0][cells[0]["spec"]["knob"]]
    on = [math.inf if math.isnan(x) else x for x in levels if x != first_level]
    departed = [x for x in on if math.isfinite(x)]
    kid = curve["departure"]["kid"]
    assert kid["seeds_departed"] == len(departed) and kid["seeds_with_null"] == 2
    assert kid["seeds_at_start"] == len(levels) - len(on)
    if departed:
        value = lambda v: math.inf if v == "inf" else v  # noqa: E731
        assert value(kid["median"]) == float(np.median(on))
        if len(on) == 2:
            assert (value(kid["lo"]), value(kid["hi"])) == (min(on), max(on)) and kid["coverage"] == 0.5
    else:
        assert kid["median"] is None and kid["status"] in ("never", "at start")
    close(kid["threshold"], float(np.mean([c["curve"]["null"]["kid"]["q99"] for c in cells])))
    # KID and the proxy probability at the highest pressure
    kid_max = [[r["kid"] for r in c["curve"]["rows"] if math.isfinite(r["kid"])][-1] for c in cells]
    close(curve["at_max"]["kid"], *t_interval(kid_max))
    judge = t_interval([c["curve"]["rows"][-1]["judge_prob"] for c in cells])
    close(curve["at_max"]["judge_prob"], judge[0], max(judge[1], 0.0), min(judge[2], 1.0))   # a probability: clipped to [0, 1]
    close(curve["baseline"]["kid"], float(np.mean([c["curve"]["baseline"]["kid"] for c in cells])))


def test_equal_proxy_points_and_controls_equal_a_recomputation_from_the_cells(suite):
    folder, results, _ = suite
    ascent, noise = cells_of(folder, "ascent"), cells_of(folder, "noise")
    point = results["curves"]["ascent"]["equal_proxy"]
    assert point["how"] == "stopped"
    at = [next(p for p in c["curve"]["equal_proxy"] if p["threshold"] == 0.5) for c in ascent]
    reached = [p["kid"] for p in at if p["reached_frac"] >= 0.9]
    entry = point["levels"]["0.5"]["kid"]
    assert entry["seeds_reached"] == len(reached)
    if reached:
        close(entry, float(np.mean(reached)))
    assert results["curves"]["best-of-n"]["equal_proxy"]["how"] == "interpolated"
    # the controls: ascent minus matched noise at the same step, paired by seed, last level
    knob = ascent[0]["spec"]["knob"]
    last = ascent[0]["curve"]["rows"][-1][knob]
    diff = [a["curve"]["rows"][-1]["kid"] - n["curve"]["rows"][-1]["kid"] for a, n in zip(ascent, noise)]
    from optbench.report.results import level_key
    control = results["controls"]["ascent"]["noise"]
    assert control["kind"] == "matched noise"
    close(control["metrics"]["kid"][level_key(last)]["same_step"], *t_interval(diff))


def test_fits_and_audit_are_the_tables_that_summary_and_audit_md_show(suite):
    folder, results, _ = suite
    fit = results["curves"]["ascent"]["fit"]
    assert fit["law"] == "rl_kl" and fit["converged"] and fit["distance"] == "l2"
    # the fit again with scipy, from the cells: judge(d) - judge(d0) = d (a - b log d), seeds pooled
    from scipy.optimize import curve_fit
    d, g = [], []
    for c in cells_of(folder, "ascent"):
        rows = c["curve"]["rows"]
        for r in rows:
            if r["l2"] > 0 and math.isfinite(r["judge_prob"]):
                d.append(r["l2"])
                g.append(r["judge_prob"] - rows[0]["judge_prob"])
    (a, b), _ = curve_fit(lambda x, a, b: x * (a - b * np.log(x)), np.array(d), np.array(g), p0=(1.0, 0.1))
    assert fit["a"]["value"] == pytest.approx(a, rel=1e-6) and fit["b"]["value"] == pytest.approx(b, rel=1e-6)
    assert results["curves"]["best-of-n"]["fit"]["law"] == "best_of_n"
    audit = json.loads((folder / "audit.json").read_text())
    assert audit["schema"] == "optbench.audit/1"
    row = next(r for r in audit["domains"]["gmm2"] if r["metric"] == "kid")
    cited = results["audit"]["gmm2"]["kid"]
    assert cited["distribution"]["truth"] == "gold_ks"
    assert cited["distribution"]["departed_levels"] == row["departed_distribution"]
    if math.isfinite(row["rho_distribution"]):
        assert cited["distribution"]["rho"]["mean"] == row["rho_distribution"]
    # summary.md shows the numbers results.json holds: KID at max of each curve
    md = (folder / "summary.md").read_text()
    for label, curve in results["curves"].items():
        line = next(x for x in md.splitlines() if x.startswith(f"| {label} | "))
        assert f"{curve['at_max']['kid']['mean']:.3g}" in line


def test_detector_gradings_are_keyed_by_domain_source_and_detector(suite):
    """The detectors' table (detectors.grade) re-keyed; the cells here record no
    detectors, so a graded row is made from two synthetic cells."""
    _, results, _ = suite
    from optbench.report.detectors import ORDERS, grade
    from optbench.report.results import clean, detectors_entry
    cells = []
    for seed in (0, 1):
        rows = [{"steps": i, "proxy_prob": 0.2 * i, "det_x": d, "gold_ks": t, "gold_prob": g}
                for i, (d, t, g) in enumerate(zip([0.0, 0.0, 0.3, 0.5], [0.0, 0.0, 0.4, 0.6], [0.5, 0.6, 0.4, 0.1]))]
        cells.append({"spec": {"knob": "steps", "seed": seed, "domain": "gmm2", "source": "pixel_ascent",
                               "n_samples": 100, "label": "x"},
                      "curve": {"rows": rows, "null": {"gold_ks": {"q01": 0.0, "q99": 0.15}}}})
    graded = grade(cells)
    entry = clean(detectors_entry(graded))
    x = next(r for r in graded if r["score"] == "x")
    assert entry["gmm2"]["pixel_ascent"]["x"]["lead"] == {k: x[k] for k in ORDERS}
    assert entry["gmm2"]["pixel_ascent"]["x"]["regret"]["mean"] == x["regret"][0]
    assert entry["gmm2"]["pixel_ascent"]["proxy_prob"]["kind"] == "baseline"
    assert entry["gmm2"]["pixel_ascent"]["x"]["auroc"]["within"]["mean"] is None   # no per-sample values kept
    jsonschema.validate({**results, "detectors": entry}, schema())


def test_clean_writes_strict_json():
    from optbench.report.results import clean
    assert clean({"a": (math.nan, math.inf, -math.inf, np.float32(0.5), np.int64(3))}) == \
        {"a": [None, "inf", "-inf", 0.5, 3]}


def test_every_json_file_the_run_writes_names_its_schema(suite):
    folder, _, start = suite
    from optbench.cache import cache_root
    written = [p for p in folder.rglob("*.json")]
    cache = cache_root()   # nulls and exact-referee entries computed for the run
    written += [p for p in cache.rglob("*.json") if p.stat().st_mtime >= start]
    names = {p.name for p in written}
    assert {"results.json", "summary.json", "audit.json", "suite.json", "spec.json", "curve.json",
            "meta.json"} <= names
    missing = [str(p) for p in written if "schema" not in json.loads(p.read_text())]
    assert not missing, missing
    assert json.loads((folder / "summary.json").read_text())["schema"] == "optbench.summary/1"


def test_readers_take_the_older_bare_lists():
    from optbench.report.audit import audit_rows
    from optbench.report.detectors import grading_rows
    from optbench.report.summary import summary_rows
    assert summary_rows([{"label": "a"}]) == [{"label": "a"}]
    assert summary_rows({"schema": "optbench.summary/1", "rows": [{"label": "a"}]}) == [{"label": "a"}]
    assert grading_rows([{"detector": "x"}]) == grading_rows({"schema": "s", "rows": [{"detector": "x"}]})
    assert audit_rows({"gmm2": []}) == audit_rows({"schema": "s", "domains": {"gmm2": []}}) == {"gmm2": []}


def test_version_is_one_number(capsys):
    import tomllib

    import optbench
    from optbench.cli import main
    assert optbench.__version__ == "0.3.0"
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "optbench.__version__"}
    assert "schemas/*.json" in project["tool"]["setuptools"]["package-data"]["optbench"]
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == "optbench 0.3.0"
    citation = (root / "CITATION.cff").read_text()
    assert 'version: "0.3.0"' in citation or "version: 0.3.0" in citation


def test_replotting_keeps_figures_it_does_not_draw(suite, tmp_path):
    """A figure a benchmark script wrote into plots/ (or a GAN sheet an older folder holds)
    survives `optbench plot`; a grid of a curve the suite no longer has does not."""
    import shutil
    from optbench.report import write_suite_outputs
    folder = tmp_path / "cite"
    shutil.copytree(suite[0], folder)
    drawn = {f.name for f in (folder / "plots").iterdir()}
    (folder / "plots" / "top_of_million_gmm2.png").write_bytes(b"\x89PNG not redrawn")
    (folder / "plots" / "grid_a_curve_no_longer_here.png").write_bytes(b"\x89PNG stale")
    write_suite_outputs(folder)
    after = {f.name for f in (folder / "plots").iterdir()}
    assert after == drawn | {"top_of_million_gmm2.png"}
    assert (folder / "plots" / "top_of_million_gmm2.png").read_bytes() == b"\x89PNG not redrawn"
