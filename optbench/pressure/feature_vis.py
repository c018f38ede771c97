"""Feature visualization's ascent: the "maximally X image" as interpretability practice
makes it, not raw pixel ascent. The image is optimized through a decorrelated Fourier
parameterization, scored under random transformations (transformation robustness),
with optional total-variation and L2 penalties (Olah et al. 2017, "Feature
Visualization", Distill; Mordvintsev et al. 2018, "Differentiable Image
Parameterizations"; as in lucid and its PyTorch port lucent).

Fourier parameterization (lucid's fft_image, lucent param/spatial.py):
    x = lo + (hi - lo) * sigmoid(irfft2(s * c, norm="ortho") / 4),
    s(f) = 1 / max(|f|, 1 / max(h, w)) ** decay_power
so an Adam step on the spectrum c moves every frequency by a similar share of image
energy (natural images have a 1/f spectrum) instead of favouring the highest ones.
One channel has no colour to decorrelate (lucid's colour step applies to RGB only).

Transformations: per step and per sample, a jitter of up to `jitter` pixels, a scale in
[1 - scale, 1 + scale) (scale < 1) and a rotation in [-rotate, rotate] degrees, applied with
kornia's affine warp; the draws come from the sample's own generator, so a sample's
trajectory is the same alone or in any batch (chunks of one fixed shape, as pixel ascent).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from optbench.models.fixed_batch import map_fixed, score_and_grad
from optbench.pressure.pixel_ascent import OBJECTIVE, ascent_run
from optbench.pressure.source import MAX_LR, MAX_STEPS, Context, Level, Setting, Source
from optbench.pressure.starts import STARTS
from optbench.proxies import as_proxy
from optbench.rng import sample_torch

PARAMETERIZATIONS = ("fourier", "pixel")
MAGIC = 4.0            # lucid's divisor of the spatial image ("reduces saturation")
EDGE = 1e-3            # a real start is pulled this far inside the bounds (sigmoid's range is open)
TRANSFORM_STREAM = 11  # keeps the transforms' draws apart from other per-sample streams


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """(h, w // 2 + 1): 1 / max(|f|, 1 / max(h, w)) ** decay_power over rfft2's frequencies."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return torch.from_numpy(1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power).float()


class FourierImage:
    """Images of `shape` (c, h, w) in `bounds` from a spectrum (n, c, h, w // 2 + 1, 2),
    real and imaginary parts last (lucent's layout)."""

    def __init__(self, shape, decay_power: float = 1.0, bounds=(0.0, 1.0)):
        self.shape, self.bounds = tuple(shape), bounds
        self.scale = spectrum_scale(shape[-2], shape[-1], decay_power)[..., None]

    def spatial(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid image: lucent's fft_image output for the same spectrum."""
        z = torch.view_as_complex((self.scale.to(spectrum.device) * spectrum).contiguous())
        return torch.fft.irfftn(z, s=self.shape[-2:], norm="ortho") / MAGIC

    def image(self, spectrum: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return lo + (hi - lo) * torch.sigmoid(self.spatial(spectrum))

    def spectrum_of(self, x: torch.Tensor) -> torch.Tensor:
        """The spectrum whose image is x (pulled EDGE inside the bounds): a real start."""
        lo, hi = self.bounds
        u = ((x - lo) / (hi - lo)).clamp(EDGE, 1 - EDGE)
        z = torch.fft.rfftn(torch.logit(u) * MAGIC, dim=(-2, -1), norm="ortho")
        return torch.view_as_real(z) / self.scale.to(x.device)


def draw_transforms(seed: int, samples, steps: int, jitter: int, scale: float, rotate: float) -> torch.Tensor:
    """(steps, n, 4): per step and sample (dx, dy, log scale, angle in degrees), sample
    i's (of the indices `samples`) from its own generator. All zeros is the identity, so the zero rows that pad a
    chunk (models/fixed_batch.py) are left alone (a zero scale would be singular)."""
    u = torch.stack([torch.rand(steps, 4, generator=sample_torch(seed, i, TRANSFORM_STREAM)) for i in samples], 1)
    shift = torch.round((u[..., :2] * 2 - 1) * jitter)
    return torch.cat([shift, torch.log1p((u[..., 2:3] * 2 - 1) * scale), (u[..., 3:4] * 2 - 1) * rotate], -1)


def transform(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply each sample's (dx, dy, log scale, angle) about the image centre; edge
    pixels extend outward (the background of a digit or a face is its border)."""
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine
    if not params.any():
        return x
    h, w = x.shape[-2:]
    centre = torch.tensor([[(w - 1) / 2, (h - 1) / 2]], device=x.device).expand(len(x), 2)
    m = get_affine_matrix2d(params[:, :2], centre, params[:, 2:3].exp().expand(-1, 2), params[:, 3])
    return warp_affine(x, m[:, :2], (h, w), padding_mode="border", align_corners=True)


def penalties(x: torch.Tensor, tv: float, l2: float, bounds) -> torch.Tensor:
    """Per sample: tv * mean |finite difference| + l2 * mean (x - mid)^2 (mid of the bounds)."""
    out = torch.zeros(len(x), device=x.device)
    if tv:
        from kornia.losses import total_variation
        out = out + tv * total_variation(x, reduction="mean").reshape(len(x), -1).mean(1)
    if l2:
        out = out + l2 * (x - sum(bounds) / 2).pow(2).flatten(1).mean(1)
    return out


def feature_vis_ascent(ctx: Context, start: torch.Tensor, target: torch.Tensor, levels: list[int], s: dict,
                       sample_ids: list[int] | None = None) -> Iterator[Level]:
    """Yield a Level (steps, images) at every level, with FEATURE_VIS's settings `s`.
    Each step: Adam on the parameters (spectrum, or pixels clamped to the bounds)
    ascending score(T(x)) - penalties(x), T this step's random transformation.
    `ctx.crossings` records the untransformed image's proxy probability, a measurement
    outside the optimizer's query count. Row r draws its transformations as sample
    sample_ids[r] of ctx.seed (default: r)."""
    param, lr, objective = s["param"], s["lr"], s["objective"]
    tv, l2, bounds, crossings = s["tv"], s["l2"], ctx.bounds, ctx.crossings
    if param not in PARAMETERIZATIONS:
        raise ValueError(f"param: unknown {param!r}; allowed: {', '.join(PARAMETERIZATIONS)}")
    proxy = as_proxy(ctx.proxy)
    fourier = FourierImage(start.shape[1:], s["decay_power"], bounds) if param == "fourier" else None
    # FFTs of a (1, ...) and a (12, ...) batch round differently: every FFT outside
    # score_and_grad also runs on fixed-shape chunks
    p = (map_fixed(fourier.spectrum_of, start) if fourier else start.clone()).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    ids = range(len(start)) if sample_ids is None else sample_ids
    moves = draw_transforms(ctx.seed, ids, max(levels), s["jitter"], s["scale"], s["rotate"]).to(start.device)

    def image(q):
        return fourier.image(q) if fourier else q

    def images(q):
        return map_fixed(fourier.image, q) if fourier else q

    def objective_fn(q, t, move):
        x = image(q)
        return proxy.score_and_prob(transform(x, move), t, objective)[0] - penalties(x, tv, l2, bounds)

    def record(step: int) -> None:
        if crossings is not None:
            with torch.no_grad():
                x = images(p.detach())
                prob = map_fixed(lambda xc, tc: proxy.score_and_prob(xc, tc, objective)[1], x, target)
            crossings.update(step, prob, lambda mask: x[mask.to(x.device)])

    step = 0
    for level in levels:
        while step < level:
            record(step)
            _, grad = score_and_grad(objective_fn, p, target, moves[step])
            p.grad = grad.neg_()
            opt.step()
            if not fourier:
                with torch.no_grad():
                    p.clamp_(*bounds)
            step += 1
        if step == levels[-1]:
            record(step)
        with torch.no_grad():
            out = images(p.detach()).clone()
        yield Level(step, out)   # outside no_grad: the caller's grad mode must not change while suspended


run = ascent_run(feature_vis_ascent)


FEATURE_VIS = Source(
    name="feature_vis",
    knob="steps",
    pressure="steps x lr",
    doc="feature visualization's ascent (lucid / lucent): the image through a decorrelated "
        "Fourier parameterization, scored under random jitter, scale and rotation, with "
        "optional total-variation and L2 penalties; each prior is a setting",
    run=run,
    iterative=True,
    settings={
        "start": Setting(str, "real", STARTS, doc="as pixel ascent's; a real start is mapped into the "
                         "parameterization (pulled 0.001 inside the bounds)"),
        "lr": Setting(float, 0.05, minimum=1e-12, maximum=MAX_LR, doc="Adam step size on the parameters (lucid's 0.05)"),
        "max_steps": Setting(int, 512, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
        "objective": OBJECTIVE,
        "param": Setting(str, "fourier", PARAMETERIZATIONS, doc="fourier: 1/f-scaled spectrum through a "
                         "sigmoid; pixel: raw pixels clamped to the bounds"),
        "decay_power": Setting(float, 1.0, minimum=0.0, doc="spectrum scale 1 / |f| ** decay_power"),
        "jitter": Setting(int, 0, minimum=0, maximum=1024, doc="random shift of up to this many pixels each step (0: off)"),
        "scale": Setting(float, 0.0, minimum=0.0, doc="random scale in [1 - scale, 1 + scale] each step (0: off; < 1)"),
        "rotate": Setting(float, 0.0, minimum=0.0, doc="random rotation in [-rotate, rotate] degrees (0: off)"),
        "tv": Setting(float, 0.0, minimum=0.0, doc="total-variation penalty weight (mean |difference|)"),
        "l2": Setting(float, 0.0, minimum=0.0, doc="L2 penalty weight (mean squared distance from mid-grey)"),
    },
    check=lambda s, dom: (f"domain: feature_vis needs an image domain, {dom.name!r} is not" if not dom.is_image
                          else "scale: must be < 1" if s["scale"] >= 1 else None),
    queries=lambda s, k, n: (k, k),
)
