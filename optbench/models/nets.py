"""Small classifiers (and one autoencoder), sized from the domain: `in_shape` (C, H, W),
`num_classes`, and the normalization (`mean`, `std`) they apply inside, so optimizers
work in the domain's own pixel space and never see it. The defaults are MNIST's: its
shipped manifests' arch_kwargs hold no shape (its frozen recipes, domains/mnist.py), so
they are rebuilt from these; every other domain's recipes pass the shape explicitly
(models/recipes.py). Every referee network has `features(x)`: its metric feature space."""
from __future__ import annotations

import math

import torch
from torch import nn

from optbench.models.blocks import MNIST_MEAN, MNIST_SHAPE, MNIST_STD, Affine, Normalize, quarter
from optbench.registry import Registry



class _BodyHead(nn.Module):
    """A classifier as `head(body(x))`; `features` is the body's output."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(_BodyHead):
    """Two conv layers, max-pooling, two dense layers, no batch norm. `width` scales
    every layer, so proxies of several sizes share one architecture."""

    def __init__(self, width: int = 32, num_classes: int = 10, in_shape=MNIST_SHAPE,
                 mean=MNIST_MEAN, std=MNIST_STD):
        super().__init__()
        w, c = width, in_shape[0]
        h4, w4 = in_shape[1] // 4, in_shape[2] // 4   # after two 2x2 max-pools (floor)
        self.body = nn.Sequential(
            Normalize(mean, std, c),
            nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * w * h4 * w4, 4 * w), nn.ReLU(),
        )
        self.head = nn.Linear(4 * w, num_classes)


class BNCNN(_BodyHead):
    """Five 3x3 conv layers with batch norm and global average pooling. Its pooled
    128-d activation is the domain's feature space for FID/KID/PRDC."""

    def __init__(self, width: int = 32, num_classes: int = 10, in_shape=MNIST_SHAPE,
                 mean=MNIST_MEAN, std=MNIST_STD):
        super().__init__()
        w, c = width, in_shape[0]

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            Normalize(mean, std, c),
            *block(c, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)


class MLP(_BodyHead):
    """Two hidden dense layers on the flattened image."""

    def __init__(self, hidden: int = 256, num_classes: int = 10, in_shape=MNIST_SHAPE,
                 mean=MNIST_MEAN, std=MNIST_STD):
        super().__init__()
        self.body = nn.Sequential(Normalize(mean, std, in_shape[0], ndim=len(in_shape) + 1), nn.Flatten(),
                                  nn.Linear(math.prod(in_shape), hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)


class ConvAE(nn.Module):
    """A small convolutional autoencoder; `features` is its bottleneck. A feature space
    for the distribution metrics that no classifier shaped: it keeps what the pixels need
    to be rebuilt, not what separates the classes, so it sees departures a judge's
    penultimate layer is trained to ignore. Output in the domain's `bounds` (a scaled
    sigmoid). The features are standardized with the bottleneck's mean and std on the
    training split (set after training), so KID's polynomial kernel sees the same scale
    as in the judges' spaces."""

    proxy_kind = None   # never a proxy: no classes, no score

    def __init__(self, width: int = 16, latent: int = 32, in_shape=MNIST_SHAPE, bounds=(0.0, 1.0)):
        super().__init__()
        w, c = width, in_shape[0]
        h4, w4 = quarter(in_shape, "ConvAE")
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU(),           # 28 -> 14
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),       # 14 -> 7
            nn.Flatten(), nn.Linear(2 * w * h4 * w4, latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 2 * w * h4 * w4), nn.ReLU(), nn.Unflatten(1, (2 * w, h4, w4)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(w, c, 4, stride=2, padding=1), nn.Sigmoid(),  # 14 -> 28
            *([] if tuple(bounds) == (0.0, 1.0) else [Affine(*bounds)]),
        )
        self.register_buffer("code_mean", torch.zeros(latent))
        self.register_buffer("code_std", torch.ones(latent))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.encoder(x) - self.code_mean) / self.code_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ProxyEnsemble(nn.Module):
    """k independently trained SmallCNN members as one proxy. reduce="mean": the mean of
    the members' logits; reduce="min": the per-class minimum of the members'
    log-probabilities, so ascending a class's score ("logit" objective) raises the worst
    member's log-probability. Read as logits, those minima are renormalised by softmax:
    the probability this proxy reports is softmax(min log p), which is at least the worst
    member's probability (a defined proxy, not the members' minimum itself)."""

    REDUCTIONS = ("mean", "min")

    def __init__(self, members: int = 5, width: int = 16, reduce: str = "mean", num_classes: int = 10,
                 **shape):
        super().__init__()
        if reduce not in self.REDUCTIONS:
            raise ValueError(f"reduce: unknown value {reduce!r}; allowed: {', '.join(self.REDUCTIONS)}")
        self.reduce = reduce
        self.members = nn.ModuleList(SmallCNN(width, num_classes, **shape) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(x) for m in self.members])
        return logits.mean(0) if self.reduce == "mean" else logits.log_softmax(-1).amin(0)


# Architectures by name; a manifest entry may also name a user's class by import path
# ("mylab.nets:ResNet8"), which `build` imports.
ARCHITECTURES = Registry("architecture")
for _cls in (SmallCNN, BNCNN, MLP, ProxyEnsemble, ConvAE):
    ARCHITECTURES.register(_cls.__name__, _cls)
ARCHITECTURES.register("UNet2DModel", "optbench.models.diffusion:build_unet")  # diffusers' UNet


def build(arch: str, **kwargs) -> nn.Module:
    return ARCHITECTURES.lookup(arch, "arch")(**kwargs)


class NoisyCNN(nn.Module):
    """A noise-aware classifier p(y | x_t, t) for classifier guidance (Dhariwal and
    Nichol 2021, sec. 4): a CNN on x_t (model range [-1, 1]) whose conv blocks get a
    per-channel bias from a sinusoidal embedding of the timestep."""

    proxy_kind = None   # takes (x_t, t): a guidance model, not a proxy

    def __init__(self, width: int = 32, num_classes: int = 10, num_timesteps: int = 1000,
                 in_shape=MNIST_SHAPE):
        super().__init__()
        w, self.num_timesteps = width, num_timesteps
        self.convs = nn.ModuleList([nn.Conv2d(in_shape[0], w, 3, padding=1), nn.Conv2d(w, 2 * w, 3, padding=1),
                                    nn.Conv2d(2 * w, 4 * w, 3, padding=1)])
        self.norms = nn.ModuleList([nn.GroupNorm(8, c) for c in (w, 2 * w, 4 * w)])
        self.time = nn.Sequential(nn.Linear(64, 4 * w), nn.SiLU())
        self.time_bias = nn.ModuleList([nn.Linear(4 * w, c) for c in (w, 2 * w, 4 * w)])
        self.head = nn.Linear(4 * w, num_classes)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        half = 32
        freqs = torch.exp(-torch.arange(half, device=t.device) * (torch.log(torch.tensor(1e4)) / half))
        args = t.float()[:, None] * freqs[None]
        return self.time(torch.cat([args.sin(), args.cos()], 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t)
        h = x
        for i, (conv, norm, bias) in enumerate(zip(self.convs, self.norms, self.time_bias)):
            h = torch.nn.functional.silu(norm(conv(h)) + bias(emb)[:, :, None, None])
            if i < 2:
                h = torch.nn.functional.avg_pool2d(h, 2)
        return self.head(h.mean((2, 3)))


ARCHITECTURES.register("NoisyCNN", NoisyCNN)
ARCHITECTURES.register("DCGANGenerator", "optbench.models.gan:DCGANGenerator")
ARCHITECTURES.register("DCGANDiscriminator", "optbench.models.gan:DCGANDiscriminator")
for _name in ("MLPGenerator", "MLPDiscriminator", "MLPDenoiser", "NoisyMLP", "Coordinates"):
    ARCHITECTURES.register(_name, f"optbench.models.vector:{_name}")
for _name in ("MixtureSampler", "ExactDiffusion", "ExactNoisyPosterior", "BayesClassifier"):
    ARCHITECTURES.register(_name, f"optbench.models.exact:{_name}")
ARCHITECTURES.register("FaceSampler", "optbench.gold.faces:FaceSampler")
