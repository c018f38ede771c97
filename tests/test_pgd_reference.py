"""Targeted PGD against the reference implementation: optbench's pixel ascent with the
"steepest" optimizer and the log_prob objective is torchattacks' targeted PGD (Linf) and
PGDL2 step for step (torchattacks installed test-only, without its dependency pins)."""
from __future__ import annotations

import pytest
import torch

from optbench.models.checkpoints import load_model
from optbench.pressure import Context
from optbench.pressure.pixel_ascent import PIXEL_ASCENT, pixel_ascent
from optbench.pressure.starts import make_starts

torchattacks = pytest.importorskip("torchattacks")


def _both(norm: str, eps: float, alpha: float, steps: int):
    model = load_model("mnist", "proxy_cnn").eval()
    x0, target = make_starts("mnist", "real", 128, 0)
    ours = list(pixel_ascent(Context.of(model, "mnist"), x0, target, [0, steps], PIXEL_ASCENT.defaults(
        lr=alpha, optimizer="steepest", objective="log_prob", norm=norm, eps=eps)))[-1].x
    kind = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    attack = kind(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    attack.set_mode_targeted_by_function(lambda images, labels: target)
    reference = attack(x0, torch.zeros(128, dtype=torch.long))
    with torch.no_grad():
        probs = [model(x).softmax(1).gather(1, target[:, None]).mean().item() for x in (ours, reference)]
    return ours, reference, probs


@pytest.mark.kernels
def test_linf_pgd_equals_torchattacks():
    """Bit-identical after 40 steps: torchattacks ascends -mean CE, we ascend the sum of
    log-probabilities; the gradients differ by the factor 128, a power of two, so their
    signs agree exactly (and both run the model on one batch of 128)."""
    ours, reference, probs = _both("linf", 0.3, 0.03, 40)
    assert torch.equal(ours, reference)
    assert probs[0] > 0.5          # the attack did something (0.97)


@pytest.mark.kernels
def test_l2_pgd_matches_torchattacks_to_rounding():
    """After 1 step the two differ by float rounding (6e-8, from where the 1e-10 floor of
    ||grad|| enters: their gradient is 128 times smaller); the projection amplifies it
    over steps (0.006 after 40 here), while the attack's result, the target probability,
    stays equal to 1e-6."""
    ours, reference, _ = _both("l2", 2.0, 0.2, 1)
    assert (ours - reference).abs().max() < 1e-6
    ours, reference, probs = _both("l2", 2.0, 0.2, 40)
    assert abs(probs[0] - probs[1]) < 1e-6 and probs[0] > 0.2
    x0, _ = make_starts("mnist", "real", 128, 0)
    assert ((ours - x0).flatten(1).norm(dim=1) <= 2.0 * (1 + 1e-5)).all()   # the L2 budget holds
