"""The online proxy: without retraining it is frozen pixel ascent; with retraining it
learns the outputs as negatives and leaves the original proxy untouched."""
import torch

from optbench.models.checkpoints import load_model
from optbench.pressure.online import complementary_loss, online_pixel_ascent
from optbench.pressure.pixel_ascent import pixel_ascent
from optbench.pressure.starts import make_starts
from optbench.domains import get_domain


def _setup(n=16):
    proxy = load_model("mnist", "proxy_cnn")
    x0, target = make_starts("mnist", "real", n, seed=0)
    real_x, real_y = get_domain("mnist").load_split("proxy_train")
    return proxy, x0, target, real_x, real_y


def test_no_retraining_equals_frozen_pixel_ascent():
    proxy, x0, target, rx, ry = _setup()
    levels = [0, 1, 8, 32]
    frozen = list(pixel_ascent(proxy, x0, target, levels, lr=0.01))
    online = list(online_pixel_ascent(proxy, x0, target, levels, 0.01, "logit", retrain_every=4,
                                      retrain_steps=0, retrain_lr=1e-3, real_x=rx, real_y=ry, seed=0))
    assert len(frozen) == len(online) == len(levels)
    for (k1, a), (k2, b, info) in zip(frozen, online):
        assert k1 == k2
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert abs(info["extras"]["proxy_prob"] - info["extras"]["frozen_proxy_prob"]) < 1e-6
        assert info["extras"]["retrain_updates"] == 0


def test_retraining_learns_negatives_and_keeps_original_proxy():
    proxy, x0, target, rx, ry = _setup()
    before = {k: v.clone() for k, v in proxy.state_dict().items()}
    run = list(online_pixel_ascent(proxy, x0, target, [0, 64, 128], 0.01, "logit", retrain_every=64,
                                   retrain_steps=20, retrain_lr=1e-3, real_x=rx, real_y=ry, seed=0))
    for k, v in proxy.state_dict().items():
        assert torch.equal(v, before[k]), k
    last = run[-1][2]["extras"]
    assert last["retrain_updates"] == 40 and last["retrain_samples"] == 40 * 128
    # The frozen proxy is fooled by these outputs far more than the retrained one.
    assert last["frozen_proxy_prob"] > last["proxy_prob"] + 0.2
    again = list(online_pixel_ascent(proxy, x0, target, [0, 64, 128], 0.01, "logit", retrain_every=64,
                                     retrain_steps=20, retrain_lr=1e-3, real_x=rx, real_y=ry, seed=0))
    assert torch.equal(run[-1][1], again[-1][1])       # same seed, same numbers


def test_complementary_loss_is_minus_log_one_minus_p():
    logits = torch.randn(5, 10)
    t = torch.arange(5)
    p = logits.softmax(1)[torch.arange(5), t]
    torch.testing.assert_close(complementary_loss(logits, t), -torch.log1p(-p))
