"""A selection source's pool of generator samples, held in memory or streamed.

Best-of-n's estimator needs every pool member's proxy score and per-sample metric
values, never all the images at once. A pool larger than IN_MEMORY is generated chunk by
chunk, twice (once scored by the proxy, once by the referees), and any member is made
again from its own latent when it is selected. Sample i comes from latent (seed, i) on
fixed-shape chunks (models/gan.py), so a streamed pool's members are bit-identical to
an in-memory pool's."""
from __future__ import annotations

from typing import Iterator

import torch

from optbench.models.gan import generate, latents_at

IN_MEMORY = 2 ** 16      # pools up to this size keep their images (65,536 MNIST images: 206 MB)
CHUNK = 2 ** 14


class GeneratorPool:
    """N samples G(z_i), z_i from latent (seed, i)."""

    def __init__(self, G: torch.nn.Module, size: int, seed: int, device: torch.device, chunk: int = CHUNK):
        self.G, self.size, self.seed, self.device, self.chunk = G, size, seed, device, chunk
        self._kept = self._make(range(size)) if size <= IN_MEMORY else None

    def __len__(self) -> int:
        return self.size

    @property
    def streamed(self) -> bool:
        return self._kept is None

    def _make(self, rows) -> torch.Tensor:
        return generate(self.G, latents_at(rows, self.seed, self.G.latent_dim).to(self.device)).cpu()

    def chunks(self) -> Iterator[torch.Tensor]:
        """The pool in order, one chunk of images at a time."""
        if self._kept is not None:
            yield self._kept
            return
        for start in range(0, self.size, self.chunk):
            yield self._make(range(start, min(start + self.chunk, self.size)))

    def rows(self, idx) -> torch.Tensor:
        """The members at indices idx (made again when streamed)."""
        idx = torch.as_tensor(idx)
        return self._kept[idx] if self._kept is not None else self._make(idx.tolist())
