"""Diffusion guidance as a pressure source: DDIM sampling (Song et al. 2021) from the
shipped class-conditional UNet, with the guidance scale as the knob.

classifier-free (Ho and Salimans 2022, eq. 6, written as in DESIGN.md):
    eps = eps(x_t, null) + w * (eps(x_t, y) - eps(x_t, null))
    w = 0 is unconditional, w = 1 conditional; Ho and Salimans' w is this w minus 1.
classifier (Dhariwal and Nichol 2021, Algorithm 2 / eq. 14):
    eps_hat = eps(x_t, c) - sqrt(1 - abar_t) * s * grad_x log p(y | x_t)
    with c = y (conditional model) or the null label (unconditional model).
An optional interval restricts guidance to timesteps lo <= t <= hi (Kynkaanniemi et
al. 2024); outside it CFG uses w = 1 and classifier guidance s = 0.

Clipping is a declared setting, because it changes how outputs leave the data:
    none      clip_sample=False: pixels may leave [-1, 1]
    clip_eps  clip x0-hat to [-1, 1] and re-derive eps from it (use_clipped_model_output)
    clip      clip x0-hat only: diffusers' default for a DDIM built from a DDPM config;
              it breaks CFG at small w, kept to reproduce that failure
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from optbench.models.diffusion import SCHEDULER_CONFIG, null_class, to_pixels
from optbench.models.fixed_batch import CHUNK, chunks, pad_rows
from optbench.pressure.source import TIMESTEPS, Context, Level, Setting, Source, Trajectory
from optbench.rng import sample_torch

CLIPPING = ("none", "clip_eps", "clip")
GUIDANCE = ("cfg", "classifier")
BASE_MODELS = ("cond", "uncond")
PRECISIONS = ("fp32", "bf16")


def make_ddim(clip: str, config: dict | None = None):
    """DDIM from a DDPM training config: the shipped one, or a diffusers model folder's
    own scheduler config (models/checkpoints.py attaches it to the UNet it loads)."""
    from diffusers import DDIMScheduler, DDPMScheduler
    if clip not in CLIPPING:
        raise ValueError(f"unknown clipping {clip!r}; allowed: {', '.join(CLIPPING)}")
    base = DDPMScheduler(**SCHEDULER_CONFIG).config if config is None else DDPMScheduler.from_config(config).config
    return DDIMScheduler.from_config(base, clip_sample=clip != "none")


def initial_noise(n: int, seed: int, shape=(1, 28, 28)) -> torch.Tensor:
    """x_T of the domain's `shape`, with one generator per sample: sample i is the same
    in any batch."""
    return torch.stack([torch.randn(shape, generator=sample_torch(seed, i)) for i in range(n)])


def ddim_sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x_T: torch.Tensor,
                scheduler, steps: int, clip: str, grad_last: int | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from x_T with a noise predictor eps_fn(x_t, t). With
    `grad_last`, autograd records only the last grad_last steps (DRaFT-K); without, the
    caller's grad mode holds throughout."""
    scheduler.set_timesteps(steps)
    x = x_T * scheduler.init_noise_sigma
    timesteps = list(scheduler.timesteps)
    for i, t in enumerate(timesteps):
        window = contextlib.nullcontext() if grad_last is None else \
            torch.set_grad_enabled(i >= len(timesteps) - grad_last)
        with window:
            eps = eps_fn(x, t)
            x = scheduler.step(eps, t, x, eta=0.0, use_clipped_model_output=clip == "clip_eps").prev_sample
    return x


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cfg_eps(unet, labels: torch.Tensor, w: float, interval: tuple[float, float], precision: str):
    """Classifier-free guided noise prediction; one UNet call on the doubled batch."""
    null = torch.full_like(labels, null_class(unet))

    def eps_fn(x, t):
        w_t = w if interval[0] <= float(t) <= interval[1] else 1.0
        with torch.no_grad(), _autocast(x.device, precision):
            if w_t == 1.0:
                return unet(x, t, class_labels=labels).sample.float()
            if w_t == 0.0:
                return unet(x, t, class_labels=null).sample.float()
            both = unet(torch.cat([x, x]), t, class_labels=torch.cat([null, labels])).sample.float()
        eps_u, eps_c = both.chunk(2)
        return eps_u + w_t * (eps_c - eps_u)
    return eps_fn


def classifier_eps(unet, classifier, scheduler, labels: torch.Tensor, s: float, base: str,
                   interval: tuple[float, float], precision: str):
    """Classifier-guided noise prediction (Dhariwal and Nichol 2021, eq. 14)."""
    cond = labels if base == "cond" else torch.full_like(labels, null_class(unet))

    def eps_fn(x, t):
        with torch.no_grad(), _autocast(x.device, precision):
            eps = unet(x, t, class_labels=cond).sample.float()
        s_t = s if interval[0] <= float(t) <= interval[1] else 0.0
        if s_t == 0.0:
            return eps
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            tt = torch.full((len(x),), int(t), device=x.device)
            logp = classifier(xg, tt).log_softmax(1).gather(1, labels[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, xg)
        abar = scheduler.alphas_cumprod[int(t)].to(x.device)
        return eps - (1 - abar).sqrt() * s_t * grad
    return eps_fn


def guided_samples(unet, labels: torch.Tensor, x_T: torch.Tensor, s: dict, classifier=None,
                   bounds=(0.0, 1.0), chunk: int = CHUNK) -> Iterator[Level]:
    """Yield a Level (scale, outputs in the domain's value range `bounds`, not clipped)
    for each guidance scale of GUIDANCE_SOURCE's settings `s` (guidance, base, clip,
    scales, ddim_steps, interval_lo/hi, precision); the model works in [-1, 1].
    `classifier`: the noise-aware classifier of classifier guidance.
    Every scale starts from the same x_T, so differences come from the scale alone.
    Samples run in chunks of one fixed shape (zero-padded), so a sample is bit-identical
    alone or in any batch on one machine (models/fixed_batch.py)."""
    clip, precision = s["clip"], s["precision"]
    interval = (s["interval_lo"], s["interval_hi"])
    scheduler = make_ddim(clip, getattr(unet, "scheduler_config", None))
    for scale in s["scales"]:
        outs = []
        for i, j in chunks(len(x_T), chunk):
            lab, xT = pad_rows(labels[i:j], chunk), pad_rows(x_T[i:j], chunk)
            if s["guidance"] == "cfg":
                fn = cfg_eps(unet, lab, scale, interval, precision)
            else:
                fn = classifier_eps(unet, classifier, scheduler, lab, scale, s["base"], interval, precision)
            outs.append(ddim_sample(fn, xT, scheduler, s["ddim_steps"], clip)[:j - i])
        yield Level(scale, to_pixels(torch.cat(outs), bounds))


def run(ctx: Context, s: dict) -> Trajectory:
    unet = ctx.model(s["generator"])
    clf = ctx.model(s["classifier"]) if s["guidance"] == "classifier" else None
    labels = (torch.arange(ctx.n) % ctx.domain.num_classes).to(ctx.device)       # balanced classes
    x_T = initial_noise(ctx.n, ctx.seed, ctx.domain.shape).to(ctx.device)
    levels = guided_samples(unet, labels, x_T, s, clf, bounds=ctx.bounds)
    first = next(levels).cpu()

    def all_levels():  # the lowest scale is also the "start" distances are measured from
        yield first
        for level in levels:
            yield level.cpu()
    return Trajectory(first.x, labels.cpu(), all_levels())


def _models(s: dict) -> tuple[str, ...]:
    return (s["generator"], s["classifier"]) if s["guidance"] == "classifier" else (s["generator"],)


def _queries(s: dict, scale: float, n: int) -> tuple[float, float]:
    """Classifier guidance queries its noise-aware classifier (forward and backward) at
    every DDIM step inside the interval; CFG queries no classifier (it pushes against the
    diffusion model's own implicit one), so 0."""
    if s["guidance"] != "classifier" or scale == 0:
        return 0.0, 0.0
    sched = make_ddim(s["clip"])
    sched.set_timesteps(s["ddim_steps"])
    k = sum(s["interval_lo"] <= int(t) <= s["interval_hi"] for t in sched.timesteps)
    return float(k), float(k)


def _check(s: dict, dom) -> str | None:
    if s["guidance"] == "cfg" and s["base"] != "cond":
        return "base: classifier-free guidance needs base = 'cond'"
    if s["interval_lo"] > s["interval_hi"]:
        return "interval_lo: must be <= interval_hi"
    return None


GUIDANCE_SOURCE = Source(
    name="guidance",
    knob="scale",
    pressure="guidance scale",
    doc="DDIM sampling from the class-conditional diffusion model with classifier-free or "
        "classifier guidance at each scale",
    run=run,
    # Each scale is sampled afresh from the same x_T: no steps to stop a sample at, so
    # equal-proxy comparisons read its curve between scales.
    iterative=False,
    settings={
        "guidance": Setting(str, "cfg", GUIDANCE, doc="cfg: eps_u + w (eps_c - eps_u); classifier: Dhariwal-Nichol"),
        "base": Setting(str, "cond", BASE_MODELS, doc="classifier guidance on the conditional model or the unconditional (null label) one"),
        "clip": Setting(str, "none", CLIPPING, doc="none, clip_eps (clip x0 and re-derive eps) or clip (diffusers' DDIM default)"),
        "scales": Setting(list, [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0], minimum=0.0, doc="guidance scales, the pressure levels"),
        "ddim_steps": Setting(int, 25, minimum=1, maximum=TIMESTEPS, doc="DDIM sampling steps"),
        "interval_lo": Setting(int, 0, minimum=0, maximum=TIMESTEPS - 1, doc="guide only at timesteps >= this (Kynkaanniemi et al. 2024)"),
        "interval_hi": Setting(int, 999, minimum=0, maximum=TIMESTEPS - 1, doc="guide only at timesteps <= this"),
        "precision": Setting(str, "fp32", PRECISIONS, doc="bf16 autocasts the UNet"),
        "generator": Setting(str, "diffusion_unet", doc="the domain's diffusion model (a UNet, or any module "
                             "called as model(x_t, t, class_labels=y).sample)", omit_default=True),
        "classifier": Setting(str, "noisy_classifier", doc="the noise-aware classifier of classifier "
                              "guidance, called as classifier(x_t, t)", omit_default=True),
    },
    check=_check,
    models=_models,
    queries=_queries,
    goodhart_law=None,   # a guidance scale is no distance: no Goodhart fit
    figure_row="every",  # the reference drawn in every row of the equal-proxy figure
)
