"""Detectors checked on cases with a known answer (issue 16): Mahalanobis against scipy's
closed form on Gaussian features, energy against scipy's logsumexp, ensemble
disagreement zero for identical members, the input-gradient norm against a linear
model's analytic gradient."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis
from scipy.special import logsumexp

from optbench.detectors import ClassGaussians, disagreement, energy, grad_norm, max_logit


def test_mahalanobis_matches_scipy_on_gaussian_features():
    rng = np.random.default_rng(0)
    d, n = 5, 4000
    a = rng.standard_normal((d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    means = rng.standard_normal((3, d)) * 3
    labels = np.repeat(np.arange(3), n)
    feats = means[labels] + rng.multivariate_normal(np.zeros(d), cov, 3 * n)
    g = ClassGaussians(torch.from_numpy(feats), torch.from_numpy(labels), ridge=0.0)
    # The fitted shared covariance is the pooled within-class one; compare with scipy's
    # distance under that covariance, and the fit with the true one (4,000 per class).
    pooled = sum(np.cov(feats[labels == c].T, bias=True) * n for c in range(3)) / (3 * n)
    assert np.allclose(torch.linalg.inv(g.precision).numpy(), pooled, atol=1e-9)
    assert np.abs(pooled - cov).max() < 0.25 * np.abs(cov).max()
    x = rng.standard_normal((20, d)) * 4
    want = np.array([[mahalanobis(xi, means_c, np.linalg.inv(pooled)) ** 2 for means_c in g.means.numpy()]
                     for xi in x])
    assert np.allclose(g.distances(torch.from_numpy(x)).numpy(), want, rtol=1e-9)
    assert np.allclose(g.score(torch.from_numpy(x)).numpy(), want.min(1), rtol=1e-9)
    # With the pooled maximum-likelihood covariance, the mean squared distance of the
    # training points to their own class mean is exactly trace(I) = d: a check of the
    # centring and the covariance's normalization together.
    own = g.distances(torch.from_numpy(feats)).numpy()[np.arange(3 * n), labels]
    assert own.mean() == pytest.approx(d, rel=1e-9)


def test_energy_and_max_logit():
    logits = torch.randn(50, 10) * 5
    assert np.allclose(energy(logits).numpy(), -logsumexp(logits.double().numpy(), axis=1), rtol=1e-12)
    assert np.array_equal(max_logit(logits).numpy(), -np.max(logits.double().numpy(), axis=1))
    # A uniform shift of every logit shifts the energy, not the class probabilities.
    assert torch.allclose(energy(logits + 3.0), energy(logits) - 3.0)


def test_disagreement_is_zero_for_identical_members_and_the_std_otherwise():
    logits = torch.randn(30, 10)
    target = torch.randint(0, 10, (30,))
    assert torch.equal(disagreement([logits] * 4, target), torch.zeros(30, dtype=torch.float64))
    other = logits.clone()
    other[:, :] += torch.randn(30, 10)
    lp = torch.stack([m.double().log_softmax(1)[torch.arange(30), target] for m in (logits, other)])
    assert torch.allclose(disagreement([logits, other], target), (lp[0] - lp[1]).abs() / 2)


def test_grad_norm_of_a_linear_softmax_is_analytic():
    """For logits W x, d log p_t / dx = W_t - sum_c p_c W_c; a batch-norm model in training
    mode gives each sample the value it has alone (it runs in eval mode)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4, bias=False).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    t = torch.randint(0, 4, (8,))
    p = (x @ lin.weight.T).softmax(1)
    want = (lin.weight[t] - p @ lin.weight).norm(dim=1)
    assert torch.allclose(grad_norm(lin, x, t), want.detach(), rtol=1e-12)

    bn = torch.nn.Sequential(torch.nn.BatchNorm1d(6), lin).double().train()
    bn[0].running_mean.fill_(0.3)
    alone = torch.cat([grad_norm(bn, x[i:i + 1], t[i:i + 1]) for i in range(8)])
    assert torch.allclose(grad_norm(bn, x, t), alone, rtol=1e-12) and bn.training


def test_the_flow_density_integrates_to_one_on_the_box_in_two_dimensions():
    """The flow's log_prob includes the box-to-logit map's Jacobian, so exp(log_prob)
    is a density on the box: a 601 x 601 midpoint sum over the box gives 1."""
    from optbench.density import FlowDensity
    torch.manual_seed(0)
    x = (torch.randn(600, 2) * torch.tensor([0.2, 0.4]) + torch.tensor([0.3, -0.1])).clamp(-0.99, 0.99)
    model = FlowDensity(2, (-1.0, 1.0), transforms=2, hidden_features=(16, 16))
    best = model.fit(x, steps=300, seed=0)
    assert best["step"] > 0   # it trained, and the weights kept are the best validated ones
    h = 2 / 601
    g = torch.linspace(-1 + h / 2, 1 - h / 2, 601)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        total = float(model.log_prob(grid).double().exp().sum() * h * h)
        inside, outside = model.log_prob(torch.tensor([[0.3, -0.1]])), model.log_prob(torch.tensor([[-0.9, 0.9]]))
    assert abs(total - 1) < 0.01, total
    assert float(inside) > float(outside) + 3   # the fit puts its mass where the data are


def test_detectors_flag_one_percent_of_held_out_real_data_and_more_of_uniform_noise():
    """Calibrated on the generator_train split, each detector flags about 1% of held-out
    real data (the reference split, 2,000 points: the beta-binomial law of a threshold
    calibrated on m examples, its 99.9% range), and the detectors that
    model the data (Mahalanobis, ensemble, density) flag uniform noise in the box far more
    often; the logit detectors and the top-class gradient barely do (noise far from the
    data is where a ReLU proxy is most confident and flattest)."""
    from scipy.stats import betabinom

    from optbench.detectors import ProxySide, calibration_size
    from optbench.domains import get_domain
    from optbench.metrics import threshold_rank
    from optbench.referees import load_proxy
    dom = get_domain("gmm2")
    side = ProxySide("gmm2", load_proxy("gmm2", "proxy_mlp"), "proxy_mlp")
    assert len(side.members) == 3 and side.gaussians is not None
    x, y = dom.load_split("reference")
    real = side.flagged(side.scores(x))
    m = calibration_size("gmm2")
    k = threshold_rank(m, 0.01)
    lo, hi = betabinom.ppf([0.0005, 0.9995], len(x), m + 1 - k, k) / len(x)
    assert all(lo <= v <= hi for v in real.values()), real
    noise = (torch.rand(2000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    flagged = side.flagged(side.scores(noise))
    for name in ("mahalanobis", "disagreement", "typicality"):
        assert flagged[name] > 0.2, flagged
    assert max(flagged["energy"], flagged["max_logit"], flagged["grad_norm"]) < 0.2, flagged


def test_detector_metrics_join_a_cell_and_the_grading_reads_them(tmp_path):
    """Registered by importing the plug-in module; a gmm2 pixel-ascent cell then records
    det_<name> at every level, about 1% on its real baseline."""
    import importlib
    import json

    from optbench.report import write_suite_outputs
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    dm = importlib.import_module("optbench.detector_metrics")
    try:
        suite = parse_suite("""
name = "det"
seeds = [0, 1]
plugins = ["optbench.detector_metrics"]
per_sample = true
[[cell]]
domain = "gmm2"
proxy_training = "per_seed"
source = "pixel_ascent"
n_samples = 64
settings = { start = "real", lr = 0.05, max_steps = 64 }
""")
        assert run_suite(suite, tmp_path, log=lambda *_: None)["computed"] == 2
        curve = json.loads((tmp_path / "det" / suite.cells[0].cell_id / "curve.json").read_text())
        rows = curve["rows"]
        assert {f"det_{d}" for d in dm.DETECTORS} <= set(rows[0]) and "det_typicality_score" in rows[0]
        assert all(curve["baseline"][f"det_{d}"] <= 0.1 for d in dm.DETECTORS)
        assert rows[-1]["det_grad_norm_score"] != rows[0]["det_grad_norm_score"]
        write_suite_outputs(tmp_path / "det")
        graded = json.loads((tmp_path / "det" / "detectors.json").read_text())["rows"]
        assert {r["score"] for r in graded if r["kind"] == "detector"} == set(dm.DETECTORS)
        assert {r["score"] for r in graded if r["kind"] == "baseline"} == {"pressure", "proxy_logit", "proxy_prob", "l2"}
        assert all(r["cells"] == 2 and r["per_sample_cells"] == 2 and r["departure_truth"] == "gold_ks"
                   for r in graded)
        # The pooled per-sample AUROC of one detector, recomputed from samples.safetensors
        # with sklearn, seed by seed.
        from safetensors.numpy import load_file
        from sklearn.metrics import roc_auc_score
        per_seed = []
        for spec in suite.cells:
            smp = load_file(str(tmp_path / "det" / spec.cell_id / "samples.safetensors"))
            assert smp["det_energy_score"].shape == (len(rows), 64) and smp["real:det_energy"].shape == (64,)
            per_seed.append(roc_auc_score(smp["gold_atypical"].ravel().astype(int),
                                          smp["det_energy_score"].astype(np.float64).ravel()))
        energy_row = next(r for r in graded if r["score"] == "energy")
        assert energy_row["auroc_pooled"][0] == pytest.approx(np.mean(per_seed), rel=1e-6)
        # The pressure level cannot rank outputs of one level: 0.5 exactly where defined.
        pressure = next(r for r in graded if r["score"] == "pressure")
        assert pressure["auroc_within"][0] == 0.5 or math.isnan(pressure["auroc_within"][0])
        assert (tmp_path / "det" / "plots" / "detectors.png").stat().st_size > 10_000
    finally:
        dm.unregister()


def _cell(seed: int, det: list[float], truth: list[float], gold: list[float], n: int = 100) -> dict:
    rows = [{"steps": i, "proxy_prob": 0.1 * i, "det_x": d, "gold_ks": t, "gold_prob": g}
            for i, (d, t, g) in enumerate(zip(det, truth, gold))]
    return {"spec": {"domain": "toy", "source": "s", "seed": seed, "knob": "steps", "n_samples": n},
            "curve": {"rows": rows, "null": {"gold_ks": {"q99": 0.5, "q01": 0.0}}}}


def test_grading_against_a_known_answer():
    """Gold departs at level 2 (gold_ks > 0.5); the detector fires from level 1 (a share
    above Binomial(100, 0.01)'s q99 = 4/100). The stop is at level 1, where the gold
    score is 0.8; its best is 0.9 at level 2: regret 0.1; never stopping ends at 0.2:
    regret 0.7. Stopping where the proxy's mean probability first reaches 0.3 stops at
    level 3 (0.1 per level): regret 0.5, after the truth departed."""
    from optbench.report.detectors import fire_threshold, grade, lead, proxy_stop, stop
    assert fire_threshold(100) == 0.04
    c = _cell(0, [0.0, 0.2, 0.3, 0.9, 1.0], [0.1, 0.2, 0.6, 0.8, 0.9], [0.5, 0.8, 0.9, 0.4, 0.2])
    c["curve"]["rows"][1]["gold_ks"] = 0.3
    assert lead(c, "x") == "earlier"
    s = stop(c, "x")
    assert (s["index"], s["fired"], s["departed_at_stop"]) == (1, True, False)
    assert s["regret"] == pytest.approx(0.1) and s["regret_never_stop"] == pytest.approx(0.7)
    assert proxy_stop(c, 0.3) == {"regret": pytest.approx(0.5), "departed_at_stop": True}
    late = _cell(1, [0.0, 0.01, 0.02, 0.03, 0.5], [0.1, 0.2, 0.6, 0.8, 0.9], [0.5, 0.8, 0.9, 0.4, 0.2])
    assert lead(late, "x") == "later" and stop(late, "x")["index"] == 4
    row = next(r for r in grade([c, late]) if r["score"] == "x")
    assert (row["earlier"], row["later"], row["fired"], row["per_sample_cells"]) == (1, 1, 2, 0)


def test_per_sample_aurocs_match_sklearn_and_margins_are_paired_by_seed(monkeypatch):
    """Within a level, pooled and against real data, each AUROC is sklearn's on the same
    samples; the pressure level scores 0.5 within a level; a trivial score that ranks the
    wrong way round is read reversed; the margin is the detector minus the best trivial
    score, seed by seed."""
    from sklearn.metrics import roc_auc_score

    import optbench.report.detectors as d
    rng = np.random.default_rng(0)
    cells = []
    for seed in (0, 1):
        n, levels = 40, 3
        truth = (rng.random((levels, n)) < np.array([[0.2], [0.5], [0.8]])).astype(float)
        samples = {"gold_atypical": truth, "det_x_score": truth * 2 + rng.normal(size=(levels, n)),
                   "proxy_logit": -truth + rng.normal(size=(levels, n)) * 3,   # reversed and weak
                   "proxy_prob": rng.random((levels, n)), "l2": rng.random((levels, n)),
                   "real:det_x_score": rng.normal(size=n), "real:proxy_logit": rng.normal(size=n),
                   "real:proxy_prob": rng.random(n)}
        c = _cell(seed, [0.0, 0.5, 0.9], [0.1, 0.9, 0.9], [0.5, 0.4, 0.3], n)
        cells.append((c, samples))
        got = d.cell_aurocs(c, samples, "x")
        assert got["within"] == pytest.approx(np.mean([roc_auc_score(truth[i], samples["det_x_score"][i])
                                                       for i in range(levels)]))
        assert got["pooled"] == pytest.approx(roc_auc_score(truth.ravel(), samples["det_x_score"].ravel()))
        at = 1   # gold_ks departs at level 1
        assert got["real"] == pytest.approx(roc_auc_score(np.r_[np.ones(n), np.zeros(n)],
                                                          np.r_[samples["det_x_score"][at], samples["real:det_x_score"]]))
        assert d.cell_aurocs(c, samples, "pressure")["within"] == 0.5
    monkeypatch.setattr(d, "_samples", lambda cell, memo: next(s for c, s in cells if c is cell))
    rows = {r["score"]: r for r in d.grade([c for c, _ in cells])}
    within = {b: [d.cell_aurocs(c, s, b)["within"] for c, s in cells] for b in ("x", "proxy_logit", "proxy_prob", "l2")}
    within["proxy_logit"] = [1 - v for v in within["proxy_logit"]]   # read reversed
    assert rows["proxy_logit"]["auroc_within"][0] == pytest.approx(np.mean(within["proxy_logit"]))
    best = max(("proxy_logit", "proxy_prob", "l2"), key=lambda b: np.mean(within[b]))
    assert max(np.mean(within[best]), 0.5) == pytest.approx(max(rows[b]["auroc_within"][0] for b in d.BASELINES))
    if np.mean(within[best]) > 0.5:
        assert rows["x"]["best_baseline_within"] == best
        diff = np.subtract(within["x"], within[best])
        assert rows["x"]["margin_within"][0] == pytest.approx(np.mean(diff))

