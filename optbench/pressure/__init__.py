"""Pressure sources: ways of applying optimization pressure against a frozen model.

Each source declares its settings (type, default, allowed values) so suite files can be
validated before anything runs, and a `trajectory` function that yields the outputs at
every pressure level. Sources know nothing about metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import functools

import torch

from optbench.domains import get_domain
from optbench.proxies import Proxy
from optbench.registry import PluginError, Registry
from optbench.pressure.budget import NORMS
from optbench.pressure.crossings import Crossings
from optbench.pressure.guidance import (BASE_MODELS, CLIPPING, GUIDANCE, PRECISIONS, guided_samples, initial_noise,
                                        make_ddim)
from optbench.pressure.pixel_ascent import OBJECTIVES, OPTIMIZERS, log_levels, pixel_ascent
from optbench.pressure.starts import STARTS, make_starts


@dataclass(frozen=True)
class Setting:
    kind: type                      # int, float, str, bool; list = a list of floats
    default: Any
    allowed: tuple = ()             # for strings
    minimum: float | None = None    # inclusive lower bound for numbers
    # Inclusive upper bound: every knob that sizes work has one, checked before anything
    # runs (2**63 - 1 steps was accepted and ran on). Floats are also capped by
    # suite.FLOAT_CEILING: they become float32 tensors.
    maximum: float | None = None
    doc: str = ""
    # A setting added after cells were computed: left out of the cell id (and spec.json)
    # while at its default, so those cells keep their ids.
    omit_default: bool = False


# Ceilings of the knobs that size work (steps, generations) and of step sizes: far
# above any useful value, low enough that a typo fails at once instead of running on.
MAX_STEPS = 2**20
MAX_LR = 1e6
TIMESTEPS = 1000   # the diffusion models' training schedule (models/diffusion.py)


@dataclass
class Trajectory:
    start: torch.Tensor             # (n, ...) starting points, for distance-from-start
    target: torch.Tensor            # (n,) target class
    levels: Iterator[tuple[int, torch.Tensor]]  # (knob value, outputs) per level
    knob_scale: float = 1.0         # pressure = knob * knob_scale (e.g. steps x lr)
    # Selection sources: the whole pool, and the target class of each row of the
    # per-level selection weights; per-sample metrics are then exact weighted means.
    pool: torch.Tensor | None = None
    pool_targets: tuple[int, ...] = ()
    # (N,) pool members that diverged, as the source ranked them (lowest); None: the
    # runner finds them from the pool's pixels and proxy output.
    pool_diverged: Any = None       # (N,) bool numpy array
    # Iterative sources: each sample's output where its proxy probability first reached
    # each equal-proxy threshold; complete once `levels` is exhausted.
    crossings: Crossings | None = None


@dataclass(frozen=True)
class Source:
    name: str
    knob: str
    pressure: str
    doc: str
    settings: dict[str, Setting] = field(default_factory=dict)
    # Cross-field rules on (settings, domain): the problem as "<setting>: ...", or None.
    check: Callable[[dict, Any], str | None] = lambda s, dom: None
    trajectory: Callable[..., Trajectory] | None = None
    models: Callable[[dict], tuple[str, ...]] = lambda s: ()  # checkpoints it loads itself
    distance: str = "l2"            # the metric that is the source's own distance d
    law: str = "rl"                 # Goodhart-law form for its fits: "rl" or "bon"
    # Proxy kinds it can push against: "classifier" and/or "realness" (a discriminator).
    proxy_kinds: tuple[str, ...] = ("classifier", "realness")
    # Bumped when a change alters the numbers of this source only (enters its cell ids).
    version: int = 1
    # (settings, knob value, n samples) -> (forward, backward) passes of the model pushed
    # against, per output sample, spent by the optimizer to reach that level (the
    # benchmark's own measurements, such as equal-proxy crossings, are not counted).
    # Recorded as proxy_forward / proxy_backward in every curve row: a common axis of
    # proxy compute. tests/test_queries.py checks each against a counting toy proxy.
    queries: Callable[[dict, float, int], tuple[float, float]] | None = None


def _pixel_ascent_trajectory(proxy: Proxy, domain: str, n: int, seed: int,
                             s: dict) -> Trajectory:
    x0, target = make_starts(domain, s["start"], n, seed)
    device = proxy.device
    x0, target = x0.to(device), target.to(device)
    crossings = Crossings(n)
    levels = pixel_ascent(proxy, x0, target, log_levels(s["max_steps"]), lr=s["lr"],
                          optimizer=s["optimizer"], objective=s["objective"],
                          norm=s["norm"], eps=s["eps"], crossings=crossings, noise_seed=seed,
                          bounds=get_domain(domain).bounds)
    return Trajectory(x0.cpu(), target.cpu(), ((k, x.cpu()) for k, x in levels), s["lr"],
                      crossings=crossings)


PIXEL_ASCENT = Source(
    name="pixel_ascent",
    knob="steps",
    pressure="steps x lr",
    doc="gradient ascent on pixels toward the proxy's target class; PGD with a budget",
    settings={
        "start": Setting(str, "real", STARTS, doc="real test digits of another class, uniform noise, or the mean digit"),
        "lr": Setting(float, 0.01, minimum=1e-12, maximum=MAX_LR, doc="step size"),
        "max_steps": Setting(int, 2048, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
        "optimizer": Setting(str, "adam", OPTIMIZERS, doc="adam; sgd (steps follow the gradient's size); "
                             "random_sign (control: +-lr per pixel, random signs, no proxy); steepest "
                             "(PGD: lr sign(grad), or lr grad / ||grad|| under an l2 budget)"),
        "objective": Setting(str, "logit", OBJECTIVES, doc="ascend the target logit or its log-probability"),
        "norm": Setting(str, "none", NORMS, doc="budget norm; 'none' is free ascent"),
        "eps": Setting(float, 0.0, minimum=0.0, doc="budget radius (pixels in [0, 1])"),
    },
    check=lambda s, dom: ("eps: must be > 0 when norm is 'l2' or 'linf'"
                     if s["norm"] != "none" and s["eps"] <= 0 else None),
    trajectory=_pixel_ascent_trajectory,
    queries=lambda s, k, n: (0.0, 0.0) if s["optimizer"] == "random_sign" else (k, k),
)

def _feature_vis_trajectory(proxy: Proxy, domain: str, n: int, seed: int, s: dict) -> Trajectory:
    from optbench.pressure.feature_vis import feature_vis_ascent
    x0, target = make_starts(domain, s["start"], n, seed)
    x0, target = x0.to(proxy.device), target.to(proxy.device)
    crossings = Crossings(n)
    levels = feature_vis_ascent(proxy, x0, target, log_levels(s["max_steps"]), s["lr"], s["param"],
                                s["decay_power"], s["jitter"], s["scale"], s["rotate"], s["tv"], s["l2"],
                                s["objective"], seed, crossings, get_domain(domain).bounds)
    return Trajectory(x0.cpu(), target.cpu(), ((k, x.cpu()) for k, x in levels), s["lr"], crossings=crossings)


FEATURE_VIS = Source(
    name="feature_vis",
    knob="steps",
    pressure="steps x lr",
    doc="feature visualization's ascent (lucid / lucent): the image through a decorrelated "
        "Fourier parameterization, scored under random jitter, scale and rotation, with "
        "optional total-variation and L2 penalties; each prior is a setting",
    settings={
        "start": Setting(str, "real", STARTS, doc="as pixel ascent's; a real start is mapped into the "
                         "parameterization (pulled 0.001 inside the bounds)"),
        "lr": Setting(float, 0.05, minimum=1e-12, maximum=MAX_LR, doc="Adam step size on the parameters (lucid's 0.05)"),
        "max_steps": Setting(int, 512, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
        "objective": PIXEL_ASCENT.settings["objective"],
        "param": Setting(str, "fourier", ("fourier", "pixel"), doc="fourier: 1/f-scaled spectrum through a "
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
    trajectory=_feature_vis_trajectory,
    queries=lambda s, k, n: (k, k),
)


def _search_trajectory(algorithm: str):
    def trajectory(proxy: Proxy, domain: str, n: int, seed: int, s: dict) -> Trajectory:
        from optbench.pressure.search import search
        x0, target = make_starts(domain, s["start"], n, seed)
        x0, target = x0.to(proxy.device), target.to(proxy.device)
        crossings = Crossings(n)
        levels = search(proxy, x0, target, log_levels(s["max_generations"]), algorithm, s["population"],
                        s["sigma"], s.get("encoding", "direct"), s.get("mutation_rate", 0.1), s["objective"], seed,
                        get_domain(domain).bounds, crossings)
        return Trajectory(x0.cpu(), target.cpu(), ((k, x.cpu(), info) for k, x, info in levels), 1.0,
                          crossings=crossings)
    return trajectory


def _search_source(algorithm: str, doc: str, version: int = 1, **extra: Setting) -> Source:
    from optbench.pressure.search import queries
    return Source(
        name=algorithm,
        knob="generations",
        pressure="generations",
        doc=doc + "; each sample searches on its own, all populations scored as one batch; "
                  "the output is each sample's best so far",
        settings={
            "start": Setting(str, "real", STARTS, doc="as pixel ascent's (unused by the cppn encoding)"),
            "population": Setting(int, 32, minimum=2, maximum=2**14, doc="candidates per sample per generation"),
            "sigma": Setting(float, 0.1, minimum=1e-12, maximum=MAX_LR, doc="mutation / step size (pixels, or CPPN weights)"),
            "max_generations": Setting(int, 256, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
            "objective": PIXEL_ASCENT.settings["objective"],
            **extra,
        },
        trajectory=_search_trajectory(algorithm),
        queries=lambda s, k, n: (queries(algorithm, s.get("encoding", "direct"), s["population"], k), 0.0),
        version=version,
    )


RANDOM_SEARCH = _search_source("random_search", "(1 + lambda) random search: Gaussian steps around the best so far")
# version 2: the batched separable CMA-ES (version 1 ran the cma package per sample)
CMA_ES = _search_source("cma_es", "separable CMA-ES (Ros and Hansen 2008), batched over samples, in "
                        "pixel space with cma's box transformation", version=2)
GENETIC = _search_source(
    "genetic", "elitist genetic algorithm (Nguyen et al. 2015): tournaments, uniform crossover, Gaussian "
    "mutation, on pixels (direct) or on a CPPN's weights (cppn)",
    encoding=Setting(str, "direct", ("direct", "cppn"), doc="genes are pixels, or the weights of a fixed-topology CPPN"),
    mutation_rate=Setting(float, 0.1, minimum=0.0, doc="probability that a gene mutates"))


def _online_trajectory(proxy: Proxy, domain: str, n: int, seed: int,
                       s: dict) -> Trajectory:
    from optbench.pressure.online import online_pixel_ascent
    x0, target = make_starts(domain, s["start"], n, seed)
    device = proxy.device
    dom = get_domain(domain)
    real_x, real_y = dom.load_split("proxy_train")
    levels = online_pixel_ascent(proxy, x0.to(device), target.to(device), log_levels(s["max_steps"]),
                                 s["lr"], s["objective"], s["retrain_every"], s["retrain_steps"],
                                 s["retrain_lr"], real_x, real_y, seed, bounds=dom.bounds)
    return Trajectory(x0, target, ((k, x.cpu(), info) for k, x, info in levels), s["lr"])


ONLINE_ASCENT = Source(
    name="online_pixel_ascent",
    knob="steps",
    pressure="steps x lr",
    doc="pixel ascent against a copy of the proxy retrained every k steps on its training "
        "data plus the outputs so far as 'not this class' negatives; proxy_prob is the "
        "online proxy's, frozen_proxy_prob the original's",
    settings={
        "start": PIXEL_ASCENT.settings["start"],
        "lr": PIXEL_ASCENT.settings["lr"],
        "max_steps": PIXEL_ASCENT.settings["max_steps"],
        "objective": PIXEL_ASCENT.settings["objective"],
        "retrain_every": Setting(int, 64, minimum=1, maximum=MAX_STEPS, doc="ascent steps between retrainings (k)"),
        "retrain_steps": Setting(int, 32, minimum=0, maximum=2**16, doc="Adam steps per retraining (batch 64 real + 64 negatives)"),
        "retrain_lr": Setting(float, 1e-3, minimum=1e-12, maximum=MAX_LR, doc="the proxy's retraining step size"),
    },
    check=lambda s, dom: (None if "proxy_train" in dom.splits else
                          f"domain: online_pixel_ascent retrains on the proxy_train split, which domain "
                          f"{dom.name!r} does not declare; add proxy_train to its splits"),
    trajectory=_online_trajectory,
    proxy_kinds=("classifier",),   # "not this class" needs classes
    queries=lambda s, k, n: (k, k),   # the ascent's; retraining the copy is not counted
)


@functools.lru_cache(maxsize=8)
def _cached_model(domain: str, name: str, device: str) -> torch.nn.Module:
    from optbench.models.checkpoints import load_model
    return load_model(domain, name, device)


def _guidance_models(s: dict) -> tuple[str, ...]:
    return (s["generator"], s["classifier"]) if s["guidance"] == "classifier" else (s["generator"],)


def _guidance_trajectory(proxy: Proxy, domain: str, n: int, seed: int,
                         s: dict) -> Trajectory:
    device = proxy.device
    dom = get_domain(domain)
    unet = _cached_model(domain, s["generator"], str(device))
    clf = _cached_model(domain, s["classifier"], str(device)) if s["guidance"] == "classifier" else None
    labels = (torch.arange(n) % dom.num_classes).to(device)       # balanced classes
    x_T = initial_noise(n, seed, dom.shape).to(device)
    levels = guided_samples(unet, labels, x_T, s["scales"], s["guidance"], s["clip"],
                            s["ddim_steps"], s["base"], clf, (s["interval_lo"], s["interval_hi"]),
                            s["precision"], bounds=dom.bounds)
    first_scale, first = next(levels)

    def all_levels():  # the lowest scale is also the "start" distances are measured from
        yield first_scale, first.cpu()
        for scale, x in levels:
            yield scale, x.cpu()
    return Trajectory(first.cpu(), labels.cpu(), all_levels(), 1.0)


def _diffusion_finetune_trajectory(proxy: Proxy, domain: str, n: int, seed: int, s: dict) -> Trajectory:
    from optbench.pressure.diffusion_finetune import draft_finetune
    dom = get_domain(domain)
    model = _cached_model(domain, s["generator"], str(proxy.device))
    labels = (torch.arange(n) % dom.num_classes).to(proxy.device)
    x_T = initial_noise(n, seed, dom.shape).to(proxy.device)
    levels = draft_finetune(model, proxy, x_T, labels, log_levels(s["max_steps"]), dom.num_classes, s["lr"],
                            s["batch_size"], s["grad_steps"], s["ddim_steps"], s["weight_l2"], seed, dom.bounds,
                            s["objective"])
    first_step, first, info = next(levels)

    def all_levels():   # level 0 is the original model's samples: the start
        yield first_step, first.cpu(), info
        for k, x, extra in levels:
            yield k, x.cpu(), extra
    return Trajectory(first.cpu(), labels.cpu(), all_levels(), 1.0)


DIFFUSION_FINETUNE = Source(
    name="diffusion_finetune",
    knob="steps",
    pressure="fine-tune steps",
    doc="DRaFT-K: fine-tune the diffusion model's weights to raise the frozen proxy's reward "
        "(its target log-probability; log sigmoid D for a discriminator), backpropagating "
        "through the last K DDIM steps; samples are the model's conditional ones (w = 1)",
    settings={
        "generator": Setting(str, "diffusion_unet", doc="the domain's diffusion model (trainable: not an exact one)"),
        "lr": Setting(float, 1e-4, minimum=1e-12, maximum=MAX_LR, doc="Adam step size on the weights"),
        "max_steps": Setting(int, 64, minimum=1, maximum=2**16, doc="last level; levels are 0, 1, 2, 4, ..."),
        "batch_size": Setting(int, 16, minimum=1, maximum=2**16, doc="samples per fine-tune step"),
        "grad_steps": Setting(int, 1, minimum=1, maximum=TIMESTEPS, doc="K: DDIM steps the reward is backpropagated through"),
        "ddim_steps": Setting(int, 25, minimum=1, maximum=TIMESTEPS, doc="DDIM sampling steps, in training and for the outputs"),
        "weight_l2": Setting(float, 0.0, minimum=0.0, doc="penalty on the squared L2 distance of the weights "
                             "from the original model's"),
        "objective": Setting(str, "log_prob", OBJECTIVES, doc="the reward: log-probability (log sigmoid for D) or logit"),
    },
    check=lambda s, dom: ("grad_steps: must be <= ddim_steps" if s["grad_steps"] > s["ddim_steps"] else None),
    trajectory=_diffusion_finetune_trajectory,
    models=lambda s: (s["generator"],),
    distance="param_l2",
    queries=lambda s, k, n: (k * s["batch_size"] / n, k * s["batch_size"] / n),
)


def _guidance_queries(s: dict, scale: float, n: int) -> tuple[float, float]:
    """Classifier guidance queries its noise-aware classifier (forward and backward) at
    every DDIM step inside the interval; CFG queries no classifier (it pushes against the
    diffusion model's own implicit one), so 0."""
    if s["guidance"] != "classifier" or scale == 0:
        return 0.0, 0.0
    sched = make_ddim(s["clip"])
    sched.set_timesteps(s["ddim_steps"])
    k = sum(s["interval_lo"] <= int(t) <= s["interval_hi"] for t in sched.timesteps)
    return float(k), float(k)


def _guidance_check(s: dict, dom) -> str | None:
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
    check=_guidance_check,
    trajectory=_guidance_trajectory,
    models=_guidance_models,
    queries=_guidance_queries,
    law="",   # a guidance scale is no distance: no Goodhart fit
)

from optbench.pressure.gan_sources import (BEST_OF_N, GENERATOR_FINETUNE, LATENT_ASCENT,  # noqa: E402
                                           QUANTILIZER)

def _source(name: str, obj) -> Source:
    if not isinstance(obj, Source):
        raise PluginError(f"{name!r} is a {type(obj).__name__}, not an optbench.pressure.Source")
    return obj


# Pressure sources by name; a plug-in adds one with SOURCES.register(name, Source(...)),
# and a suite may name one by import path ("mylab.search:ANNEALING").
SOURCES = Registry("pressure source", check=_source)
for _s in (PIXEL_ASCENT, FEATURE_VIS, RANDOM_SEARCH, CMA_ES, GENETIC, ONLINE_ASCENT, GUIDANCE_SOURCE,
           DIFFUSION_FINETUNE, LATENT_ASCENT, GENERATOR_FINETUNE, BEST_OF_N, QUANTILIZER):
    SOURCES.register(_s.name, _s)
