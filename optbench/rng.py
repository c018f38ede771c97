"""Per-sample randomness, in one place. The rule: sample i of seed s draws only from a
generator seeded by (s, i) and a stream name, so a sample is the same alone, in any
batch, and whatever n is.

    sample_rng(s, i, *stream)        numpy, for index and class draws (starts)
    sample_torch(s, i, *stream)      torch, for tensors (sign noise, diffusion x_T)
    latent_torch(s, i)               torch, for GAN latents: an older seeding (s * 1,000,003 + i)
                                     kept because the shipped GAN results were drawn with it
"""
from __future__ import annotations

import numpy as np
import torch

LATENT_STRIDE = 1_000_003


def sample_rng(seed: int, i: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, i, *stream])


def sample_torch(seed: int, i: int, *stream: int) -> torch.Generator:
    state = int(np.random.SeedSequence([seed, i, *stream]).generate_state(1)[0])
    return torch.Generator().manual_seed(state)


def latent_torch(seed: int, i: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * LATENT_STRIDE + i)
