"""The pressure-source interface: every way of applying pressure has one signature,

    source.run(ctx, settings) -> Trajectory

as k-diffusion's samplers share one (model, x, sigmas, callback). `ctx` is the cell's
run (the frozen proxy, the domain, n, the seed, the observer of crossings); `settings`
is a dict holding every declared setting (defaults filled in: `Source.defaults`). The
Trajectory's levels are `Level`s: a knob value, the outputs, and what the runner must
know to score them (selection weights, whether the set is a valid sample, the source's
own declared values). A source knows nothing of metrics: the runner scores each level
with the referee, and refuses a value the source did not declare or one named like a
referee metric.

A plug-in source is one object:

    from optbench.pressure import SOURCES, Level, Setting, Source, Trajectory

    def run(ctx, s):
        x0, target = ...                       # (n, ...) starts and (n,) targets
        def levels():
            for k in range(0, s["max_tries"] + 1, 4):
                yield Level(k, best_of_k(ctx.proxy, x0, target, k, ctx.seed), values={"tries": k})
        return Trajectory(x0, target, levels())

    SOURCES.register("annealing", Source(
        name="annealing", knob="tries", pressure="tries", doc="...", run=run,
        settings={"max_tries": Setting(int, 64, minimum=1, maximum=4096, doc="last level")},
        values={"tries": "random tries so far"}))
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch

# Ceilings of the knobs that size work (steps, generations) and of step sizes: far
# above any useful value, low enough that a typo fails at once instead of running on.
MAX_STEPS = 2**20
MAX_LR = 1e6
TIMESTEPS = 1000   # the diffusion models' training schedule (models/diffusion.py)

GOODHART_LAWS = ("rl_kl", "best_of_n")   # report/fits.py: d (a - b log d), d (a - b d)


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


@dataclass(frozen=True)
class Level:
    """One pressure level: the knob's value and the n outputs there."""
    knob: float
    x: torch.Tensor                 # (n, ...) outputs
    # Selection sources: (targets, N) weights over the pool, one row per pool target;
    # the runner averages every per-sample metric over the whole pool with them (exact
    # order-statistics estimates). None: per-sample metrics are means over x.
    weights: Any = None
    # Whether x is a valid sample of the level's output law for set metrics (KID, FID,
    # ...): False where a selection draws too few distinct pool members; the runner
    # then reports the set metrics as NaN.
    set_valid: bool = True
    # The source's own values at this level (names declared in Source.values).
    values: dict[str, float] = field(default_factory=dict)

    def cpu(self) -> "Level":
        return replace(self, x=self.x.cpu())


@dataclass
class Trajectory:
    start: torch.Tensor             # (n, ...) starting points
    target: torch.Tensor            # (n,) target class
    levels: Iterator[Level]
    knob_scale: float = 1.0         # pressure = knob * knob_scale (e.g. steps x lr)
    # Whether the outputs moved away from `start`, so distances from it (l2, linf) mean
    # something. False for a selection: its outputs are pool members, and `start` only
    # holds the first ones (the runner then hands the referee no start).
    has_start: bool = True
    # Selection sources: the whole pool, and the target class of each row of the
    # per-level selection weights; per-sample metrics are then exact weighted means.
    pool: Any = None                # a tensor, or pressure.pool.GeneratorPool
    pool_targets: tuple[int, ...] = ()
    # (N,) pool members that diverged, as the source ranked them (lowest); None: the
    # runner finds them from the pool's pixels and proxy output.
    pool_diverged: Any = None       # (N,) bool numpy array


def log_levels(max_steps: int) -> list[int]:
    """0, 1, 2, 4, ... up to max_steps (max_steps itself always included)."""
    levels, s = [0], 1
    while s < max_steps:
        levels.append(s)
        s *= 2
    return levels + [max_steps]


@dataclass(frozen=True)
class Context:
    """What a source's run knows of its cell."""
    proxy: Any                      # the frozen Proxy the cell names (proxies.py)
    domain: Any                     # the Domain object (domains/base.py): shape, classes, bounds, splits
    n: int                          # output samples
    seed: int
    # Observer of per-step, per-sample proxy probabilities (pressure/crossings.py): an
    # iterative source calls crossings.update(step, prob, outputs) at every step with
    # the frozen proxy's probability of each sample's current output, so each sample's
    # exact equal-proxy point exists. None: not observed (the algorithms skip it).
    crossings: Any = None
    # The step counts an iterative source yields instead of its log grid (sorted, from
    # 0): what departure refinement reruns a cell with (optbench/refine.py).
    levels: tuple[int, ...] | None = None

    def step_levels(self, last: int) -> list[int]:
        """The steps to yield Levels at: `levels` when set, else 0, 1, 2, 4, ..., last."""
        return list(self.levels) if self.levels is not None else log_levels(last)

    @classmethod
    def of(cls, proxy, domain, n: int = 0, seed: int = 0, crossings=None) -> "Context":
        """A context for calling an algorithm directly (tests, benchmarks): `proxy` a
        Proxy or a bare module, `domain` a Domain or its name."""
        from optbench.domains import get_domain
        from optbench.proxies import as_proxy
        return cls(as_proxy(proxy), get_domain(domain), n, seed, crossings)

    @property
    def device(self) -> torch.device:
        return self.proxy.device

    @property
    def bounds(self) -> tuple[float, float]:
        return tuple(self.domain.bounds)

    def model(self, name: str) -> torch.nn.Module:
        """A checkpoint of the cell's domain that the source loads itself (a generator,
        a diffusion model), on the proxy's device; loaded once per process."""
        return cached_model(self.domain.name, name, str(self.device))


@functools.lru_cache(maxsize=8)
def cached_model(domain: str, name: str, device: str) -> torch.nn.Module:
    """load_model, once per (domain, model, device) in a process: a worker reuses the
    generator or diffusion model of its previous cell."""
    from optbench.models.checkpoints import load_model
    return load_model(domain, name, device)


def _no_check(settings: dict, domain) -> str | None:
    return None


def _no_models(settings: dict) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Source:
    name: str
    knob: str
    pressure: str
    doc: str
    # (ctx, settings) -> Trajectory: the one signature of every source.
    run: Callable[[Context, dict], Trajectory]
    settings: dict[str, Setting] = field(default_factory=dict)
    # The source's own values reported at each level (Level.values): name -> doc. The
    # runner refuses a value not declared here or named like a referee metric.
    values: dict[str, str] = field(default_factory=dict)
    # True: levels are steps of one optimization, and run() reports every step's
    # per-sample proxy probability to ctx.crossings (exact equal-proxy points). False:
    # levels are not steps (guidance scales, selections from one pool); equal-proxy
    # comparisons then interpolate between levels.
    iterative: bool = False
    # Cross-field rules on (settings, domain): the problem as "<setting>: ...", or None.
    check: Callable[[dict, Any], str | None] = _no_check
    models: Callable[[dict], tuple[str, ...]] = _no_models  # checkpoints it loads itself
    distance: str = "l2"            # the metric or value that is the source's own distance d
    # The Goodhart-law form its curves are fitted with (report/goodhart.py): "rl_kl",
    # d (a - b log d) for optimization against the proxy (Gao et al.'s RL form), or
    # "best_of_n", d (a - b d) for selection; None: no fit (a guidance scale is no distance).
    goodhart_law: str | None = "rl_kl"
    # The row of the equal-proxy figure its curves are drawn in (a variant shares its
    # parent's: online pixel ascent pixel ascent's); None: its own name.
    figure_row: str | None = None
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

    def __post_init__(self):
        if self.goodhart_law not in (None, *GOODHART_LAWS):
            raise ValueError(f"goodhart_law: unknown {self.goodhart_law!r}; allowed: "
                             f"{', '.join(GOODHART_LAWS)} or None")

    @property
    def row(self) -> str:
        return self.figure_row or self.name

    def defaults(self, **changes) -> dict:
        """Every declared setting at its default, with `changes` (declared names only):
        the settings dict a run, or a direct call of an algorithm, receives."""
        unknown = sorted(set(changes) - set(self.settings))
        if unknown:
            raise KeyError(f"{self.name} declares no setting {', '.join(unknown)}; it has "
                           f"{', '.join(self.settings)}")
        out = {k: (list(s.default) if s.kind is list else s.default) for k, s in self.settings.items()}
        return out | changes
