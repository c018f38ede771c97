"""feature_vis: the Fourier parameterization against torch-lucent's (the PyTorch port of
lucid, installed test-only), the transformations against analytic cases, and the source
raising the proxy's score with every prior on, bit-identically alone or in a batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from optbench.models.checkpoints import load_model
from optbench.pressure import Context
from optbench.pressure.feature_vis import (FEATURE_VIS, FourierImage, draw_transforms, feature_vis_ascent,
                                           spectrum_scale, transform)
from optbench.pressure.starts import make_starts
from optbench.proxies import as_proxy

PRIORS = {"jitter": 2, "scale": 0.1, "rotate": 10.0, "tv": 5.0, "l2": 5.0}


@pytest.fixture(scope="module")
def proxy():
    return as_proxy(load_model("mnist", "proxy_cnn"))


def ascend(proxy, x0, target, levels, seed=0, sample_ids=None, **settings) -> dict:
    """{steps: images} of feature_vis_ascent with FEATURE_VIS's settings changed by `settings`."""
    levels = feature_vis_ascent(Context.of(proxy, "mnist", seed=seed), x0, target, levels,
                                FEATURE_VIS.defaults(**settings), sample_ids)
    return {lv.knob: lv.x for lv in levels}


def test_fourier_image_equals_lucents_fft_image():
    """Same spectrum in, same pre-sigmoid image out as lucent.optvis.param.fft_image
    (its 1/f scale, its ortho inverse FFT and its divisor of 4). Even sizes only: for an
    odd width lucent keeps one more spectrum column than rfft2 and crops after."""
    from lucent.optvis.param import spatial
    shape = (3, 1, 28, 28)
    (spectrum,), image = spatial.fft_image(shape, sd=0.5)
    ours = FourierImage(shape[1:])
    torch.testing.assert_close(ours.spatial(spectrum.detach()), image().detach(), rtol=1e-5, atol=1e-6)


def test_fourier_scale_is_one_over_frequency_and_a_start_round_trips():
    scale = spectrum_scale(28, 28)
    assert scale[0, 0] == pytest.approx(28.0)            # DC: 1 / (1 / 28)
    assert scale[0, 14] == pytest.approx(1 / 0.5)        # Nyquist column: |f| = 0.5
    assert scale[1, 1] == pytest.approx(1 / np.hypot(1 / 28, 1 / 28), rel=1e-6)
    x = torch.rand(4, 1, 28, 28) * 0.98 + 0.01
    f = FourierImage((1, 28, 28))
    torch.testing.assert_close(f.image(f.spectrum_of(x)), x, rtol=0, atol=1e-5)


def test_transform_identity_and_integer_shift():
    x = torch.rand(2, 1, 12, 12)
    zero = torch.zeros(2, 4)
    assert torch.equal(transform(x, zero), x)
    shift = torch.tensor([[2.0, 0, 0, 0], [0, -1.0, 0, 0]])
    out = transform(x, shift)
    # An integer shift moves pixels: out[.., c] = x[.., c - dx] away from the border.
    torch.testing.assert_close(out[0, 0, :, 4:], x[0, 0, :, 2:-2], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1, 0, :-3, :], x[1, 0, 1:-2, :], rtol=0, atol=1e-5)
    moves = draw_transforms(0, range(16), 50, 2, 0.1, 10.0)
    assert moves[..., :2].abs().max() <= 2 and moves[..., :2].eq(moves[..., :2].round()).all()
    assert moves[..., 2].exp().min() >= 0.9 - 1e-6 and moves[..., 2].exp().max() <= 1.1 + 1e-6
    assert moves[..., 3].abs().max() <= 10.0


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_feature_vis_raises_the_proxy_score(proxy, param):
    x0, target = make_starts("mnist", "real", 16, 0)
    levels = ascend(proxy, x0, target, [0, 64], lr=0.05 if param == "fourier" else 0.01, param=param, **PRIORS)
    with torch.no_grad():
        before = proxy(levels[0]).softmax(1).gather(1, target[:, None]).mean()
        after = proxy(levels[64]).softmax(1).gather(1, target[:, None]).mean()
    assert after > before + 0.3, (before, after)
    assert levels[64].min() >= 0 and levels[64].max() <= 1


@pytest.mark.kernels
def test_a_sample_does_not_depend_on_its_batch(proxy):
    x0, target = make_starts("mnist", "real", 12, 3)
    batch = ascend(proxy, x0, target, [0, 8], seed=3, **PRIORS)[8]
    for i in (0, 7):
        alone = ascend(proxy, x0[i:i + 1], target[i:i + 1], [0, 8], seed=3, sample_ids=[i], **PRIORS)[8]
        assert torch.equal(alone[0], batch[i]), i


def test_the_callers_grad_mode_is_unchanged_while_a_level_is_scored():
    """The runner scores each yielded level while the source is suspended; a level yielded
    inside no_grad would turn gradients off for the referee, and the faces gold (which
    projects by gradient descent) then failed. Every level is scored with grad mode on."""
    from optbench.domains import get_domain
    proxy = as_proxy(load_model("faces", "proxy_cnn"))
    traj = FEATURE_VIS.run(Context(proxy, get_domain("faces"), 4, 0), {**FEATURE_VIS.defaults(), "max_steps": 2})
    modes = [torch.is_grad_enabled() for _ in traj.levels]
    assert len(modes) == 3 and all(modes)   # levels 0, 1, 2
