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


def guided_samples(unet, labels: torch.Tensor, x_T: torch.Tensor, scales: list[float],
                   guidance: str, clip: str, steps: int, base: str = "cond",
                   classifier=None, interval=(0.0, 1e9), precision: str = "fp32",
                   chunk: int = CHUNK, bounds=(0.0, 1.0)) -> Iterator[tuple[float, torch.Tensor]]:
    """Yield (scale, outputs in the domain's value range `bounds`, not clipped) for each
    guidance scale; the model works in [-1, 1].
    Every scale starts from the same x_T, so differences come from the scale alone.
    Samples run in chunks of one fixed shape (zero-padded), so a sample is bit-identical
    alone or in any batch on one machine (models/fixed_batch.py)."""
    scheduler = make_ddim(clip, getattr(unet, "scheduler_config", None))
    for scale in scales:
        outs = []
        for i, j in chunks(len(x_T), chunk):
            lab, xT = pad_rows(labels[i:j], chunk), pad_rows(x_T[i:j], chunk)
            if guidance == "cfg":
                fn = cfg_eps(unet, lab, scale, interval, precision)
            else:
                fn = classifier_eps(unet, classifier, scheduler, lab, scale, base, interval, precision)
            outs.append(ddim_sample(fn, xT, scheduler, steps, clip)[:j - i])
        yield scale, to_pixels(torch.cat(outs), bounds)
