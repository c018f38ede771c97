"""A small DCGAN (Radford et al. 2016), sized from the domain's image shape (height and
width multiples of 4): the generator and the discriminator that GAN pressure sources
push against. The defaults are MNIST's 1x28x28 in [0, 1].

The generator's batch norm is used in eval mode (running statistics) everywhere outside
GAN training, so a sample depends only on its own latent: per-sample seeds hold in any
batch. The discriminator has no batch norm for the same reason."""
from __future__ import annotations

import torch
from torch import nn

from optbench.models.fixed_batch import map_fixed
from optbench.rng import latent_torch
from optbench.models.blocks import MNIST_SHAPE, Affine, quarter

LATENT_DIM = 64


class DCGANGenerator(nn.Module):
    """z (latent_dim) -> H/4 x W/4 -> H/2 x W/2 -> H x W pixels in the domain's bounds
    (for MNIST: 7x7 -> 14x14 -> 28x28 in [0, 1])."""

    proxy_kind = None   # a generator, not a proxy

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 64, out_shape=MNIST_SHAPE,
                 bounds=(0.0, 1.0)):
        super().__init__()
        w, c = width, out_shape[0]
        h4, w4 = quarter(out_shape, "DCGANGenerator")
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * w * h4 * w4, bias=False), nn.Unflatten(1, (2 * w, h4, w4)),
            nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, c, 4, 2, 1), nn.Sigmoid(),
            *([] if tuple(bounds) == (0.0, 1.0) else [Affine(*bounds)]),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """Pixels in the domain's bounds -> one "real" logit per image."""

    proxy_kind = "realness"   # as a proxy it scores "real", not classes (optbench/proxies.py)

    def __init__(self, width: int = 64, in_shape=MNIST_SHAPE, bounds=(0.0, 1.0)):
        super().__init__()
        w, c = width, in_shape[0]
        h4, w4 = quarter(in_shape, "DCGANDiscriminator")
        self.lo, self.span = bounds[0], bounds[1] - bounds[0]
        self.net = nn.Sequential(
            nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * w * h4 * w4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.lo, self.span) != (0.0, 1.0):   # to [0, 1] first; MNIST's path is unchanged
            x = (x - self.lo) / self.span
        return self.net(x * 2 - 1).squeeze(1)


def sample_latents(n: int, seed: int, latent_dim: int = LATENT_DIM, offset: int = 0) -> torch.Tensor:
    """Latent i comes from its own generator seeded by (seed, offset + i), so sample i is the
    same whether drawn alone or in any batch."""
    return latents_at(range(offset, offset + n), seed, latent_dim)


def latents_at(rows, seed: int, latent_dim: int = LATENT_DIM) -> torch.Tensor:
    """The latents of samples `rows` (any indices) of `seed`."""
    return torch.stack([torch.randn(latent_dim, generator=latent_torch(seed, int(i))) for i in rows])


@torch.no_grad()
def generate(gen: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) on fixed-shape chunks: an image does not depend on the batch it was made in."""
    return map_fixed(gen, z)
