"""Layers the architectures share (nets, gan, vector), and the shape defaults of the
shipped image architectures: MNIST's, since its manifests' arch_kwargs predate sizing
the architectures from the domain and are rebuilt from these (every other domain's
recipes pass the shape: optbench/models/recipes.py)."""
from __future__ import annotations

import torch
from torch import nn

MNIST_SHAPE, MNIST_MEAN, MNIST_STD = (1, 28, 28), 0.1307, 0.3081


class Normalize(nn.Module):
    """(x - mean) / std with one number, or one per channel. Not a buffer, so it does not
    enter (or change) a checkpoint's tensors: it is in the manifest's arch_kwargs."""

    def __init__(self, mean=MNIST_MEAN, std=MNIST_STD, channels: int = 1, ndim: int = 4):
        super().__init__()
        if isinstance(mean, (list, tuple)):
            view = (1, -1, 1, 1) if ndim == 4 else (1, -1)
            mean, std = torch.tensor(mean).view(view), torch.tensor(std).view(view)
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.mean, torch.Tensor):
            return (x - self.mean.to(x.device)) / self.std.to(x.device)
        return (x - self.mean) / self.std


def quarter(in_shape, arch: str) -> tuple[int, int]:
    """H/4 and W/4: the size after two stride-2 stages; both must be whole."""
    c, h, w = in_shape
    if h % 4 or w % 4:
        raise ValueError(f"{arch}: in_shape {tuple(in_shape)}: height and width must be multiples of 4")
    return h // 4, w // 4


class Affine(nn.Module):
    """[0, 1] -> [lo, hi]: a sigmoid output in a domain's own value range."""

    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * x
