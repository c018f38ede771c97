"""Pressure sources: ways of applying optimization pressure against a frozen model.

Each source declares its settings (type, default, allowed values) so suite files can be
validated before anything runs, and a `trajectory` function that yields the outputs at
every pressure level. Sources know nothing about metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from optbench.pressure.budget import NORMS
from optbench.pressure.pixel_ascent import OBJECTIVES, OPTIMIZERS, log_levels, pixel_ascent
from optbench.pressure.starts import STARTS, make_starts


@dataclass(frozen=True)
class Setting:
    kind: type                      # int, float, str or bool
    default: Any
    allowed: tuple = ()             # for strings
    minimum: float | None = None    # inclusive lower bound for numbers
    doc: str = ""


@dataclass
class Trajectory:
    start: torch.Tensor             # (n, ...) starting points, for distance-from-start
    target: torch.Tensor            # (n,) target class
    levels: Iterator[tuple[int, torch.Tensor]]  # (knob value, outputs) per level
    knob_scale: float = 1.0         # pressure = knob * knob_scale (e.g. steps x lr)


@dataclass(frozen=True)
class Source:
    name: str
    knob: str
    pressure: str
    doc: str
    settings: dict[str, Setting] = field(default_factory=dict)
    check: Callable[[dict], str | None] = lambda s: None   # cross-field rules
    trajectory: Callable[..., Trajectory] | None = None


def _pixel_ascent_trajectory(proxy: torch.nn.Module, domain: str, n: int, seed: int,
                             s: dict) -> Trajectory:
    x0, target = make_starts(domain, s["start"], n, seed)
    device = next(proxy.parameters()).device
    x0, target = x0.to(device), target.to(device)
    levels = pixel_ascent(proxy, x0, target, log_levels(s["max_steps"]), lr=s["lr"],
                          optimizer=s["optimizer"], objective=s["objective"],
                          norm=s["norm"], eps=s["eps"])
    return Trajectory(x0.cpu(), target.cpu(), ((k, x.cpu()) for k, x in levels), s["lr"])


PIXEL_ASCENT = Source(
    name="pixel_ascent",
    knob="steps",
    pressure="steps x lr",
    doc="gradient ascent on pixels toward the proxy's target class; PGD with a budget",
    settings={
        "start": Setting(str, "real", STARTS, doc="real test digits of another class, uniform noise, or the mean digit"),
        "lr": Setting(float, 0.01, minimum=1e-12, doc="step size"),
        "max_steps": Setting(int, 2048, minimum=1, doc="last level; levels are 0, 1, 2, 4, ..."),
        "optimizer": Setting(str, "adam", OPTIMIZERS),
        "objective": Setting(str, "logit", OBJECTIVES, doc="ascend the target logit or its log-probability"),
        "norm": Setting(str, "none", NORMS, doc="budget norm; 'none' is free ascent"),
        "eps": Setting(float, 0.0, minimum=0.0, doc="budget radius (pixels in [0, 1])"),
    },
    check=lambda s: ("eps: must be > 0 when norm is 'l2' or 'linf'"
                     if s["norm"] != "none" and s["eps"] <= 0 else None),
    trajectory=_pixel_ascent_trajectory,
)

SOURCES: dict[str, Source] = {PIXEL_ASCENT.name: PIXEL_ASCENT}
