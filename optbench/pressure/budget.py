"""Projections onto perturbation budgets (the "P" in PGD, Madry et al. 2018 eq. 2)."""
from __future__ import annotations

import torch

NORMS = ("none", "l2", "linf")


def project(x: torch.Tensor, start: torch.Tensor, norm: str, eps: float,
            bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Nearest point to `x` within the `norm` ball of radius `eps` around `start`,
    then clipped to the domain's value range `bounds`."""
    if norm == "l2":
        delta = x - start
        size = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        x = start + delta * (eps / size).clamp(max=1.0)
    elif norm == "linf":
        x = start + (x - start).clamp(-eps, eps)
    elif norm != "none":
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")
    return x.clamp(*bounds)
