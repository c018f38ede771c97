"""Running cells and storing them.

A cell's folder `results/<suite>/<cell-id>/` is built in a temporary sibling folder and
renamed into place when complete, so a crash never leaves a half-written cell under its
real name. `DONE` holds the sha256 of every other file; a folder whose files do not
match it is treated as missing and recomputed."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from optbench.domains import get_domain
from optbench.notices import listening, notice
from optbench.plan import duration, plan_run, summary_line
from optbench.preflight import check_models
from optbench.pressure import SOURCES, Context, Level, Source
from optbench.pressure.crossings import Crossings
from optbench.pressure.starts import real_sample
from optbench.proxies import Proxy, as_proxy
from optbench.record import CellRecord
from optbench.referees import Referee
from optbench.storage import (DONE, StorageError, _sha, share_files,
                              shared_mkdtemp, suite_lock, write_atomic)
from optbench.suite import CellSpec, Suite, given_replicate
from optbench.training.replicates import load_replicate
from optbench.workers import pool_worker_init, reap_with_driver, setup_torch

SUITE_SCHEMA = 1     # suite.json
GRID_SAMPLES = 8      # images per pressure level kept for grids


def available_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows;
    os.cpu_count() counts the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class CellResult:
    spec: CellSpec
    rows: list[dict]            # one per pressure level
    baseline: dict              # real-against-real values of every metric
    snapshots: torch.Tensor     # (levels, GRID_SAMPLES, C, H, W)
    targets: torch.Tensor       # (GRID_SAMPLES,)
    meta: dict
    equal_proxy: list[dict] = field(default_factory=list)   # exact equal-proxy points
    null: dict = field(default_factory=dict)   # real-against-real null per distribution metric
    samples: dict | None = None   # per-sample values (record.SAMPLES) when the spec asks


def compute_cell(spec: CellSpec, referee: Referee, progress: bool = False) -> CellResult:
    """The cell as a pure function of its spec (the referee only caches models).
    `progress` shows a bar over pressure levels (for long cells on a terminal)."""
    t0 = time.time()
    proxy, proxy_train_seconds = cell_proxy(spec, referee)
    source = SOURCES[spec.source]
    settings = spec.settings_dict
    check_value_names(source)
    # Iterative sources report every step's per-sample proxy probability here.
    crossings = Crossings(spec.n_samples) if source.iterative else None
    ctx = Context(proxy, get_domain(spec.domain), spec.n_samples, spec.seed, crossings)
    traj = source.run(ctx, settings)
    start = traj.start if traj.has_start else None   # None: distances from a start are NaN
    pool_values = pool_per_sample(referee, traj, proxy)
    rows, snaps = [], []
    kept: list[dict] | None = [] if spec.per_sample else None
    for level in tqdm(traj.levels, desc=f"{spec.cell_id} levels", unit="level",
                      leave=False, disable=not progress):
        if not isinstance(level, Level):   # e.g. a plug-in still yielding (knob, x) tuples
            raise TypeError(f"source {source.name!r} yielded a {type(level).__name__}, not an "
                            "optbench.pressure.Level (docs/sources.md)")
        x = level.x
        if kept is not None:
            kept.append({})
        metrics = referee.evaluate(x, traj.target, start, proxy, None if kept is None else kept[-1])
        if level.weights is not None:   # selection: exact weighted means over the whole pool
            metrics |= weighted_pool_means(pool_values, level.weights)
        if not level.set_valid:
            metrics |= {m: float("nan") for m in referee.distribution_names(proxy)}
        metrics |= source_values(source, level, metrics)
        metrics |= referee.derived(metrics, proxy)   # from the final (weighted) values
        if source.queries is not None:
            metrics["proxy_forward"], metrics["proxy_backward"] = source.queries(settings, level.knob, spec.n_samples)
        rows.append({source.knob: level.knob, "pressure": level.knob * traj.knob_scale, **metrics})
        snaps.append(x[:GRID_SAMPLES])
    equal_proxy = equal_proxy_points(referee, traj, proxy, crossings)
    # Real against real: every metric on held-out real examples, their label as target.
    x_real, y_real = real_sample(spec.domain, spec.n_samples, spec.seed)
    real_kept = {} if spec.per_sample else None
    baseline = referee.evaluate(x_real, y_real, x_real, proxy, real_kept)
    null = real_null(referee, spec.n_samples, proxy)
    device = proxy.device
    meta = {"wall_seconds": round(time.time() - t0, 2), "device": str(device),
            "threads": torch.get_num_threads(), "machine": machine(device),
            "proxy_kind": proxy.kind,
            "proxy_train_seconds": round(proxy_train_seconds, 2)}
    return CellResult(spec, rows, baseline, torch.stack(snaps), traj.target[:GRID_SAMPLES], meta,
                      equal_proxy, null, per_sample_table(kept, real_kept))


def per_sample_table(kept: list[dict] | None, real: dict | None) -> dict | None:
    """record.SAMPLES's tensors: each key's (levels, n) values, and the real baseline's
    under "real:<key>"; a key some level lacks (a distance without starts) is NaN there."""
    if kept is None:
        return None
    from optbench.record import REAL_PREFIX
    n = max((len(v) for level in kept for v in level.values()), default=0)
    nan = torch.full((n,), float("nan"), dtype=torch.float64)
    keys = list(dict.fromkeys(k for level in kept for k in level))
    out = {k: torch.stack([level.get(k, nan) for level in kept]) for k in keys}
    return out | {REAL_PREFIX + k: v for k, v in (real or {}).items()}


def cell_proxy(spec: CellSpec, referee: Referee) -> tuple[Proxy, float]:
    """The proxy this cell pushes against: the referee's (the shipped model), or this
    seed's own replicate of its recipe; and the seconds spent training it now."""
    if spec.proxy_training == "replicates":   # the user's own replicates, one per seed
        from optbench.models.checkpoints import build_checked, load_weights, model_entry, read_safetensors
        entry, file = model_entry(spec.domain, spec.proxy), Path(given_replicate(spec.domain, spec.proxy, spec.seed)["file"])
        model = build_checked(entry["arch"], entry.get("arch_kwargs", {}), file)
        load_weights(model, read_safetensors(file), file, entry["arch"])
        proxy = as_proxy(model.eval().requires_grad_(False).to(referee.proxy.device), referee.proxy.kind)
        proxy.name = spec.proxy
        return proxy, 0.0
    if spec.proxy_training != "per_seed":
        return referee.proxy, 0.0
    model, seconds = load_replicate(spec.domain, spec.proxy, spec.seed, referee.proxy.device)
    proxy = as_proxy(model, referee.proxy.kind)
    proxy.name = spec.proxy
    return proxy, seconds


def real_null(referee: Referee, n: int, proxy: Proxy | None = None) -> dict:
    """The real-against-real null at n of every metric the referee computes for the
    proxy that has one (referees/null.py). Suites refuse an n without a null before any
    cell runs (suite.py), so a failure here fails the cell rather than storing a cell
    whose departures cannot be read."""
    return referee.null(n, proxy)


# Values a source may report under a name the runner also records: a selection's
# diverged_frac is the exact chance, from its weights, that the selected sample diverged
# (the referee's is the share among the n drawn outputs).
RUNNER_NAMES_A_SOURCE_MAY_SET = frozenset({"diverged_frac"})


def check_value_names(source: Source) -> None:
    """A source's declared values must not be named like a referee metric: a row holds
    one value per name, and a source's would silently replace the referee's."""
    from optbench.metrics import METRICS
    clash = sorted((set(source.values) & set(METRICS)) - RUNNER_NAMES_A_SOURCE_MAY_SET)
    if clash:
        raise ValueError(f"source {source.name!r} declares values named like referee metrics: "
                         f"{', '.join(clash)}; rename them (e.g. '{source.name}_{clash[0]}')")


def source_values(source: Source, level: Level, metrics: dict) -> dict[str, float]:
    """The level's own values of the source, refused when the source did not declare a
    name (Source.values) or when it names one of the referee's values at this level."""
    undeclared = sorted(set(level.values) - set(source.values))
    if undeclared:
        raise ValueError(f"source {source.name!r} reported undeclared values {', '.join(undeclared)} at "
                         f"{source.knob} {level.knob}; declare them in its Source(values={{...}})")
    clash = sorted((set(level.values) & set(metrics)) - RUNNER_NAMES_A_SOURCE_MAY_SET)
    if clash:
        raise ValueError(f"source {source.name!r} reported values named like referee metrics: "
                         f"{', '.join(clash)}; rename them")
    return dict(level.values)


def equal_proxy_points(referee: Referee, traj, proxy: Proxy, crossings: Crossings | None) -> list[dict]:
    """Referee metrics on the samples stopped where their own proxy probability first
    reached each threshold (iterative sources report every step to `crossings`;
    pressure/crossings.py), with the share of samples that got there and the steps it
    took them."""
    if crossings is None:
        return []
    out = []
    for t, mask, x, steps in crossings.sets():
        point = {"threshold": t, "reached_frac": float(mask.double().mean()), "n_reached": int(mask.sum())}
        if x is not None:
            point |= {"steps_mean": float(steps.double().mean()), "steps_median": float(steps.double().median()),
                      **referee.evaluate(x, traj.target[mask], traj.start[mask], proxy)}
        out.append(point)
    return out


def pool_per_sample(referee: Referee, traj, proxy: Proxy) -> tuple[list[dict], torch.Tensor] | None:
    """Per-sample metric values over a selection source's pool, one dict per target row,
    and (N,) whether each member is finite (pixels and proxy output; diverged members
    are left out of every mean). A streamed pool (pressure/pool.py) is read chunk by
    chunk and its values kept in float32: a million samples x 10 targets x 20 metrics
    are 0.8 GB so, 1.7 GB in float64."""
    if traj.pool is None:
        return None
    pool = traj.pool
    parts, finite = [], []
    for x in (pool.chunks() if hasattr(pool, "chunks") else [pool]):   # a source's own tensor pool
        logits = referee.logits(x, proxy)
        if traj.pool_diverged is None:   # else the source's own ranking decides (one owner)
            finite.append(torch.isfinite(x.flatten(1)).all(1) & proxy.finite(logits["proxy"]))
        values = [referee.per_sample(logits, x, torch.full((len(x),), t), proxy) for t in traj.pool_targets]
        if getattr(pool, "streamed", False):
            values = [{k: v.float() for k, v in row.items()} for row in values]
        parts.append(values)
    finite = torch.from_numpy(~np.asarray(traj.pool_diverged, dtype=bool)) if traj.pool_diverged is not None \
        else torch.cat(finite)
    if len(parts) == 1:
        return parts[0], finite
    return [{k: torch.cat([p[t][k] for p in parts]) for k in parts[0][t]} for t in range(len(parts[0]))], finite


def weighted_pool_means(pool_values: tuple[list[dict], torch.Tensor], weights) -> dict[str, float]:
    """Average each per-sample metric with each target row's selection weights, then over
    rows with equal weight: the unbiased order-statistics estimate for best-of-n with the
    target classes equally likely. (The set metrics' samples cycle the classes i mod 10,
    which is equal only when n_samples is a multiple of 10.)

    Diverged members carry weight only where every candidate diverged (the source ranks
    them lowest, and records that weight as `diverged_frac`); the metrics are means over
    the finite selections."""
    values, finite = pool_values
    keep = finite.numpy()
    per_target: dict[str, list[float]] = {}
    for t, v in enumerate(values):
        w = np.asarray(weights[t], dtype=float)
        lost = float(w[~keep].sum())   # NaN where the level is blanked (too few samples)
        if lost > 0:
            w = w / (1.0 - lost) if lost < 1 else np.full_like(w, np.nan)
        for key in v:
            value = w @ v[key].numpy() if keep.all() else w[keep] @ v[key].numpy()[keep]
            per_target.setdefault(key, []).append(float(value))
    return {k: float(sum(per) / len(per)) for k, per in per_target.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | None = None) -> dict:
    """What decides which kernels ran, and so the last bits of every number: the CPU
    kernel set torch picked (ATEN_CPU_CAPABILITY overrides it), the CPU, and the GPU."""
    gpu = None
    if device is not None and device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
            "onednn_max_cpu_isa_env": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "cpu_model": cpu_model(), "arch": platform.machine(), "gpu": gpu}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    import numpy, torchmetrics, scipy
    return {"optbench": __import__("optbench").__version__, "torch": torch.__version__,
            "torchmetrics": torchmetrics.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "python": platform.python_version()}


def cell_record(result: CellResult) -> CellRecord:
    """The stored record of a computed cell (optbench/record.py): the spec with what the
    report needs to read it, the curve, the snapshots, provenance."""
    spec = result.spec
    source = SOURCES[spec.source]
    return CellRecord(
        spec={"cell_id": spec.cell_id, "label": spec.label, "knob": source.knob, "distance": source.distance,
              "proxy_kind": result.meta.get("proxy_kind", "classifier"), "pressure": source.pressure,
              # What the report reads instead of knowing sources by name: the Goodhart-law
              # form of the fits, the equal-proxy figure's row, the source's own values.
              "goodhart_law": source.goodhart_law, "figure_row": source.row,
              "source_values": list(source.values), **spec.canonical(),
              **_value_range(spec.domain), "versions": spec.versions()},
        rows=result.rows, baseline=result.baseline, null=result.null, equal_proxy=result.equal_proxy,
        meta={**result.meta, "versions": versions(), "git_commit": git_commit(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        snapshots=result.snapshots, targets=result.targets, samples=result.samples)


def write_cell(result: CellResult, suite_dir: Path) -> Path:
    """Write a cell folder atomically: build it under a temporary name, then rename."""
    spec = result.spec
    final = suite_dir / spec.cell_id
    tmp = shared_mkdtemp(f".{spec.cell_id}.", suite_dir)
    try:
        cell_record(result).write(tmp)
        from optbench.grids import cell_grid
        cell_grid(tmp, tmp / "grid.png")
        from optbench.figure_inputs import write_cell_figures
        write_cell_figures(result, tmp)   # what its figures need from models: the report loads none
        share_files(tmp)
        hashes = {p.name: _sha(p) for p in sorted(tmp.iterdir())}
        (tmp / DONE).write_text(json.dumps(hashes, indent=1) + "\n")
        if final.is_symlink() or final.is_file():   # never follow a link into someone's folder
            final.unlink()
        elif final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _value_range(domain: str) -> dict:
    """The domain's bounds, for grids, when they are not [0, 1] (so the specs of [0, 1]
    domains are written as before)."""
    from optbench.domains import get_domain
    bounds = tuple(get_domain(domain).bounds)
    return {} if bounds == (0.0, 1.0) else {"bounds": list(bounds)}


_REFEREES: dict[tuple, Referee] = {}   # per process: models load once
EXECUTORS = ("local", "ray")


def compute_or_traceback(spec: CellSpec, device: str, progress: bool = False) -> CellResult | str:
    """The cell's result, or the traceback text if computing it raised."""
    try:
        spec.context.activate()   # a worker imports the suite's plug-ins first
        check_metric_identity(spec)
        return compute_cell(spec, referee_for(spec, device), progress)
    except KeyboardInterrupt:
        raise
    except Exception:
        return traceback.format_exc()


def referee_for(spec: CellSpec, device: str) -> Referee:
    """This process's referee for the cell's domain, proxy and feature spaces, loaded once;
    keyed by the models' sha256s too: two suites of one process may give a name other weights."""
    key = (spec.domain, spec.proxy, device, spec.feature_spaces(),
           json.dumps(spec.versions()["checkpoints"], sort_keys=True))
    if key not in _REFEREES:
        _REFEREES[key] = Referee(spec.domain, spec.proxy, torch.device(device), features=spec.feature_spaces())
    return _REFEREES[key]


def check_metric_identity(spec: CellSpec) -> None:
    """The plug-in metrics this process has registered must be those in the cell's id
    (fixed when its suite was read): else the cell would be stored under an id that
    names metrics it does not hold, or without ones it holds."""
    from optbench.metrics import identity
    here = identity(spec.domain)
    if here != dict(spec.metrics):
        raise RuntimeError(f"cell {spec.cell_id}: its id names the plug-in metrics {dict(spec.metrics) or 'none'}, "
                           f"but this process has {here or 'none'} registered; name every metric plug-in "
                           "in the suite's `plugins` so that every worker imports it")


def store(outcome: CellResult | str, spec: CellSpec, suite_dir: Path) -> str:
    """Write a computed cell (or the failure's traceback); return its status. A disk
    error stops the suite with a clear message; complete cells stay as they were."""
    try:
        if isinstance(outcome, str):
            (suite_dir / f"{spec.cell_id}.failed.txt").write_text(outcome)
            return "failed"
        write_cell(outcome, suite_dir)
        (suite_dir / f"{spec.cell_id}.failed.txt").unlink(missing_ok=True)
        return "computed"
    except (OSError, SafetensorError) as e:   # safetensors' own error is no OSError
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip() or type(e).__name__
        raise StorageError(f"cannot write cell {spec.cell_id} under {suite_dir}: {why}; cells "
                           "written before it are complete and untouched, and a rerun resumes "
                           "from them") from None


def run_one(spec: CellSpec, suite_dir: Path, device: str, progress: bool = False) -> tuple[str, float]:
    """Compute and store one cell: ("computed" or "failed", seconds)."""
    t0 = time.time()
    return store(compute_or_traceback(spec, device, progress), spec, suite_dir), time.time() - t0


def _ray_compute(spec: CellSpec, device: str, threads: int) -> tuple[CellResult | str, float]:
    setup_torch(threads)
    t0 = time.time()
    return compute_or_traceback(spec, device), time.time() - t0


def _run_ray(todo: list[CellSpec], suite_dir: Path, report, address: str | None,
             workers: int, gpus_per_cell: float) -> None:
    """Cells as Ray tasks. Workers return results and the driver writes them, so a
    cluster needs no shared file system. Ray is an optional extra (`optbench[ray]`)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("executor 'ray' needs Ray: pip install 'optbench[ray]'") from None
    temp, reaped, token = None, lambda: None, lambda: None
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray; keep its files out of /tmp/ray and ~/.ray, and remove them after
            temp = tempfile.mkdtemp(prefix="optbench-ray-")
            token = _local_ray_token()
            reaped = reap_with_driver(temp)   # a killed driver leaves no Ray process or folder
            ray.init(num_cpus=max(1, workers), num_gpus=None, include_dashboard=False,
                     log_to_driver=False, _temp_dir=temp)
        device = "cuda" if gpus_per_cell > 0 else "cpu"
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_cell)(_ray_compute)
        pending = {task.remote(spec, device, 1): spec for spec in todo}
        i = 0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            outcome, seconds = ray.get(done[0])
            i += 1
            report(i, spec, store(outcome, spec, suite_dir), seconds)
    finally:
        ray.shutdown()
        if temp:
            reaped()
            shutil.rmtree(temp, ignore_errors=True)
            token()


def _local_ray_token():
    """A new local Ray turns on token authentication and writes the token to
    ~/.ray/auth_token. Unless the user configured authentication, hand it a token in
    the environment instead (RAY_AUTH_TOKEN), so nothing is written to the home folder;
    returns a function that restores the environment."""
    import secrets
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    if any(k in os.environ for k in keys) or (Path.home() / ".ray" / "auth_token").exists():
        return lambda: None
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    _refresh_ray_auth()

    def restore():
        for k in keys:
            os.environ.pop(k, None)
        _refresh_ray_auth()
    return restore


def _refresh_ray_auth() -> None:
    """Ray caches its configuration when imported; make it read the environment again
    (private API of Ray >= 2.5x; older Rays have no token authentication to refresh)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        pass


def run_suite(suite: Suite, out_root: Path, force: bool = False, device: str | None = None,
              log=print, command: str | None = None, workers: int = 1, executor: str = "local",
              address: str | None = None, gpus_per_cell: float = 0.0,
              threads: int | None = None) -> dict:
    """Run every cell not already complete; return counts of computed, skipped and
    failed cells.

    executor "local": in-process, or with `workers` > 1 a local process pool whose workers
    each use `threads` torch threads (default: the cores this process may use, divided
    among the workers). Numbers are bit-identical only at equal thread counts. executor "ray": Ray tasks on the cluster at
    `address` (or a local Ray with `workers` CPUs), each asking for 1 CPU and
    `gpus_per_cell` GPUs. All give identical numbers (tested)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: unknown value {executor!r}; allowed: {', '.join(EXECUTORS)}")
    suite_dir = Path(out_root) / suite.name
    try:
        suite_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=suite_dir, prefix=".probe", delete=True)
        probe.close()
    except OSError as e:
        raise StorageError(f"cannot write results to {suite_dir}: {e.strerror or e}") from None
    with suite_lock(suite_dir):
        return _run_locked(suite, suite_dir, force, device, log, command, workers, executor,
                           address, gpus_per_cell, threads)


def context_json(context) -> dict:
    return {"pythonpath": list(context.pythonpath), "plugins": list(context.plugins),
            "domains": json.loads(context.domains) if context.domains else {},
            **({"extensions": json.loads(context.extensions)} if context.extensions else {})}


def _run_cells(todo: list[CellSpec], suite_dir: Path, report, dev: str, executor: str, address: str | None,
               workers: int, gpus_per_cell: float, threads: int | None, progress: bool) -> None:
    """Compute and store the cells `todo` with the chosen executor, calling
    report(i, spec, status, seconds) as each one finishes."""
    if executor == "ray" or workers > 1:
        notice(f"starting {'Ray tasks' if executor == 'ray' else f'{workers} worker processes'}: each "
               "imports torch and loads the models first, and announces none of its own long phases "
               "(proxy replicates, nulls)")
    if executor == "ray":
        _run_ray(todo, suite_dir, report, address, workers, gpus_per_cell)
    elif workers <= 1:
        for i, spec in enumerate(todo, 1):
            report(i, spec, *run_one(spec, suite_dir, dev, progress=progress))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        threads = threads or max(1, available_cores() // workers)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=pool_worker_init, initargs=(threads, os.getpid()))
        try:
            futures = {pool.submit(run_one, spec, suite_dir, dev): spec for spec in todo}
            for i, fut in enumerate(as_completed(futures), 1):
                report(i, futures[fut], *fut.result())
        finally:  # on an error, do not start the cells still queued
            pool.shutdown(wait=True, cancel_futures=True)


def _run_locked(suite: Suite, suite_dir: Path, force: bool, device: str | None, log, command,
                workers: int, executor: str, address: str | None, gpus_per_cell: float,
                threads: int | None) -> dict:
    # A cell is only ever visible under its real name once complete; the temporary
    # folders of killed runs were removed when the suite lock was taken.
    dev = str(resolve_device(device))
    counts = {"computed": 0, "skipped": 0, "failed": 0}
    t_suite = time.time()
    plan = plan_run(suite, suite_dir, force)   # what to compute, skip and make first; the estimate
    todo = plan.todo
    for spec in plan.complete:
        counts["skipped"] += 1
        log(f"{spec.cell_id} {spec.label} seed={spec.seed}: complete, skipped")
    log(summary_line(plan, 1 if executor == "local" and workers <= 1 else workers))
    # Every model the cells to run use loads and answers one forward of the domain's
    # shape here, in this process, before any cell starts (preflight.py).
    check_models(todo, suite.path)

    # A progress bar (cells done, time left) on a terminal; plain log lines otherwise, each
    # with the time left at the pace so far. Long phases inside a cell computed in this
    # process (a proxy replicate trained, a null computed) announce themselves first
    # (optbench/notices.py).
    bar = tqdm(total=len(todo), unit="cell", disable=not sys.stderr.isatty() or not todo)
    say = bar.write if not bar.disable else log
    t_cells = time.time()

    def report(i: int, spec: CellSpec, status: str, seconds: float) -> None:
        counts[status] += 1
        note = f"{seconds:.1f}s" if status == "computed" else f"FAILED (traceback in {spec.cell_id}.failed.txt)"
        left = len(todo) - i
        eta = f"; about {duration((time.time() - t_cells) / i * left)} left" if left and bar.disable else ""
        say(f"[{i}/{len(todo)}] {spec.cell_id} {spec.label} seed={spec.seed}: {note}{eta}")
        bar.update(1)

    with listening(say):
        _run_cells(todo, suite_dir, report, dev, executor, address, workers, gpus_per_cell, threads,
                   progress=not bar.disable)
    bar.close()
    write_atomic(suite_dir / "suite.json", json.dumps(
        {"schema": SUITE_SCHEMA, "name": suite.name, "description": suite.description,
         "source_file": suite.path, "cells": [s.cell_id for s in suite.cells],
         # A label names a curve in this suite; the cell id does not depend on it, so a
         # cell resumed from another suite's folder keeps its old label in spec.json.
         "labels": {s.cell_id: s.label for s in suite.cells},
         # What `optbench plot` and `report` activate to read this folder alone: the
         # suite's plug-ins and the domains it declares from files.
         "context": context_json(suite.cells[0].context) if suite.cells else {},
         "command": command or f"optbench run {suite.path}", "git_commit": git_commit()},
        indent=2) + "\n")
    if suite.refine:
        with listening(say):
            workers_here = 1 if executor != "local" else workers   # Ray: refined locally, in this process
            counts |= {f"refine_{k}": v for k, v in
                       refine_suite(suite, suite_dir, dev, say, workers_here, threads).items()}
    from optbench.figure_inputs import write_suite_figures
    write_suite_figures(suite_dir, suite.cells)   # the generators' sample sheets, for the report
    counts["seconds"] = round(time.time() - t_suite, 1)
    return counts


# -- departure refinement after the cells (optbench/refine.py) ------------------------

def refine_one(spec: CellSpec, folder: Path, device: str) -> str:
    """Refine one complete cell in this process: "refined" or the traceback text."""
    from optbench.refine import refine_cell
    try:
        spec.context.activate()
        referee = referee_for(spec, device)
        refine_cell(spec, folder, referee, cell_proxy(spec, referee)[0])
        return "refined"
    except KeyboardInterrupt:
        raise
    except Exception:
        return traceback.format_exc()


def refine_suite(suite: Suite, suite_dir: Path, device: str, log=print, workers: int = 1,
                 threads: int | None = None) -> dict:
    """Refine every complete cell of an iterative source that has no current refined.json:
    in this process, or with `workers` > 1 in a local process pool whose workers use
    `threads` torch threads each (as the cells were computed)."""
    from optbench.refine import needs_refinement
    todo = [s for s in suite.cells if (Path(suite_dir) / s.cell_id / "DONE").is_file()
            and needs_refinement(s, Path(suite_dir) / s.cell_id)]
    counts = {"refined": 0, "failed": 0}

    def report(i: int, spec: CellSpec, status: str) -> None:
        if status != "refined":
            (Path(suite_dir) / f"{spec.cell_id}.refine_failed.txt").write_text(status)
            status = "failed"
        counts[status] += 1
        log(f"[refine {i}/{len(todo)}] {spec.cell_id} {spec.label} seed={spec.seed}: {status}")
    if workers <= 1 or len(todo) <= 1:
        for i, spec in enumerate(todo, 1):
            report(i, spec, refine_one(spec, Path(suite_dir) / spec.cell_id, device))
        return counts
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    threads = threads or max(1, available_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=pool_worker_init, initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(refine_one, spec, Path(suite_dir) / spec.cell_id, device): spec for spec in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            report(i, futures[fut], fut.result())
    return counts
