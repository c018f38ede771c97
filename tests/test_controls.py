"""Controls (untrained proxy, matched noise), exact equal-proxy points and per-seed
proxy replicates."""
import math

import pytest
import torch

from optbench.models.checkpoints import load_model
from optbench.models.nets import build
from optbench.pressure import Context
from optbench.pressure.crossings import Crossings
from optbench.pressure.pixel_ascent import PIXEL_ASCENT, pixel_ascent
from optbench.pressure.starts import make_starts
from optbench.referees.classifiers import logits_of
from optbench.proxies import class_readout as target_readout


@pytest.fixture(scope="module")
def proxy():
    return load_model("mnist", "proxy_cnn")


def ascend(proxy, x0, target, levels, seed=0, crossings=None, **settings) -> dict:
    """{steps: outputs} of pixel ascent with PIXEL_ASCENT's settings changed by `settings`."""
    ctx = Context.of(proxy, "mnist", seed=seed, crossings=crossings)
    return {lv.knob: lv.x for lv in pixel_ascent(ctx, x0, target, levels, PIXEL_ASCENT.defaults(**settings))}


def test_equal_proxy_capture_matches_brute_force(proxy):
    """Each sample is captured at the first step where its own proxy probability reaches
    the threshold, found here by scoring every step of the same trajectory separately."""
    x0, target = make_starts("mnist", "real", 6, 3)
    steps = list(range(0, 25))
    crossings = Crossings(6, (0.5, 0.9, 0.99))
    traj = ascend(proxy, x0, target, steps, lr=0.05, crossings=crossings)
    probs = torch.stack([target_readout(logits_of(proxy, traj[k]), target)["prob"] for k in steps])  # (steps, n)
    for t in crossings.thresholds:
        for i in range(6):
            above = (probs[:, i] >= t).nonzero()
            first = int(above[0]) if len(above) else -1
            got = int(crossings.step[t][i])
            if first != got:   # only rounding right at the threshold may move it by a step
                assert abs(first - got) == 1 and abs(float(probs[max(first, got), i]) - t) < 1e-5
                continue
            if got >= 0:
                assert torch.equal(crossings.x[t][i], traj[got][i])
                assert float(crossings.prob[t][i]) == pytest.approx(float(probs[got, i]), abs=1e-5)
    assert crossings.reached(0.5).sum() >= 3   # the case is not vacuous


def test_random_sign_control_is_matched_noise_and_ignores_the_proxy(proxy):
    x0 = torch.full((5, 1, 28, 28), 0.5)
    target = torch.arange(5)
    untrained = load_model("mnist", "proxy_cnn_untrained")
    a = ascend(proxy, x0, target, [0, 1, 8], seed=4, lr=0.01, optimizer="random_sign")
    b = ascend(untrained, x0, target, [0, 1, 8], seed=4, lr=0.01, optimizer="random_sign")
    assert torch.equal(a[8], b[8])                                   # no proxy involved
    step = a[1] - x0
    assert torch.allclose(step.abs(), torch.full_like(step, 0.01))   # every pixel moves by lr
    assert abs(float(step.sign().mean())) < 0.05                     # random signs
    alone = ascend(proxy, x0[3:4], target[3:4], [0, 8], seed=4, lr=0.01, optimizer="random_sign")
    assert not torch.equal(alone[8][0], a[8][3])   # noise follows the row, so row 0 alone is sample 0
    first = ascend(proxy, x0[:1], target[:1], [0, 8], seed=4, lr=0.01, optimizer="random_sign")
    assert torch.equal(first[8][0], a[8][0])
    other = ascend(proxy, x0, target, [0, 8], seed=5, lr=0.01, optimizer="random_sign")
    assert not torch.equal(other[8], a[8])


def test_untrained_control_is_the_proxy_recipe_at_initialisation():
    from optbench.domains import get_domain
    mnist = get_domain("mnist")
    from optbench.models.recipes import recipes_for
    recipes = recipes_for(mnist)
    r = recipes["proxy_cnn_untrained"]
    assert (r.arch, r.arch_kwargs, r.seed, r.epochs) == ("SmallCNN", recipes["proxy_cnn"].arch_kwargs,
                                                         recipes["proxy_cnn"].seed, 0)
    torch.manual_seed(r.seed)
    fresh = build(r.arch, **r.arch_kwargs)
    shipped = load_model("mnist", "proxy_cnn_untrained")
    assert all(torch.equal(p, q) for p, q in zip(fresh.state_dict().values(), shipped.state_dict().values()))
    x, y = mnist.load_split("test")
    assert float((logits_of(shipped, x).argmax(1) == y).float().mean()) < 0.2   # chance is 0.1


def _cell(seed, rows, proxy="proxy_cnn", optimizer="adam"):
    return {"spec": {"domain": "mnist", "source": "pixel_ascent", "n_samples": 8, "proxy": proxy,
                     "seed": seed, "knob": "steps", "label": f"{proxy} {optimizer}",
                     "settings": {"start": "real", "lr": 0.01, "optimizer": optimizer}},
            "curve": {"rows": rows}}


def test_attributable_departure_against_an_independent_computation():
    import numpy as np
    from optbench.report.controls import attributable, control_pairs
    from scipy import stats
    steps = [0, 1, 2, 4]
    treated, noise = [], []
    for seed in range(4):
        treated.append(_cell(seed, [{"steps": k, "kid": 0.1 * k + 0.01 * seed, "l2": 0.5 * k} for k in steps]))
        noise.append(_cell(seed, [{"steps": k, "kid": 0.05 * k * (1 + 0.1 * seed), "l2": 0.3 * k} for k in steps],
                           optimizer="random_sign"))
    groups = {"t": treated, "n": noise}
    pairs = control_pairs(groups)
    assert [(kind, t[0]["spec"]["label"]) for kind, t, _ in pairs] == [("matched noise", "proxy_cnn adam")]
    rows = attributable(treated, noise, "kid")
    # Same step: paired differences, Student-t over 4 seeds.
    d = np.array([0.1 * 2 + 0.01 * s - 0.05 * 2 * (1 + 0.1 * s) for s in range(4)])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert rows[2]["same_step"] == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    # Same L2: treated at l2 = 1.0 (step 2); the noise reaches l2 1.0 at step 10/3 by linear interpolation.
    want = [0.1 * 2 + 0.01 * s - np.interp(1.0, [0, 0.3, 0.6, 1.2], [0.05 * k * (1 + 0.1 * s) for k in steps])
            for s in range(4)]
    assert rows[2]["same_l2"][0] == pytest.approx(np.mean(want))
    assert math.isnan(rows[3]["same_l2"][0])   # l2 = 2.0 lies beyond the noise curve's reach


def test_per_seed_replicates_are_cached_and_checked(tmp_path, monkeypatch):
    from optbench.training.replicates import load_replicate
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))
    a, _ = load_replicate("mnist", "proxy_cnn_untrained", 0)
    b, seconds = load_replicate("mnist", "proxy_cnn_untrained", 0)
    c, _ = load_replicate("mnist", "proxy_cnn_untrained", 1)
    assert seconds == 0.0                                  # the second call reads the cache
    same = [torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())]
    differ = [torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values())]
    assert all(same) and not all(differ)
    (file,) = tmp_path.glob("replicates/mnist/proxy_cnn_untrained-r0-*.safetensors")
    file.write_bytes(file.read_bytes()[:-8] + b"\0" * 8)   # corrupt it: the sha256 no longer matches
    d, _ = load_replicate("mnist", "proxy_cnn_untrained", 0)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), d.state_dict().values()))


def test_per_seed_needs_a_recipe():
    from optbench.suite import SuiteError, parse_suite
    text = ('name = "x"\n[[cell]]\ndomain = "mnist"\nproxy = "gan_discriminator"\nsource = "best_of_n"\n'
            'n_samples = 8\nproxy_training = "per_seed"\n')
    with pytest.raises(SuiteError, match="proxy_training = 'per_seed'"):
        parse_suite(text, "x.toml")
    with pytest.raises(SuiteError, match="allowed: shipped, per_seed"):
        parse_suite(text.replace('"per_seed"', '"each"'), "x.toml")


def test_a_cell_scores_its_equal_proxy_sets(referee):
    """The referees score the stopped samples: every one is at proxy probability >= t,
    so their mean proxy_prob is too, and no later than the curve's own mean crossing."""
    from optbench.runner import compute_cell
    from optbench.suite import CellSpec
    spec = CellSpec("mnist", "proxy_cnn", "pixel_ascent", 8, 0,
                    tuple(sorted({"start": "real", "lr": 0.05, "max_steps": 32, "optimizer": "adam",
                                  "objective": "logit", "norm": "none", "eps": 0.0}.items())))
    result = compute_cell(spec, referee)
    points = {p["threshold"]: p for p in result.equal_proxy}
    assert sorted(points) == [0.5, 0.9, 0.99]
    for t, p in points.items():
        assert p["reached_frac"] == 1.0                   # 32 steps at lr 0.05 get every sample there
        assert p["proxy_prob"] >= t - 1e-5
        first_level = next(r["steps"] for r in result.rows if r["proxy_prob"] >= t)
        assert p["steps_mean"] <= first_level
    assert points[0.5]["steps_mean"] <= points[0.9]["steps_mean"] <= points[0.99]["steps_mean"]


def test_equal_proxy_tables_prefer_stopped_samples_to_interpolation():
    from optbench.report.summary import equal_proxy_table, equal_proxy_value
    rows = [{"steps": 0, "proxy_prob": 0.1, "kid": 0.0}, {"steps": 8, "proxy_prob": 0.95, "kid": 10.0}]
    stopped = {"spec": {"domain": "mnist", "proxy": "p", "source": "pixel_ascent", "n_samples": 8,
                        "settings": {}, "seed": 0, "label": "a"},
               "curve": {"rows": rows, "equal_proxy": [
                   {"threshold": 0.5, "reached_frac": 1.0, "kid": 3.0, "steps_mean": 4.0},
                   {"threshold": 0.9, "reached_frac": 0.5, "kid": 7.0, "steps_mean": 6.0}]}}
    assert equal_proxy_value(stopped, "kid", 0.5) == 3.0                 # not the interpolated 5.29
    assert math.isnan(equal_proxy_value(stopped, "kid", 0.9))           # only half the samples got there
    plain = {**stopped, "curve": {"rows": rows}}
    assert equal_proxy_value(plain, "kid", 0.5) == pytest.approx(10 * 0.4 / 0.85)
    (row,) = equal_proxy_table([stopped])
    assert row["how"] == "stopped" and row["kid@0.9_proxy_reached"] == 0
