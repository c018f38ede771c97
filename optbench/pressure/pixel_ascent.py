"""Pixel ascent: gradient ascent on the input pixels toward a target class of a frozen
proxy (Simonyan et al. 2014; Nguyen et al. 2015, "fooling images"). With an L2 or Linf
budget around the start it is targeted PGD (Madry et al. 2018)."""
from __future__ import annotations

from typing import Iterator

import torch

from optbench.models.fixed_batch import map_fixed, score_and_grad
from optbench.pressure.budget import NORMS, project
from optbench.pressure.source import MAX_LR, MAX_STEPS, Context, Level, Setting, Source, Trajectory
from optbench.pressure.starts import STARTS, make_starts
from optbench.proxies import OBJECTIVES, as_proxy
from optbench.rng import sample_torch
# "random_sign" is the matched-noise control: every pixel moves by +-lr each step with a
# random sign, which is the size of Adam's early steps, and the proxy is never consulted.
# "steepest" is PGD's step (Madry et al. 2018): the steepest ascent direction of the
# budget's norm, lr * sign(grad) under linf (and with no budget), lr * grad / ||grad||_2
# under l2; with objective log_prob it is torchattacks' targeted PGD / PGDL2 step.
OPTIMIZERS = ("adam", "sgd", "random_sign", "steepest")
GRAD_FLOOR = 1e-10   # added to ||grad||_2 before dividing (torchattacks' eps_for_division)
SIGN_STREAM = 7   # keeps the noise stream apart from other per-sample draws of the seed


def sign_noise(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """One +-1 tensor per sample, each from its own generator, so a sample's noise does
    not depend on the batch it is in."""
    return torch.stack([torch.randint(0, 2, shape, generator=g, dtype=torch.int8) for g in generators]
                       ).float().mul_(2).sub_(1)


def sample_generators(seed: int, n: int) -> list[torch.Generator]:
    """Per-sample generators for sample i of seed s (only (s, i) matters)."""
    return [sample_torch(seed, i, SIGN_STREAM) for i in range(n)]


def pixel_ascent(ctx: Context, start: torch.Tensor, target: torch.Tensor, levels: list[int],
                 s: dict) -> Iterator[Level]:
    """Yield a Level at every step count in `levels` (sorted, starting at 0), with the
    settings `s` (PIXEL_ASCENT's: lr, optimizer, objective, norm, eps).

    Each sample's loss term depends only on its own pixels, and the proxy runs on chunks
    of one fixed shape (models/fixed_batch.py), so on one machine a sample's trajectory is
    bit-identical alone or in any batch. Non-finite values are not caught here: they
    propagate through Adam and the clamp and are reported by the caller as divergence.

    `ctx.crossings` records each sample at the first step where its proxy probability
    reaches each threshold (exact equal-proxy points). "random_sign" takes steps of +-lr
    per pixel with per-sample random signs (seeded by ctx.seed and the sample's row).
    Every step ends inside the domain's bounds."""
    proxy, crossings, bounds = as_proxy(ctx.proxy), ctx.crossings, ctx.bounds
    lr, optimizer, objective, norm, eps = s["lr"], s["optimizer"], s["objective"], s["norm"], s["eps"]
    lo, hi = bounds
    x = start.clone().requires_grad_(True)
    if optimizer == "random_sign":
        opt, gens = None, sample_generators(ctx.seed, len(x))
    elif optimizer == "steepest":
        opt = None
    else:   # the fused Adam kernel halves the optimizer's share of a step; same update rule
        opt = (torch.optim.Adam([x], lr=lr, fused=x.device.type in ("cpu", "cuda"))
               if optimizer == "adam" else torch.optim.SGD([x], lr=lr))

    def score(xc, tc):
        return proxy.score_and_prob(xc, tc, objective)

    def record(step: int, prob: torch.Tensor) -> None:
        if crossings is not None:
            crossings.update(step, prob, lambda mask: x.detach()[mask.to(x.device)])

    step = 0
    for level in levels:
        while step < level:
            if optimizer == "steepest":
                _, grad, prob = score_and_grad(score, x, target, aux=True)
                record(step, prob)
                with torch.no_grad():
                    if norm == "l2":
                        size = grad.flatten(1).norm(dim=1).add_(GRAD_FLOOR).view(-1, *[1] * (x.dim() - 1))
                        x.add_(grad / size, alpha=lr)
                    else:
                        x.add_(grad.sign(), alpha=lr)
            elif opt is None:
                if crossings is not None:
                    record(step, _probs(proxy, x, target, objective))
                with torch.no_grad():
                    x.add_(sign_noise(gens, x.shape[1:]).to(x.device), alpha=lr)
            else:
                _, grad, prob = score_and_grad(score, x, target, aux=True)
                record(step, prob)
                x.grad = grad.neg_()   # ascend the score: descend its negative
                opt.step()
            with torch.no_grad():
                if norm == "none":
                    x.clamp_(lo, hi)  # in place: the common case costs one pass
                else:
                    x.copy_(project(x, start, norm, eps, bounds))
            step += 1
        if step == levels[-1] and crossings is not None:   # the last outputs get no step: score them once
            record(step, _probs(proxy, x, target, objective))
        yield Level(step, x.detach().clone())


@torch.no_grad()
def _probs(proxy, x, target, objective) -> torch.Tensor:
    return map_fixed(lambda xc, tc: proxy.score_and_prob(xc, tc, objective)[1], x.detach(), target)


# Settings other sources share with pixel ascent.
START = Setting(str, "real", STARTS, doc="real test digits of another class, uniform noise, or the mean digit")
OBJECTIVE = Setting(str, "logit", OBJECTIVES, doc="ascend the target logit or its log-probability")


def ascent_run(ascend):
    """The run of an ascent from the declared starts over log levels up to max_steps,
    pressure = steps x lr: `ascend(ctx, x0, target, levels, settings)` yields Levels."""
    def run(ctx: Context, s: dict) -> Trajectory:
        x0, target = make_starts(ctx.domain, s["start"], ctx.n, ctx.seed)
        x0, target = x0.to(ctx.device), target.to(ctx.device)
        levels = ascend(ctx, x0, target, ctx.step_levels(s["max_steps"]), s)
        return Trajectory(x0.cpu(), target.cpu(), (level.cpu() for level in levels), s["lr"])
    return run


run = ascent_run(pixel_ascent)


PIXEL_ASCENT = Source(
    name="pixel_ascent",
    knob="steps",
    pressure="steps x lr",
    doc="gradient ascent on pixels toward the proxy's target class; PGD with a budget",
    run=run,
    iterative=True,
    settings={
        "start": START,
        "lr": Setting(float, 0.01, minimum=1e-12, maximum=MAX_LR, doc="step size"),
        "max_steps": Setting(int, 2048, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
        "optimizer": Setting(str, "adam", OPTIMIZERS, doc="adam; sgd (steps follow the gradient's size); "
                             "random_sign (control: +-lr per pixel, random signs, no proxy); steepest "
                             "(PGD: lr sign(grad), or lr grad / ||grad|| under an l2 budget)"),
        "objective": OBJECTIVE,
        "norm": Setting(str, "none", NORMS, doc="budget norm; 'none' is free ascent"),
        "eps": Setting(float, 0.0, minimum=0.0, doc="budget radius (pixels in [0, 1])"),
    },
    check=lambda s, dom: ("eps: must be > 0 when norm is 'l2' or 'linf'"
                          if s["norm"] != "none" and s["eps"] <= 0 else None),
    queries=lambda s, k, n: (0.0, 0.0) if s["optimizer"] == "random_sign" else (k, k),
)
