"""A user's own models for the rgb5 example, outside the optbench package: optbench reaches
them by import path ("rgb5_plugin:TinyConvNet") from suite.toml, loads their weights
from safetensors, and never imports anything else of this file."""
from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """The user's classifier: RGB 32x32 in [0, 1] -> 5 logits. `features` (its pooled
    activation) is what optbench would use if it were a feature space."""

    def __init__(self, classes: int = 5, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


class PCAGenerator(nn.Module):
    """The user's generator: x = clamp(mean + z @ (components * scale)), a linear Gaussian
    model fitted by PCA. optbench's generator sources need `latent_dim` and forward(z)."""

    proxy_kind = None   # a generator is never a proxy

    def __init__(self, latent_dim: int = 32, shape=(3, 32, 32)):
        super().__init__()
        self.latent_dim, self.shape = latent_dim, tuple(shape)
        d = shape[0] * shape[1] * shape[2]
        self.mean = nn.Parameter(torch.zeros(d))
        self.components = nn.Parameter(torch.zeros(latent_dim, d))

    @classmethod
    def fit(cls, x: torch.Tensor, latent_dim: int = 32) -> "PCAGenerator":
        flat = x.flatten(1)
        mean = flat.mean(0)
        u, s, v = torch.linalg.svd(flat - mean, full_matrices=False)
        g = cls(latent_dim, x.shape[1:])
        with torch.no_grad():
            g.mean.copy_(mean)
            g.components.copy_(v[:latent_dim] * (s[:latent_dim, None] / (len(x) - 1) ** 0.5))
        return g

    def forward(self, z):
        return (self.mean + z @ self.components).clamp(0, 1).view(-1, *self.shape)
