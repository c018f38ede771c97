"""Exact equal-proxy points: each sample's output at the first step where its own proxy
probability reaches a threshold.

Comparing sources "at equal proxy score" by interpolating referee metrics between
log-spaced pressure levels mixes outputs from both sides of the crossing and misread
the plain proxy's KID at probability 0.9 by 50%. Iterative sources instead stop every
sample where it first crosses: the proxy probability is computed at every step anyway
(it is the forward pass of the gradient), so the capture costs one copy per crossing.
The referees then score the set of stopped samples, all at probability >= t. Samples
that never reach t are left out, and the share that did is reported beside the numbers."""
from __future__ import annotations

import torch

EQUAL_PROXY_LEVELS = (0.5, 0.9, 0.99)


class Crossings:
    """First crossings of proxy-probability thresholds for a batch of n samples."""

    def __init__(self, n: int, thresholds=EQUAL_PROXY_LEVELS):
        self.thresholds = tuple(thresholds)
        self.step = {t: torch.full((n,), -1, dtype=torch.long) for t in self.thresholds}
        self.prob = {t: torch.full((n,), float("nan"), dtype=torch.float64) for t in self.thresholds}
        self.x: dict[float, torch.Tensor | None] = {t: None for t in self.thresholds}

    def update(self, step: int, prob: torch.Tensor, outputs) -> None:
        """Record samples whose probability `prob` (at this step's outputs) reaches a
        threshold for the first time. `outputs(mask)` (a CPU boolean mask) returns those
        samples' outputs, so a generator renders only the samples that cross."""
        prob = prob.detach().double().cpu()
        for t in self.thresholds:
            new = (self.step[t] < 0) & (prob >= t)
            if not new.any():
                continue
            x = outputs(new).detach().cpu()
            if self.x[t] is None:
                self.x[t] = torch.zeros((len(prob), *x.shape[1:]), dtype=x.dtype)
            self.x[t][new] = x
            self.step[t][new] = step
            self.prob[t][new] = prob[new]

    def reached(self, t: float) -> torch.Tensor:
        return self.step[t] >= 0

    def sets(self):
        """(threshold, reached mask, outputs of the reached samples, their steps) per
        threshold; outputs are None when no sample reached it."""
        for t in self.thresholds:
            mask = self.reached(t)
            yield t, mask, (self.x[t][mask] if mask.any() else None), self.step[t][mask]
