"""A first-class metric and a detector, each one file outside the package, get what a
built-in gets: a null, a departure side, exact weighting under best-of-n, NaN where a
selection level's set is invalid, a place in the curves, the summaries, the figures, the
audit against the gold and the detector grading; and adding them to a suite that already
ran recomputes its cells instead of skipping them."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.stats import binom

from optbench.metrics import METRICS

PLUGIN = textwrap.dedent('''
    """A user's metrics: one referee and one detector."""
    from optbench.metrics import METRICS, Metric


    def _norm(b):
        return b.x.flatten(1).norm(dim=1)


    def _judge_copy(b):   # the judges' target probability again, from the batch alone
        return b.judge_probs.gather(1, b.scored_target[:, None]).squeeze(1)


    def _alarm(b):        # reads only the proxy's side: a very confident proxy
        return (b.proxy_logits.softmax(1).amax(1) > 0.999).double()


    METRICS.register("plug_norm", Metric(
        "plug_norm", "L2 norm of each output", panel="output norm (plug-in)", kind="sample",
        departs="high", null="pool", role="referee", headline=5, at_max=True, compute=_norm,
        domains=("gmm2",)))
    METRICS.register("plug_judge", Metric(
        "plug_judge", "the judges' target probability, recomputed by a plug-in", kind="sample",
        compute=_judge_copy, domains=("gmm2",)))
    METRICS.register("plug_spread", Metric(
        "plug_spread", "std of the outputs' coordinates (a set statistic)", kind="set",
        compute=lambda b: float(b.x.std()), domains=("gmm2",)))
    METRICS.register("plug_feature_norm", Metric(
        "plug_feature_norm", "mean feature norm, in every feature space", kind="set", every_space=True,
        departs="high", null="pool", role="referee",
        compute=lambda b, space: float(b.features[space].norm(dim=1).mean()), domains=("gmm2",)))
    METRICS.register("plug_alarm", Metric(
        "plug_alarm", "share of outputs the proxy is over 99.9% sure of", kind="sample",
        departs="high", null="binomial", null_rate=0.01, role="detector", compute=_alarm,
        domains=("gmm2",)))
''')
NAMES = ("plug_norm", "plug_judge", "plug_spread", "plug_feature_norm", "plug_alarm")

SUITE = '''
name = "plug"
seeds = [0, 1]
{header}
[[cell]]
label = "ascent"
domain = "gmm2"
source = "pixel_ascent"
n_samples = 32
settings = {{ start = "real", lr = 0.05, max_steps = 64 }}

[[cell]]
label = "best-of-n"
domain = "gmm2"
source = "best_of_n"
n_samples = 32
settings = {{ pool_size = 256 }}
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The suite without the plug-in, then the same suite with it, in one folder."""
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    root = tmp_path_factory.mktemp("plug")
    (root / "usermetrics.py").write_text(PLUGIN)
    out = root / "results"
    before = parse_suite(SUITE.format(header=""))
    first = run_suite(before, out, log=lambda *_: None)
    after = parse_suite(SUITE.format(header=f'pythonpath = ["{root}"]\nplugins = ["usermetrics"]'))
    try:
        second = run_suite(after, out, log=lambda *_: None)
        from optbench.report import write_suite_outputs
        write_suite_outputs(out / "plug")
        yield before, after, first, second, out / "plug"
    finally:
        for name in NAMES:
            METRICS.unregister(name)
        sys.modules.pop("usermetrics", None)


def _curve(folder, spec) -> dict:
    return json.loads((folder / spec.cell_id / "curve.json").read_text())


def test_adding_a_metric_recomputes_the_cells_it_applies_to(runs):
    before, after, first, second, _ = runs
    assert first["computed"] == len(before.cells) == 4
    assert second["computed"] == 4 and second["skipped"] == 0, second
    assert {c.cell_id for c in before.cells}.isdisjoint(c.cell_id for c in after.cells)
    assert after.cells[0].versions()["metrics"] == {name: 1 for name in NAMES}
    assert "metrics" not in before.cells[0].versions()


def test_the_plugin_metrics_are_in_the_curves_with_their_nulls(runs):
    _, after, _, _, folder = runs
    curve = _curve(folder, after.cells[0])
    assert set(NAMES) <= set(curve["rows"][0]) and set(NAMES) <= set(curve["baseline"])
    n = 32
    # The binomial null of a flagged share, against scipy.
    assert curve["null"]["plug_alarm"]["q99"] == binom.ppf(0.99, n, 0.01) / n
    # The resampled null of plug_norm, recomputed independently: the same draws from the
    # null pool (the generator seeded [0, j]), each set's mean norm.
    from optbench.domains import get_domain
    from optbench.referees.null import NULL_SPLITS, null_draws
    dom = get_domain("gmm2")
    pool = torch.cat([dom.load_split(s)[0] for s in NULL_SPLITS])
    norms = pool.flatten(1).norm(dim=1).double().numpy()
    means = [norms[np.random.default_rng([0, j]).choice(len(pool), n, replace=False)].mean()
             for j in range(null_draws())]
    assert curve["null"]["plug_norm"]["q99"] == pytest.approx(np.quantile(means, 0.99), rel=1e-12)
    assert curve["null"]["plug_norm"]["draws"] == null_draws()
    # A plug-in computed in every feature space gets a resampled null in each, and the
    # built-in metrics' nulls are what they are without plug-ins.
    from optbench.domains import get_domain as _dom
    spaces = _dom("gmm2").feature_spaces
    keys = ["plug_feature_norm", *(f"plug_feature_norm@{s}" for s in spaces[1:])]
    assert all(k in curve["rows"][0] and curve["null"][k]["q99"] > curve["null"][k]["q01"] for k in keys)
    before = _curve(folder, runs[0].cells[0])["null"]
    assert {k: v for k, v in curve["null"].items() if k in before} == before
    # On the real baseline the metric is the mean norm of those real examples.
    from optbench.pressure.starts import real_sample
    x, _ = real_sample("gmm2", n, 0)
    assert curve["baseline"]["plug_norm"] == pytest.approx(float(x.flatten(1).norm(dim=1).double().mean()), rel=1e-12)


def test_selection_weights_a_plugin_per_sample_metric_exactly(runs):
    """plug_judge recomputes judge_prob per sample: under best-of-n both are the exact
    weighted means over the pool, so they agree at every level, where the selected set's
    plain mean would not; the set statistic is NaN where the level's set is invalid."""
    _, after, _, _, folder = runs
    rows = _curve(folder, after.cells[2])["rows"]
    judge = np.array([r["judge_prob"] for r in rows])
    copy = np.array([r["plug_judge"] for r in rows])
    assert np.allclose(copy, judge, rtol=0, atol=1e-12, equal_nan=True)
    assert all(np.isnan(r["plug_spread"]) == np.isnan(r["kid"]) for r in rows)
    assert any(np.isnan(r["kid"]) for r in rows)   # the pool of 256 runs short at high n


def test_the_report_reads_the_plugins_like_built_ins(runs):
    _, _, _, _, folder = runs
    summary = json.loads((folder / "summary.json").read_text())
    rows = summary["rows"] if isinstance(summary, dict) else summary
    ascent = next(r for r in rows if r["label"] == "ascent")
    assert "plug_norm_cross_at" in ascent and "plug_norm_at_max" in ascent
    md = (folder / "summary.md").read_text()
    assert "plug_norm" in md and "plug_alarm" in md
    from optbench.report.plots import curve_panels, equal_proxy_panels
    assert "plug_norm" in [m for m, _, _ in curve_panels()]
    assert "plug_norm" not in [m for m, _, _ in equal_proxy_panels()]   # the first three headline metrics
    audit = (folder / "audit.md").read_text()
    assert "plug_norm" in audit
    graded = json.loads((folder / "detectors.json").read_text())
    graded = graded["rows"] if isinstance(graded, dict) else graded
    assert {r["score"] for r in graded if r["kind"] == "detector"} == {"plug_alarm"}
    assert {r["source"] for r in graded} == {"pixel_ascent", "best_of_n"}
