"""Source declarations for pressure through a GAN generator: latent ascent, generator
fine-tuning (their algorithms are in generator.py), best-of-n and the quantilizer (the
last two select from one pool; their estimators are in selection.py)."""
from __future__ import annotations

import math

import numpy as np
import torch

from optbench.models.fixed_batch import in_batches
from optbench.models.gan import generate, sample_latents
from optbench.pressure.generator import generator_finetune, latent_ascent
from optbench.pressure.pool import GeneratorPool
from optbench.pressure.pixel_ascent import OBJECTIVES
from optbench.pressure.source import MAX_LR, MAX_STEPS, Context, Level, Setting, Source, Trajectory
from optbench.pressure.selection import (best_of_n_kl_bound, best_of_n_pool_weights, diverged_lowest,
                                         diverged_members, effective_sample_size, quantile_weights,
                                         selection_levels, subpool_best)


def _generator(ctx: Context, s: dict) -> torch.nn.Module:
    return ctx.model(s["generator"])


def _balanced_targets(ctx: Context) -> torch.Tensor:
    """Target class per sample (i mod classes); zeros for a proxy without classes."""
    return ctx.proxy.targets(ctx.n, ctx.domain.num_classes)


def _latent_run(ctx: Context, s: dict) -> Trajectory:
    G = _generator(ctx, s)
    z0 = sample_latents(ctx.n, ctx.seed, G.latent_dim).to(ctx.device)
    target = _balanced_targets(ctx)
    levels = latent_ascent(ctx, G, z0, target.to(ctx.device), ctx.step_levels(s["max_steps"]), s)
    start = generate(G, z0).cpu()
    return Trajectory(start, target, (level.cpu() for level in levels), s["lr"])


def _finetune_run(ctx: Context, s: dict) -> Trajectory:
    G = _generator(ctx, s)
    z_eval = sample_latents(ctx.n, ctx.seed, G.latent_dim).to(ctx.device)
    target = torch.full((ctx.n,), s["target_class"]) if ctx.proxy.has_classes else _balanced_targets(ctx)
    levels = generator_finetune(ctx, G, z_eval, target.to(ctx.device), ctx.step_levels(s["max_steps"]), s)
    start = generate(G, z_eval).cpu()
    return Trajectory(start, target, (level.cpu() for level in levels), s["lr"])


def _chunk_scores(proxy, chunk: torch.Tensor, objective: str) -> tuple[np.ndarray, np.ndarray]:
    out = in_batches(proxy, chunk, 1024, proxy.device)
    scores = proxy.selection_scores(out, objective).double().numpy()
    finite = (torch.isfinite(chunk.flatten(1)).all(1) & proxy.finite(out)).numpy()
    return scores, diverged_members(scores, finite)


def pool_scores(proxy, pool: GeneratorPool, objective: str) -> tuple[np.ndarray, np.ndarray]:
    """(targets, N) selection scores, one row per target the proxy's kind has (one per
    class for a classifier, one for a discriminator), with every diverged member ranked
    lowest; and (N,) whether each member diverged (non-finite pixels, proxy output or
    score). The one place that decides both: the runner's weighted means read the mask."""
    parts = [_chunk_scores(proxy, chunk, objective) for chunk in pool.chunks()]
    diverged = np.concatenate([d for _, d in parts])
    return diverged_lowest(np.concatenate([p for p, _ in parts], 1), diverged), diverged


def _selection_run(mode: str):
    def run(ctx: Context, s: dict) -> Trajectory:
        N, n, seed = s["pool_size"], ctx.n, ctx.seed
        if N < n:
            raise ValueError(f"pool_size: must be >= n_samples ({n}), got {N}")
        G = _generator(ctx, s)
        pool = GeneratorPool(G, N, seed, ctx.device)
        scores, diverged = pool_scores(ctx.proxy, pool, s["objective"])
        n_diverged = int(diverged.sum())
        T = len(scores)
        slot_target = np.arange(n) % T
        subpool = N // n   # best-of-n draws from disjoint sub-pools are exact up to this n

        if mode == "best_of_n":
            grid = selection_levels(N)
        else:  # 1/q = N / k for each distinct top-k size, so every level is a different selection
            grid = [N / k for k in sorted({math.ceil(N / v) for v in selection_levels(N)}, reverse=True)]

        def levels():
            for level in grid:
                # seeded by the level (best-of-n) or by the top-k size (quantilizer)
                rng = np.random.default_rng([seed, level if mode == "best_of_n" else round(N / level)])
                if mode == "best_of_n":
                    W = np.stack([best_of_n_pool_weights(scores[t], level) for t in range(T)])
                    kl = best_of_n_kl_bound(level)
                    if level <= subpool:
                        rows = np.stack([scores[slot_target[j], j * subpool:(j + 1) * subpool] for j in range(n)])
                        idx, exact = subpool_best(rows, level, subpool), True
                    else:  # draws from this pool's selection law; too few distinct for set metrics
                        idx = np.array([rng.choice(N, p=W[t]) for t in slot_target])
                        exact = False
                else:
                    W = np.stack([quantile_weights(scores[t], level) for t in range(T)])
                    kl = math.log(level)     # exact: uniform on the top k = N q samples, KL = log(N / k)
                    k = int((W[0] > 0).sum())
                    exact = k >= np.bincount(slot_target).max()
                    idx = np.empty(n, dtype=int)
                    for t in range(T):
                        slots = np.flatnonzero(slot_target == t)
                        top = np.flatnonzero(W[t] > 0)
                        idx[slots] = rng.choice(top, size=len(slots), replace=not exact)
                # The exact chance that the selected sample diverged, and how many finite
                # pool samples the weighted per-sample means rest on (least over targets).
                lost = float(np.mean([w[diverged].sum() for w in W]))
                finite_w = W * ~diverged
                ess = min(effective_sample_size(w) if w.any() else 0.0 for w in finite_w)
                values = {"kl": kl, "sqrt_kl": math.sqrt(kl), "ess": ess, "pool_diverged": n_diverged,
                          "diverged_frac": lost}
                if ess < s["min_ess"]:
                    # Too few samples carry this level (best-of-n at n = N: one per target).
                    # The runner averages every per-sample metric with these weights, so NaN
                    # weights report them all as NaN; set metrics follow `exact` as before.
                    W = np.full_like(W, np.nan)
                yield Level(level, pool.rows(idx), weights=W, set_valid=exact, values=values)

        # Outputs are pool members, not moved from a start: no distance from one.
        first = pool.rows(np.arange(n))
        return Trajectory(first, torch.from_numpy(slot_target), levels(), has_start=False,
                          pool=pool, pool_targets=tuple(range(T)), pool_diverged=diverged)
    return run


GENERATOR = Setting(str, "gan_generator", doc="the generator checkpoint of the domain")


def _generator_models(s: dict) -> tuple[str, ...]:
    return (s["generator"],)


LATENT_ASCENT = Source(
    name="latent_ascent",
    knob="steps",
    pressure="steps x lr",
    doc="Adam on the generator's latent z toward the proxy: a classifier's target class "
        "(balanced targets) or a discriminator's real logit; generator frozen",
    run=_latent_run,
    iterative=True,
    values={"latent_l2": "mean L2 distance of the latents from their start (the source's distance d)",
            "latent_norm": "mean L2 norm of the latents"},
    settings={
        "generator": GENERATOR,
        "lr": Setting(float, 0.05, minimum=1e-12, maximum=MAX_LR, doc="step size on z"),
        "max_steps": Setting(int, 1024, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
        "objective": Setting(str, "logit", OBJECTIVES, doc="ascend the logit or its log-probability (log sigmoid for a discriminator)"),
    },
    models=_generator_models,
    distance="latent_l2",
    queries=lambda s, k, n: (k, k),
)

GENERATOR_FINETUNE = Source(
    name="generator_finetune",
    knob="steps",
    pressure="fine-tune steps",
    doc="keep training the generator's weights against the frozen proxy (a discriminator: "
        "the GAN generator loss with D frozen; a classifier: one target class)",
    run=_finetune_run,
    iterative=True,
    values={"param_l2": "L2 norm of the change in the generator's weights (the source's distance d)"},
    settings={
        "generator": GENERATOR,
        "lr": Setting(float, 2e-4, minimum=1e-12, maximum=MAX_LR, doc="Adam step size (betas 0.5, 0.999 as in DCGAN)"),
        "max_steps": Setting(int, 2048, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
        "batch_size": Setting(int, 64, minimum=1, maximum=2**16, doc="latents per fine-tune step"),
        "objective": Setting(str, "log_prob", OBJECTIVES, doc="log_prob on a discriminator is the non-saturating GAN loss"),
        "target_class": Setting(int, 0, minimum=0, doc="the class pushed for, when the proxy is a classifier"),
    },
    check=lambda s, dom: (f"target_class: must be in 0..{dom.num_classes - 1}, got {s['target_class']}"
                          if s["target_class"] >= dom.num_classes else None),
    models=_generator_models,
    distance="param_l2",
    # batch_size latents per step train the one generator all n outputs come from
    queries=lambda s, k, n: (k * s["batch_size"] / n, k * s["batch_size"] / n),
)

_SELECTION_SETTINGS = {
    "generator": GENERATOR,
    "pool_size": Setting(int, 16384, minimum=2, maximum=2**22, doc="samples in the pool N; n (or 1/q) runs 1 .. N; "
                         "a pool above 65,536 is streamed (any N: one in a million is 1,048,576)"),
    "objective": Setting(str, "log_prob", OBJECTIVES, doc="rank by the proxy's log-probability (= by probability) or its logit"),
    "min_ess": Setting(int, 32, minimum=1, doc="per-sample metrics (proxy and judge probabilities) "
                       "are NaN at levels whose selection weights have a Kish effective sample "
                       "size (1 / sum w^2, recorded as `ess`) below this"),
}

# A selection's values; diverged_frac is also the referee's name (the share of a level's
# outputs that diverged): for a selection it is the exact chance over the pool.
_SELECTION_VALUES = {
    "kl": "KL divergence of the selection from the generator's law (best-of-n: the bound log n - (n-1)/n)",
    "sqrt_kl": "square root of kl (the source's distance d)",
    "ess": "Kish effective sample size of the selection weights (least over targets)",
    "pool_diverged": "pool members that diverged (ranked lowest)",
    "diverged_frac": "exact chance that the selected sample diverged",
}

BEST_OF_N = Source(
    name="best_of_n",
    knob="n",
    pressure="n (KL <= log n - (n-1)/n)",
    doc="keep the best of n generator samples by proxy score; exact order-statistics "
        "estimates over one pool for every n",
    run=_selection_run("best_of_n"),
    # Every level selects afresh from one pool: no steps to stop a sample at.
    iterative=False,
    settings=dict(_SELECTION_SETTINGS),
    values=_SELECTION_VALUES,
    models=_generator_models,
    distance="sqrt_kl",
    goodhart_law="best_of_n",
    queries=lambda s, k, n: (k, 0.0),       # n candidates scored per output
)

QUANTILIZER = Source(
    name="quantilizer",
    knob="inv_q",
    pressure="1/q (KL = log 1/q)",
    doc="sample uniformly from the top q fraction of the pool by proxy score (Taylor 2016)",
    run=_selection_run("quantilizer"),
    iterative=False,
    settings=dict(_SELECTION_SETTINGS),
    values=_SELECTION_VALUES,
    models=_generator_models,
    distance="sqrt_kl",
    goodhart_law="best_of_n",
    figure_row="best_of_n",
    version=2,   # 2: levels are distinct top-k sizes, KL = log(N / k) exactly
    queries=lambda s, k, n: (k, 0.0),       # 1/q candidates scored per accepted output
)
