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
from optbench.pressure.source import Context, Level
from optbench.proxies import as_proxy


def latent_ascent(ctx: Context, G: torch.nn.Module, z0: torch.Tensor, target: torch.Tensor | None,
                  levels: list[int], s: dict) -> Iterator[Level]:
    """Adam on the latents z (generator and proxy frozen), with LATENT_ASCENT's settings
    `s` (lr, objective). Yields a Level (steps, G(z)) with the mean latent distance
    ||z - z0|| (`latent_l2`) as the source's own distance. `ctx.crossings` records each
    sample where its proxy probability first reaches each threshold."""
    proxy, crossings, objective = as_proxy(ctx.proxy), ctx.crossings, s["objective"]
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=s["lr"])

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
        yield Level(step, x, values={
            "latent_l2": float(dist[finite].mean()) if finite.any() else float("nan"),
            "latent_norm": float(z.detach()[finite].norm(dim=1).mean()) if finite.any() else float("nan")})


def parameter_distance(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> float:
    """L2 norm of the change in all trainable weights."""
    sq = sum(float(((p.detach() - reference[n]) ** 2).sum()) for n, p in model.named_parameters())
    return sq ** 0.5


def generator_finetune(ctx: Context, G0: torch.nn.Module, z_eval: torch.Tensor, target: torch.Tensor,
                       levels: list[int], s: dict) -> Iterator[Level]:
    """Keep training a copy of the generator against the frozen proxy, maximising the
    mean score, with GENERATOR_FINETUNE's settings `s` (lr, batch_size, objective,
    target_class). For a discriminator with objective "log_prob" that is the
    non-saturating GAN loss softplus(-D(G(z))) (Goodfellow et al. 2014) with D never
    updated; "logit" ascends the raw logit. For a classifier, the fixed target class's
    score. Training latents come from one seeded stream; the fixed `z_eval` latents are
    rendered at every level, and `ctx.crossings` reads the proxy's probability of their
    outputs (for the per-sample `target`) after every step. The source's own distance is
    the L2 change of the generator's weights (`param_l2`)."""
    proxy, crossings, objective, batch_size = as_proxy(ctx.proxy), ctx.crossings, s["objective"], s["batch_size"]
    target_class = s["target_class"] if proxy.has_classes else None
    G = copy.deepcopy(G0).eval().requires_grad_(True)   # eval: batch norm stays frozen
    start = {n: p.detach().clone() for n, p in G.named_parameters()}
    opt = torch.optim.Adam(G.parameters(), lr=s["lr"], betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(ctx.seed)
    device = z_eval.device

    def record(step: int) -> None:   # a measurement: no gradient, no random draw
        if crossings is not None:
            with torch.no_grad():
                x = generate(G, z_eval)
                prob = map_fixed(lambda xc, tc: proxy.score_and_prob(xc, tc, objective)[1], x, target)
            crossings.update(step, prob, lambda mask: x[mask.to(x.device)])

    step = 0
    for level in levels:
        while step < level:
            record(step)
            z = torch.randn(batch_size, z_eval.shape[1], generator=gen).to(device)
            t = None if target_class is None else torch.full((batch_size,), target_class, device=device)
            score = proxy.score(proxy(G(z)), t, objective)
            loss = -score.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if step == levels[-1]:   # the last outputs get no step: read them once
            record(step)
        yield Level(step, generate(G, z_eval), values={"param_l2": parameter_distance(G, start)})
