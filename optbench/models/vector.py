"""Learned models for plain-vector domains (shape (d,)): the GAN's generator and
discriminator, a class-conditional noise predictor for diffusion, and the raw-coordinate
feature space, and a noise-aware classifier for classifier guidance. The classifiers (proxies, judges) are nets.MLP, sized from (d,)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from optbench.models.blocks import Affine


class MLPGenerator(nn.Module):
    """z -> x in the domain's bounds (a scaled tanh). No batch norm: a sample depends
    only on its own latent."""

    proxy_kind = None

    def __init__(self, latent_dim: int = 16, hidden: int = 128, out_shape=(2,), bounds=(-1.0, 1.0)):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, math.prod(out_shape)),
                                 nn.Sigmoid(), Affine(*bounds))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """x -> one "real" logit."""

    proxy_kind = "realness"

    def __init__(self, hidden: int = 128, in_shape=(2,), bounds=(-1.0, 1.0)):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def timestep_embedding(t: torch.Tensor, dim: int = 32) -> torch.Tensor:
    """Sinusoidal embedding of the timestep (Vaswani et al. 2017, sec. 3.5; Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-torch.arange(half, device=t.device) * (math.log(1e4) / half))
    args = t.float().reshape(-1, 1) * freqs[None]
    return torch.cat([args.sin(), args.cos()], 1)


class MLPDenoiser(nn.Module):
    """eps(x_t, t, y) for a vector domain, with diffusers' UNet calling convention
    (`model(x, t, class_labels=y).sample`, `config.num_class_embeds`), so the guidance
    source samples it as it samples a UNet. Label num_classes is the null label of
    classifier-free guidance."""

    proxy_kind = None

    def __init__(self, dim: int = 2, num_classes: int = 4, hidden: int = 256, scheduler_config: dict | None = None):
        super().__init__()
        from optbench.models.diffusion import SCHEDULER_CONFIG
        self.config = SimpleNamespace(num_class_embeds=num_classes + 1)
        self.scheduler_config = dict(scheduler_config or SCHEDULER_CONFIG)
        self.label = nn.Embedding(num_classes + 1, hidden)
        self.time = nn.Sequential(nn.Linear(32, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(3))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t, class_labels: torch.Tensor | None = None):
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(len(x))
        if class_labels is None:
            class_labels = torch.full((len(x),), self.config.num_class_embeds - 1, device=x.device)
        cond = self.time(timestep_embedding(t)) + self.label(class_labels)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + cond)   # residual, conditioned at every block
        return SimpleNamespace(sample=self.out(h))


class NoisyMLP(nn.Module):
    """logits of p(y | x_t, t), the noise-aware classifier of classifier guidance
    (Dhariwal and Nichol 2021, sec. 4) for a vector domain, on x_t in [-1, 1] model range:
    MLPDenoiser's residual trunk conditioned on the timestep alone, with a class head."""

    proxy_kind = None   # takes (x_t, t): a guidance model, not a proxy

    def __init__(self, dim: int = 2, num_classes: int = 4, hidden: int = 128):
        super().__init__()
        self.time = nn.Sequential(nn.Linear(32, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(2))
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        cond = self.time(timestep_embedding(torch.as_tensor(t, device=x.device).reshape(-1).expand(len(x))))
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + cond)
        return self.head(h)


class Coordinates(nn.Module):
    """The raw-coordinate feature space: x standardized per coordinate with the training
    split's mean and std (buffers set at training). On a ground-truth domain this is the
    space where the data's law is known, so a metric's failure here is the metric's."""

    proxy_kind = None

    def __init__(self, dim: int = 2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
