"""The online proxy: without retraining it is frozen pixel ascent; with retraining it
learns the outputs as negatives and leaves the original proxy untouched; its crossings
are the frozen proxy's."""
import torch

from optbench.models.checkpoints import load_model
from optbench.pressure import Context
from optbench.pressure.crossings import Crossings
from optbench.pressure.online import ONLINE_ASCENT, complementary_loss, online_pixel_ascent
from optbench.pressure.pixel_ascent import PIXEL_ASCENT, pixel_ascent
from optbench.pressure.starts import make_starts
from optbench.domains import get_domain
from optbench.proxies import as_proxy


def _setup(n=16):
    proxy = load_model("mnist", "proxy_cnn")
    x0, target = make_starts("mnist", "real", n, seed=0)
    real_x, real_y = get_domain("mnist").load_split("proxy_train")
    return proxy, x0, target, real_x, real_y


def _online(proxy, x0, target, levels, real, crossings=None, **settings):
    s = ONLINE_ASCENT.defaults(**{"lr": 0.01, "objective": "logit", "retrain_lr": 1e-3} | settings)
    return list(online_pixel_ascent(Context.of(proxy, "mnist", crossings=crossings), x0, target, levels, s, *real))


def _frozen_prob(proxy, x, target) -> float:
    with torch.no_grad():
        return float(as_proxy(proxy).prob(proxy(x), target).mean())


def test_no_retraining_equals_frozen_pixel_ascent():
    proxy, x0, target, rx, ry = _setup()
    levels = [0, 1, 8, 32]
    frozen = list(pixel_ascent(Context.of(proxy, "mnist"), x0, target, levels, PIXEL_ASCENT.defaults(lr=0.01)))
    online = _online(proxy, x0, target, levels, (rx, ry), retrain_every=4, retrain_steps=0)
    assert len(frozen) == len(online) == len(levels)
    for a, b in zip(frozen, online):
        assert a.knob == b.knob
        torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-6)
        assert abs(b.values["online_proxy_prob"] - _frozen_prob(proxy, b.x, target)) < 1e-6
        assert b.values["retrain_updates"] == 0
        assert set(b.values) == set(ONLINE_ASCENT.values)


def test_retraining_learns_negatives_and_keeps_original_proxy():
    proxy, x0, target, rx, ry = _setup()
    before = {k: v.clone() for k, v in proxy.state_dict().items()}
    crossings = Crossings(len(x0))
    run = _online(proxy, x0, target, [0, 64, 128], (rx, ry), crossings, retrain_every=64, retrain_steps=20)
    for k, v in proxy.state_dict().items():
        assert torch.equal(v, before[k]), k
    last = run[-1].values
    assert last["retrain_updates"] == 40 and last["retrain_samples"] == 40 * 128
    # The frozen proxy is fooled by these outputs far more than the retrained one.
    assert _frozen_prob(proxy, run[-1].x, target) > last["online_proxy_prob"] + 0.2
    again = _online(proxy, x0, target, [0, 64, 128], (rx, ry), retrain_every=64, retrain_steps=20)
    assert torch.equal(run[-1].x, again[-1].x)       # same seed, same numbers, crossings observed or not
    # Crossings are the frozen proxy's: every sample it reads at >= 0.5 by the end was caught.
    final = as_proxy(proxy).prob(proxy(run[-1].x), target).detach()
    assert torch.equal(crossings.reached(0.5), crossings.reached(0.5) | (final >= 0.5))
    assert bool(crossings.reached(0.5).any())
    caught = crossings.reached(0.5)
    assert (as_proxy(proxy).prob(proxy(crossings.x[0.5][caught]), target[caught]) >= 0.5 - 1e-6).all()


def test_complementary_loss_is_minus_log_one_minus_p():
    logits = torch.randn(5, 10)
    t = torch.arange(5)
    p = logits.softmax(1)[torch.arange(5), t]
    torch.testing.assert_close(complementary_loss(logits, t), -torch.log1p(-p))
