"""The ground-truth domains inside the benchmark: the referee reports the exact metrics
and their exact nulls, guidance runs on the analytic diffusion model, and the audit's
numbers are what scipy computes from the same curves."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, spearmanr

from optbench.domains import get_domain
from optbench.report.audit import TRUTHS, audit_domain, fire_order, misses


@pytest.fixture(scope="module")
def referee():
    from optbench.referees import Referee
    return Referee("gmm2", "proxy_mlp")


def test_referee_reports_exact_metrics_that_move_off_the_data(referee):
    dom = get_domain("gmm2")
    x, y = dom.load_split("test")
    n = 32   # the end-to-end suite below uses the same n, so the learned null is computed once
    x, y = x[:n], y[:n]
    on = referee.evaluate(x, y, x)
    # The same points pushed 0.3 along a fixed direction: far outside every thin component.
    off = referee.evaluate(x + 0.3 * torch.tensor([0.6, 0.8]), y, x)
    null = referee.null(n)
    assert on["gold_atypical"] <= null["gold_atypical"]["q99"] < off["gold_atypical"]
    assert off["gold_logp_q"] < null["gold_logp_q"]["q01"] <= on["gold_logp_q"]
    # The exact null of the atypical share is Binomial(n, 0.01) / n.
    assert abs(null["gold_atypical"]["q99"] - binom.ppf(0.99, n, 0.01) / n) <= 1 / n
    # gold_prob is the Bayes posterior of the target, from the mixture itself.
    post = dom.mixture.class_posterior(x)
    assert on["gold_prob"] == pytest.approx(float(post[torch.arange(n), y].mean()), rel=1e-9)


def test_exact_diffusion_at_w1_samples_the_data_and_guidance_leaves_it():
    """DDIM on the analytic score (1,000 steps) draws from the mixture: its typicality is
    within the exact null at n = 128. A strong CFG scale pushes samples off it."""
    from optbench.models.checkpoints import load_model
    from optbench.pressure.guidance import GUIDANCE_SOURCE, guided_samples, initial_noise
    dom = get_domain("gmm2")
    unet = load_model("gmm2", "diffusion_exact")
    labels = torch.arange(128) % 4
    s = GUIDANCE_SOURCE.defaults(scales=[1.0, 30.0], ddim_steps=1000)
    out = {lv.knob: lv.x for lv in guided_samples(unet, labels, initial_noise(128, 0, dom.shape), s,
                                                  bounds=dom.bounds)}
    gold = dom.gold()
    null = gold.null(128, draws=300)
    w1 = {k: float(v.mean()) for k, v in gold.per_sample(out[1.0], labels).items()}
    w30 = {k: float(v.mean()) for k, v in gold.per_sample(out[30.0], labels).items()}
    assert w1["gold_atypical"] <= null["gold_atypical"]["q99"]
    assert gold.set_metrics(out[1.0])["gold_ks"] <= null["gold_ks"]["q99"]
    assert w1["gold_prob"] > 0.95                       # conditional samples are of their class
    assert w30["gold_atypical"] > null["gold_atypical"]["q99"]


def _cell(seed: int, rows: list[dict], label: str = "c") -> dict:
    null = {"gold_atypical": {"q01": 0.0, "q99": 0.03}, "gold_ks": {"q01": 0.0, "q99": 0.15},
            "kid": {"q01": -0.01, "q99": 0.02}, "precision": {"q01": 0.8, "q99": 1.0}}
    return {"spec": {"seed": seed, "knob": "steps", "label": label, "cell_id": f"{label}{seed}"},
            "curve": {"rows": [{"steps": i, **r} for i, r in enumerate(rows)], "null": null}}


def test_audit_numbers_are_scipy_spearman_and_hand_counts():
    rng = np.random.default_rng(0)
    cells = []
    for seed in range(3):
        for label in ("a", "b"):
            truth = np.sort(rng.uniform(0, 0.3, 6))
            rows = [{"gold_atypical": float(t), "gold_ks": float(t) / 2, "kid": float(rng.normal(t, 0.05)),
                     "precision": float(1 - t + rng.normal(0, 0.05))} for t in truth]
            cells.append(_cell(seed, rows, label))
    out = {r["metric"]: r for r in audit_domain(cells)}
    assert set(out) == {"kid", "precision"}
    for metric, sign in (("kid", 1), ("precision", -1)):
        per_seed = []
        for seed in range(3):
            pts = [(r["gold_atypical"], sign * r[metric]) for c in cells if c["spec"]["seed"] == seed
                   for r in c["curve"]["rows"]]
            per_seed.append(spearmanr(*zip(*pts)).statistic)
        assert out[metric]["rho_support"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        # Misses by hand: the truth over its q99 while the metric is inside its null.
        thr = {"kid": lambda v: v > 0.02, "precision": lambda v: v < 0.8}[metric]
        rows = [r for c in cells for r in c["curve"]["rows"]]
        dep = [r for r in rows if r["gold_atypical"] > 0.03]
        assert out[metric]["departed_support"] == len(dep)
        assert out[metric]["miss_support"] == pytest.approx(sum(not thr(r[metric]) for r in dep) / len(dep))
        on = [r for r in rows if r["gold_atypical"] <= 0.03]
        assert out[metric]["false_alarm_support"] == pytest.approx(sum(thr(r[metric]) for r in on) / len(on))
    assert TRUTHS["distribution"] == "gold_ks"


def test_fire_order_cases():
    def cell(truth, kid):
        return _cell(0, [{"gold_atypical": t, "gold_ks": g, "kid": k} for t, g, k in
                         zip(truth, [t / 2 for t in truth], kid)])
    rising = [0.0, 0.0, 0.5, 0.6]   # gold_ks departs (> 0.15) from level 2 on
    assert fire_order(cell(rising, [0, 0.1, 0.2, 0.3]), "kid") == "earlier"
    assert fire_order(cell(rising, [0, 0, 0.2, 0.3]), "kid") == "same"
    assert fire_order(cell(rising, [0, 0, 0, 0.3]), "kid") == "later"
    assert fire_order(cell(rising, [0, 0, 0, 0]), "kid") == "never"
    assert fire_order(cell([0.0] * 4, [0, 0, 0.2, 0.3]), "kid") == "alone"
    assert fire_order(cell([0.0] * 4, [0] * 4), "kid") == "neither"
    # A miss: the truth departed at level 3 while KID stayed inside its null.
    found = misses([cell(rising, [0, 0, 0.5, 0.0])], "kid")
    assert [(i, r["steps"]) for _, i, r in found] == [(3, 3)]


SUITE = """
name = "gold_e2e"
seeds = [0]

[[cell]]
label = "pixel ascent"
domain = "gmm2"
proxy = "proxy_mlp"
source = "pixel_ascent"
n_samples = 32
settings = { start = "real", lr = 0.05, max_steps = 16 }

[[cell]]
label = "best-of-n, exact sampler"
domain = "gmm2"
proxy = "proxy_mlp"
source = "best_of_n"
n_samples = 32
settings = { generator = "sampler_exact", pool_size = 256 }
"""


def test_a_ground_truth_suite_reports_its_audit_and_picture(tmp_path):
    import json

    from PIL import Image

    from optbench.report import write_suite_outputs
    from optbench.report.summary import load_cells
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    counts = run_suite(parse_suite(SUITE), tmp_path, device="cpu", log=lambda *_: None)
    assert counts["computed"] == 2 and counts["failed"] == 0, counts
    folder = tmp_path / "gold_e2e"
    write_suite_outputs(folder)
    cells = load_cells(folder)
    audit = {r["metric"]: r for r in json.loads((folder / "audit.json").read_text())["domains"]["gmm2"]}
    spaces = get_domain("gmm2").feature_spaces
    assert len(audit) == 7 * len(spaces)
    # rho of KID in the coordinate space, recomputed from the stored curves with scipy.
    pts = [(r["gold_ks"], r["kid@coords"]) for c in cells for r in c["curve"]["rows"]
           if math.isfinite(r["kid@coords"]) and math.isfinite(r["gold_ks"])]
    assert audit["kid@coords"]["rho_distribution"] == pytest.approx(spearmanr(*zip(*pts)).statistic, abs=1e-12)
    # The exact metrics are stored at every level, with their exact nulls.
    for c in cells:
        assert {"gold_atypical", "gold_ks", "gold_prob"} <= set(c["curve"]["rows"][0])
        assert c["curve"]["null"]["gold_atypical"]["n"] == 32
    with Image.open(folder / "plots" / "picture_gmm2.png") as im:
        assert im.size[0] > 800 and im.size[1] > 300
    assert "audit.md" in (folder / "summary.md").read_text()


def test_with_the_exact_model_cfg_at_w_is_classifier_guidance_at_s_equal_w():
    """grad log p_t(x | y) - grad log p_t(x) = grad log p_t(y | x): with exact models,
    classifier-free guidance at scale w and classifier guidance (exact noisy posterior,
    unconditional base) at s = w take the same DDIM steps."""
    from optbench.models.checkpoints import load_model
    from optbench.pressure.guidance import GUIDANCE_SOURCE, guided_samples, initial_noise
    dom = get_domain("gmm2")
    unet, clf = load_model("gmm2", "diffusion_exact"), load_model("gmm2", "noisy_exact")
    labels = torch.arange(16) % 4
    x_T = initial_noise(16, 3, dom.shape)
    s = GUIDANCE_SOURCE.defaults(scales=[0.0, 3.0, 10.0], ddim_steps=20)
    cfg = {lv.knob: lv.x for lv in guided_samples(unet, labels, x_T, s, bounds=dom.bounds)}
    s |= {"guidance": "classifier", "base": "uncond"}
    cls = {lv.knob: lv.x for lv in guided_samples(unet, labels, x_T, s, clf, bounds=dom.bounds)}
    for w in cfg:
        assert torch.allclose(cfg[w], cls[w], atol=1e-4), w
    assert (cfg[10.0] - cfg[0.0]).abs().max() > 0.1     # and guidance does move the samples


def test_exact_null_is_cached_under_the_referees_identity(monkeypatch):
    """The gold null is computed once per identity (every cell of a suite needs it):
    a second call reads the disk, and a different mixture is a different entry."""
    from optbench.gold.gmm import MixtureReferee, random_mixture
    ref = get_domain("gmm2").gold()
    first = ref.null(16, draws=50, seed=5)

    def boom(*a, **k):
        raise AssertionError("recomputed a cached null")
    monkeypatch.setattr(ref, "draw_null", boom)
    assert ref.null(16, draws=50, seed=5) == first
    other = MixtureReferee(random_mixture(2, 4, 2, 1, seed=9, mean_scale=0.6, spread=(0.05, 0.2), floor=0.02))
    assert other.identity() != ref.identity()
    assert other.null(16, draws=50, seed=5)["gold_maha"] != first["gold_maha"]


@pytest.mark.parametrize("domain", ["gmm2", "gmm64"])
def test_learned_noisy_classifier_matches_the_exact_noisy_posterior(domain):
    """The shipped noise-aware MLP (classifier guidance's learned proxy) against the
    exact p_t(y | x_t) on the test split: mean KL below 0.05 nats at every t, so where
    guidance by it departs differently from CFG, the difference is a small learned error
    amplified by the scale."""
    from optbench.models.checkpoints import load_model
    from optbench.models.diffusion import to_model_range
    from optbench.training.diffusion import build_train_scheduler
    dom = get_domain(domain)
    exact, learned = load_model(dom, "noisy_exact"), load_model(dom, "noisy_classifier")
    x, _ = dom.load_split("test")
    sched, gen = build_train_scheduler(), torch.Generator().manual_seed(0)
    for step in (0, 100, 250, 500, 750):
        t = torch.full((len(x),), step)
        xt = sched.add_noise(to_model_range(x, dom.bounds), torch.randn(x.shape, generator=gen), t)
        with torch.no_grad():
            p, q = exact(xt, t).log_softmax(1), learned(xt, t).log_softmax(1)
        kl = float((p.exp() * (p - q)).sum(1).mean())
        assert 0 <= kl < 0.05, (step, kl)


def test_family_tallies_split_controls_and_curves_off_at_start_with_exact_intervals():
    """Hand counts per family: a treated curve that starts on the data, the same source
    against an untrained proxy (a control), and a curve the truth calls off the data at
    its first level; Clopper-Pearson intervals are scipy's; the ranking leaves the last
    two out and ranks by the mean of miss and false-alarm rates."""
    from scipy.stats import binomtest

    from optbench.report.audit import family_tallies, ranking

    def cell(seed, proxy, ks, kid, label):
        c = _cell(seed, [{"gold_atypical": 0.0, "gold_ks": g, "kid": k, "precision": 0.9}
                         for g, k in zip(ks, kid)], label)
        c["spec"] |= {"source": "pixel_ascent", "proxy": proxy, "settings": {}, "domain": "gmm2"}
        return c
    treated = cell(0, "proxy_mlp", [0.0, 0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.05, 0.05], "t")
    control = cell(0, "proxy_mlp_untrained", [0.0, 0.0, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0, 0.05], "u")
    started = cell(1, "proxy_mlp", [0.2, 0.2, 0.3, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0, 0.05], "s")
    rows = {(r["metric"], r["family"], r["start"]): r for r in family_tallies([treated, control, started])}
    t = rows[("kid", "pixel_ascent", "on the data at start")]
    # treated: truth departed at levels 2, 3, 4 (gold_ks > 0.15); kid misses level 2 only;
    # seed 1 starts off the data (its own group): 5 departed levels, kid misses 4
    assert (t["misses"], t["departed"], t["false_alarms"], t["on_data"]) == (1, 3, 0, 2)
    u = rows[("kid", "pixel_ascent (control)", "on the data at start")]
    assert (u["misses"], u["departed"]) == (2, 3)
    s = rows[("kid", "pixel_ascent", "off at start")]
    assert (s["misses"], s["departed"]) == (4, 5)
    ci = binomtest(4, 5).proportion_ci(0.95, method="exact")
    assert s["miss_ci"] == pytest.approx((ci.low, ci.high))
    ranked = {r["metric"]: r for r in ranking(list(rows.values()))}
    assert ranked["kid"]["misses"] == 1 and ranked["kid"]["balanced_error"] == pytest.approx((1 / 3 + 0) / 2)
    # precision reads 0.9 everywhere: never below its q01 (0.8), so it misses all 3
    assert ranked["precision"]["balanced_error"] == pytest.approx(0.5) and ranked["kid"]["rank"] == 1
