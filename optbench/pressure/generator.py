"""Pressure through a GAN generator: ascend its latent, or fine-tune its weights, against
a frozen proxy (a classifier's target class, or a discriminator's "real" logit).

Both keep the generator's batch norm in eval mode, so a sample depends only on its own
latent; latent ascent runs G and the proxy on fixed-shape chunks (models/fixed_batch.py), so on
one machine a trajectory is bit-identical alone or in any batch."""
from __future__ import annotations

import copy
from typing import Iterator

import torch

from optbench.models.fixed_batch import map_fixed, score_and_grad
from optbench.models.gan import generate
from optbench.pressure.crossings import Crossings
from optbench.proxies import Proxy, as_proxy


def latent_ascent(G: torch.nn.Module, proxy: Proxy | torch.nn.Module, z0: torch.Tensor,
                  target: torch.Tensor | None, levels: list[int], lr: float, objective: str,
                  crossings: Crossings | None = None) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Adam on the latents z (generator and proxy frozen). Yields (steps, G(z), info) with
    the mean latent distance ||z - z0|| as the source's own distance. `crossings` records
    each sample where its proxy probability first reaches each threshold."""
    proxy = as_proxy(proxy)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def record(step: int, prob: torch.Tensor) -> None:
        if crossings is not None:
            crossings.update(step, prob, lambda mask: generate(G, z.detach()[mask.to(z.device)]))

    step = 0
    for level in levels:
        while step < level:
            _, grad, prob = score_and_grad(lambda zc, tc: proxy.score_and_prob(G(zc), tc, objective),
                                           z, target, aux=True)
            record(step, prob)
            z.grad = grad.neg_()
            opt.step()
            step += 1
        if step == levels[-1] and crossings is not None:
            with torch.no_grad():
                prob = map_fixed(lambda zc, tc: proxy.score_and_prob(G(zc), tc, objective)[1],
                                 z.detach(), target)
            record(step, prob)
        with torch.no_grad():
            dist = (z - z0).flatten(1).norm(dim=1)
            finite = torch.isfinite(dist)
            x = generate(G, z.detach())
        yield step, x, {"extras": {"latent_l2": float(dist[finite].mean()) if finite.any() else float("nan"),
                                   "latent_norm": float(z.detach()[finite].norm(dim=1).mean()) if finite.any() else float("nan")}}


def parameter_distance(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> float:
    """L2 norm of the change in all trainable weights."""
    sq = sum(float(((p.detach() - reference[n]) ** 2).sum()) for n, p in model.named_parameters())
    return sq ** 0.5


def generator_finetune(G0: torch.nn.Module, proxy: Proxy | torch.nn.Module, z_eval: torch.Tensor,
                       target_class: int | None, levels: list[int], lr: float,
                       batch_size: int, seed: int, objective: str
                       ) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Keep training a copy of the generator against the frozen proxy, maximising the
    mean score. For a discriminator with objective "log_prob" that is the non-saturating
    GAN loss softplus(-D(G(z))) (Goodfellow et al. 2014) with D never updated; "logit"
    ascends the raw logit. For a classifier, the fixed target class's score. Training latents
    come from one seeded stream; the fixed `z_eval` latents are rendered at every level.
    The source's own distance is the L2 change of the generator's weights."""
    proxy = as_proxy(proxy)
    G = copy.deepcopy(G0).eval().requires_grad_(True)   # eval: batch norm stays frozen
    start = {n: p.detach().clone() for n, p in G.named_parameters()}
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    device = z_eval.device
    step = 0
    for level in levels:
        while step < level:
            z = torch.randn(batch_size, z_eval.shape[1], generator=gen).to(device)
            target = None if target_class is None else torch.full((batch_size,), target_class, device=device)
            score = proxy.score(proxy(G(z)), target, objective)
            loss = -score.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        yield step, generate(G, z_eval), {"extras": {"param_l2": parameter_distance(G, start)}}
