"""Pixel ascent: gradient ascent on the input pixels toward a target class of a frozen
proxy (Simonyan et al. 2014; Nguyen et al. 2015, "fooling images"). With an L2 or Linf
budget around the start it is targeted PGD (Madry et al. 2018)."""
from __future__ import annotations

from typing import Iterator

import torch

from optbench.models.gan import is_realness
from optbench.pressure.budget import project
from optbench.models.fixed_batch import score_and_grad

OBJECTIVES = ("logit", "log_prob")
OPTIMIZERS = ("adam", "sgd")


def log_levels(max_steps: int) -> list[int]:
    """0, 1, 2, 4, ... up to max_steps (max_steps itself always included)."""
    levels, s = [0], 1
    while s < max_steps:
        levels.append(s)
        s *= 2
    return levels + [max_steps]


def target_score(logits: torch.Tensor, target: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "log_prob":
        logits = logits.log_softmax(1)
    return logits.gather(1, target[:, None]).squeeze(1)


def proxy_score(proxy: torch.nn.Module, x: torch.Tensor, target: torch.Tensor | None,
                objective: str) -> torch.Tensor:
    """Per-sample score to ascend. A realness proxy (discriminator) gives D(x) ("logit")
    or log sigmoid D(x) ("log_prob"); a classifier its target logit or log-probability."""
    out = proxy(x)
    if is_realness(proxy):
        return out if objective == "logit" else torch.nn.functional.logsigmoid(out)
    return target_score(out, target, objective)


def pixel_ascent(proxy: torch.nn.Module, start: torch.Tensor, target: torch.Tensor,
                 levels: list[int], lr: float = 0.01, optimizer: str = "adam",
                 objective: str = "logit", norm: str = "none", eps: float = 0.0
                 ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (steps, x) at every level in `levels` (sorted, starting at 0).

    Each sample's loss term depends only on its own pixels, and the proxy runs on chunks
    of one fixed shape (models/fixed_batch.py), so on one machine a sample's trajectory is
    bit-identical alone or in any batch. Non-finite values are not caught here: they
    propagate through Adam and the clamp and are reported by the caller as divergence."""
    x = start.clone().requires_grad_(True)
    # The fused Adam kernel halves the optimizer's share of a step; same update rule.
    opt = (torch.optim.Adam([x], lr=lr, fused=x.device.type in ("cpu", "cuda"))
           if optimizer == "adam" else torch.optim.SGD([x], lr=lr))
    step = 0
    for level in levels:
        while step < level:
            _, grad = score_and_grad(lambda xc, tc: proxy_score(proxy, xc, tc, objective), x, target)
            x.grad = grad.neg_()   # ascend the score: descend its negative
            opt.step()
            with torch.no_grad():
                if norm == "none":
                    x.clamp_(0.0, 1.0)  # in place: the common case costs one pass
                else:
                    x.copy_(project(x, start, norm, eps))
            step += 1
        yield step, x.detach().clone()
