"""What a run of a suite would do, and about how long it takes, without doing any of it.

`plan_run(suite, suite_dir)` splits the cells into those to compute and those complete
(skipped), lists what must be made first (proxy replicates not in the cache, real-data
nulls neither shipped nor cached) and estimates each one's time. It reads only: `optbench
run --dry-run` prints it (`dry_run_lines`) and writes nothing; a real run prints its
one-line summary first (`summary_line`).

Estimates, best first, and each says which it is:
  recorded  the median compute time (meta.json: wall_seconds less proxy_train_seconds)
            of cells of the same curve (same spec but the seed) already in the results
            root (the suite's folder and its siblings);
  scaled    recorded cells of the same domain and source, scaled to this cell's work
            (work_units) by the shape of ROUGH_RATES (fixed part plus a rate per unit);
  rough     ROUGH_RATES below, a per-source rate;
  unknown   a plug-in source with no record.
A replicate's training: this machine's earlier replicates of the proxy ("measured",
training/replicates.py training_estimate), else recorded proxy_train_seconds of cells
with the same proxy, else the shipped model's train_seconds in its manifest. A null:
referees/null.py rough_null_seconds."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from optbench.pressure import SOURCES
from optbench.registry import PluginError
from optbench.storage import cell_is_complete
from optbench.suite import CellSpec, Suite, curve_key

# (fixed seconds, seconds per unit of work_units) per source: medians of the committed
# results' cells (results/*/<cell>/meta.json, MNIST, 128 samples, one thread on the Intel
# Xeon that made most of them; this repository's 2-core AMD EPYC runs about twice as fast).
# Other domains differ (faces slower, gmm and digits8 faster): rough, by design.
ROUGH_RATES: dict[str, tuple[float, float]] = {
    "pixel_ascent": (7.0, 3.7e-4),          # 13 s at 128 steps, 32 s at 512
    "online_pixel_ascent": (0.0, 6.9e-4),   # 45 s at 512 steps
    "feature_vis": (0.0, 1.4e-3),           # 45 s at 256 steps
    "latent_ascent": (9.0, 1.7e-3),         # 65 s at 256 steps, 233 s at 1,024
    "generator_finetune": (0.0, 9.0e-4),    # 118 s at 1,024 steps
    "diffusion_finetune": (0.0, 0.12),      # 500 s at 32 steps
    "random_search": (0.0, 3.3e-4),         # 86 s at 128 generations of 16
    "cma_es": (0.0, 4.3e-4),                # 113 s
    "genetic": (0.0, 5.4e-4),               # 141 s
    "best_of_n": (49.0, 1.8e-3),            # 79 s at a pool of 16,384; 1,871 s at 2**20
    "quantilizer": (34.0, 1.8e-3),          # 63 s at 16,384; 2,071 s at 2**20
    "guidance": (0.0, 7.7e-3),              # 39 s at 2 scales x 25 DDIM steps, 222 s at 9
}


def work_units(source: str, n_samples: int, settings: dict) -> float | None:
    """What a cell's time grows with, in the units of ROUGH_RATES: samples x steps (x
    population for a search; x scales x DDIM steps for guidance), or the pool for a
    selection. None: a source this does not know (a plug-in)."""
    try:
        declared = SOURCES[source].settings
    except (KeyError, PluginError):
        return None
    s = {k: (list(v.default) if v.kind is list else v.default) for k, v in declared.items()} | dict(settings)
    if source in ("best_of_n", "quantilizer"):
        return float(s["pool_size"])
    if source == "guidance":
        return float(n_samples * len(s["scales"]) * s["ddim_steps"])
    steps = s.get("max_steps", s.get("max_generations"))
    if not isinstance(steps, (int, float)):
        return None
    return float(n_samples * steps * s.get("population", 1))


def rough_seconds(source: str, units: float) -> float:
    """ROUGH_RATES' time for `units` of work; proportional to them for a source it lacks
    (what scaling a recorded time by work then means)."""
    fixed, rate = ROUGH_RATES.get(source, (0.0, 1.0))
    return fixed + rate * units


@dataclass
class Estimate:
    seconds: float | None
    basis: str                # recorded, scaled, rough, unknown (a replicate: recorded, manifest)


@dataclass
class Plan:
    suite: Suite
    suite_dir: Path
    todo: list[CellSpec]
    complete: list[CellSpec]
    cells: dict[str, Estimate] = field(default_factory=dict)         # cell id -> compute time
    replicates: list[tuple[str, str, int, Estimate]] = field(default_factory=list)  # to train first
    nulls: list[tuple[str, int, Estimate]] = field(default_factory=list)            # to compute first

    def seconds(self) -> tuple[float, int]:
        """The known seconds in all, and how many parts have no estimate."""
        parts = [*self.cells.values(), *(r[-1] for r in self.replicates), *(n[-1] for n in self.nulls)]
        return sum(p.seconds for p in parts if p.seconds is not None), sum(p.seconds is None for p in parts)


def _records(root: Path) -> list[tuple[dict, dict]]:
    """(spec.json, meta.json) of every cell folder under the results root, read with
    json; folders that lack them or are not JSON are passed over."""
    out = []
    if not root.is_dir():
        return out
    for suite_dir in root.iterdir():
        if not suite_dir.is_dir() or suite_dir.name.startswith("."):
            continue
        for cell in suite_dir.iterdir():
            meta = cell / "meta.json"
            if cell.name.startswith(".") or not meta.is_file():
                continue
            try:
                spec, m = json.loads((cell / "spec.json").read_text()), json.loads(meta.read_text())
                if isinstance(spec, dict) and isinstance(m, dict) and isinstance(m.get("wall_seconds"), (int, float)):
                    out.append((spec, m))
            except (OSError, ValueError):
                continue
    return out


def _compute_seconds(meta: dict) -> float:
    train = meta.get("proxy_train_seconds", 0)
    return max(0.0, float(meta["wall_seconds"]) - (float(train) if isinstance(train, (int, float)) else 0.0))


def plan_run(suite: Suite, suite_dir: Path, force: bool = False) -> Plan:
    """The plan of running `suite` into `suite_dir` (module docstring). Reads only."""
    suite_dir = Path(suite_dir)
    todo, complete = [], []
    for spec in suite.cells:
        (complete if not force and cell_is_complete(suite_dir / spec.cell_id) else todo).append(spec)
    plan = Plan(suite, suite_dir, todo, complete)
    if todo:
        try:
            _estimate(plan)
        except Exception:   # noqa: BLE001  an estimate must never stop a run: a plug-in's lookup may raise anything
            plan.cells = {s.cell_id: Estimate(None, "unknown") for s in todo}
            plan.replicates, plan.nulls = [], []
    return plan


def _estimate(plan: Plan) -> None:
    """Fill in the plan's estimates (module docstring)."""
    from optbench.referees.null import null_draws, null_is_stored, rough_null_seconds
    from optbench.training.replicates import replicate_is_cached, training_estimate
    todo, suite_dir = plan.todo, plan.suite_dir
    by_curve: dict[str, list[float]] = {}
    rates: dict[tuple, list[float]] = {}   # (domain, source) -> recorded seconds / rough_seconds
    trained: dict[tuple, list[float]] = {}
    for spec, meta in _records(suite_dir.parent):
        try:
            seconds = _compute_seconds(meta)
            by_curve.setdefault(curve_key(spec), []).append(seconds)
            units = work_units(spec["source"], spec["n_samples"], spec["settings"])
        except (KeyError, TypeError, ValueError):
            continue
        if units:
            rates.setdefault((spec["domain"], spec["source"]), []).append(seconds / rough_seconds(spec["source"], units))
        t = meta.get("proxy_train_seconds")
        if isinstance(t, (int, float)) and t > 0:
            trained.setdefault((spec["domain"], spec["proxy"]), []).append(float(t))
    for spec in todo:
        units = work_units(spec.source, spec.n_samples, spec.settings_dict)
        if spec.group_key() in by_curve:
            est = Estimate(statistics.median(by_curve[spec.group_key()]), "recorded")
        elif units and (spec.domain, spec.source) in rates:
            est = Estimate(statistics.median(rates[spec.domain, spec.source]) * rough_seconds(spec.source, units),
                           "scaled")
        elif units and spec.source in ROUGH_RATES:
            est = Estimate(rough_seconds(spec.source, units), "rough")
        else:
            est = Estimate(None, "unknown")
        plan.cells[spec.cell_id] = est
    draws, seen_nulls = null_draws(), set()
    for spec in todo:
        if spec.proxy_training == "per_seed":
            key = (spec.domain, spec.proxy, spec.seed)
            if key not in [r[:3] for r in plan.replicates] and not replicate_is_cached(*key):
                known = training_estimate(spec.domain, spec.proxy)   # this machine's first
                if known and known[1] == "measured here":
                    est = Estimate(known[0], "measured")
                elif (spec.domain, spec.proxy) in trained:
                    est = Estimate(statistics.median(trained[spec.domain, spec.proxy]), "recorded")
                else:
                    est = Estimate(known[0], "manifest") if known else Estimate(None, "unknown")
                plan.replicates.append((*key, est))
        spaces = spec.feature_spaces()
        if (spec.domain, spec.n_samples, spaces) not in seen_nulls:
            seen_nulls.add((spec.domain, spec.n_samples, spaces))
            if not null_is_stored(spec.domain, spaces, spec.n_samples, draws):
                plan.nulls.append((spec.domain, spec.n_samples,
                                   Estimate(rough_null_seconds(spec.n_samples, draws, len(spaces)), "rough")))


def duration(seconds: float) -> str:
    """3 s, 45 s, 2 min 10 s, 1 h 05 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _bases(estimates) -> str:
    counts: dict[str, int] = {}
    for e in estimates:
        counts[e.basis] = counts.get(e.basis, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def summary_line(plan: Plan, workers: int = 1) -> str:
    """'quick: 25 cells, 20 to compute, 5 complete (skipped); first 5 proxy replicates to
    train, 1 null to compute; estimated about 2 min 10 s (cells: recorded 12, scaled 8)'."""
    head = (f"{plan.suite.name}: {len(plan.suite.cells)} cells, {len(plan.todo)} to compute, "
            f"{len(plan.complete)} complete (skipped)")
    if not plan.todo:
        return head
    first = [f"{len(plan.replicates)} proxy replicate(s) to train" if plan.replicates else "",
             f"{len(plan.nulls)} real-data null(s) to compute" if plan.nulls else ""]
    first = [f for f in first if f]
    known, unknown = plan.seconds()
    per_worker = f" over {workers} workers" if workers > 1 else ""
    time = (f"estimated about {duration(known / max(1, workers))}{per_worker}"
            f"{f' plus {unknown} part(s) with no estimate' if unknown else ''} "
            f"(cells: {_bases(plan.cells.values())}; optbench/plan.py says how)")
    return f"{head}; {'first ' + ', '.join(first) + '; ' if first else ''}{time}"


def dry_run_lines(plan: Plan, workers: int = 1) -> list[str]:
    """What `optbench run --dry-run` prints: a line per cell, what is made first, the
    estimate."""
    lines = [f"dry run: nothing is computed or written; results would go to {plan.suite_dir}/"]
    done = {s.cell_id for s in plan.complete}
    for spec in plan.suite.cells:
        if spec.cell_id in done:
            lines.append(f"  skip     {spec.cell_id}  {spec.label} seed={spec.seed}: complete")
            continue
        e = plan.cells[spec.cell_id]
        when = f"~{duration(e.seconds)} ({e.basis})" if e.seconds is not None else "no estimate (plug-in source)"
        lines.append(f"  compute  {spec.cell_id}  {spec.label} seed={spec.seed}: {when}")
    for domain, proxy, seed, e in plan.replicates:
        when = f"~{duration(e.seconds)} ({e.basis})" if e.seconds is not None else "no estimate"
        lines.append(f"  train    proxy replicate {seed} of {domain}:{proxy}: {when}")
    for domain, n, e in plan.nulls:
        lines.append(f"  null     {domain} at n={n}: ~{duration(e.seconds)} ({e.basis}, one thread)")
    lines.append(summary_line(plan, workers))
    return lines
