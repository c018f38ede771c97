"""Suite files (TOML) -> validated, frozen cell specs -> content-hash cell ids.

A suite file:

    name = "quick"                  # results go to results/<name>/
    description = "..."
    seeds = [0, 1, 2]

    [[cell]]
    label = "real start"            # optional; legends and tables use it
    domain = "mnist"
    proxy = "proxy_cnn"             # optional; the domain's default proxy
    source = "pixel_ascent"
    n_samples = 128
    settings = { start = "real", lr = 0.01, max_steps = 2048 }

A list in `settings` is a grid axis: `start = ["real", "noise"]` makes two cells per seed;
so is a list of proxies: `proxy = ["proxy_cnn", "proxy_adv15"]`.
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from optbench.cache import NUMBERS_VERSION
from optbench.domains import DOMAINS, DomainError, get_domain, referee_as_proxy_error, referee_roles
from optbench.metrics import identity as metric_identity
from optbench.models.checkpoints import catalog, entry_kind, model_hash
from optbench.errors import CheckpointError
from optbench.pressure import SOURCES
from optbench.registry import PluginError, load_plugins

# Sanity ceilings, checked before anything runs: past these a cell would run for minutes
# and then die of memory (n_samples = 10_000_000 did, after 4 minutes).
MAX_SAMPLES = 1_000_000
FLOAT_COPIES = 16               # a generous working set: float copies held per sample
MAX_NAME = 100                  # a suite's name is a folder name (255 bytes at most)
FLOAT_CEILING = 1e30            # any float setting: it becomes a float32 tensor (max 3.4e38)

SUITE_KEYS = {"name": "suite name (results/<name>/)", "description": "free text",
              "seeds": "list of non-negative integers", "cell": "array of [[cell]] tables",
              "plugins": "list of modules to import first (they register domains, sources, metrics)",
              "pythonpath": "list of folders, relative to the suite file, put on sys.path",
              "domains": "tables of domains read from files (optbench/domains/files.py)",
              "per_sample": "true: every cell also keeps each output's per-sample values (samples.safetensors)",
              "refine": "true: after the cells, resolve each iterative cell's departures between grid steps "
                        "(refined.json; optbench/refine.py)"}
CELL_KEYS = {"label": "free text", "domain": "domain name", "proxy": "proxy model name (a list: one curve each)",
             "source": "pressure source name", "n_samples": f"integer in 6..{MAX_SAMPLES}",
             "settings": "table of source settings", "seeds": "list of non-negative integers",
             "proxy_training": "'shipped' (the packaged proxy), 'per_seed' (a replicate trained per seed) or "
                               "'replicates' (the model's own replicates: seed s pushes against file s mod count)",
             "features": "list of feature spaces for FID/KID/PRDC/C2ST, the first primary",
             "per_sample": "true: keep each output's per-sample values (samples.safetensors); default: the suite's"}
PROXY_TRAINING = ("shipped", "per_seed", "replicates")


class SuiteError(ValueError):
    """A malformed suite file; the message names the file, the field and what is allowed."""


@dataclass(frozen=True)
class Context:
    """What any process must do before it can compute a suite's cells: put folders on
    sys.path, import the plug-ins, declare the suite's file-based domains. Every cell
    carries it, so process-pool and Ray workers do the same as the parent. Not part of a
    cell's id: the id holds what the plug-ins produce (model sha256s, data fingerprints)."""
    pythonpath: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    domains: str = ""   # JSON: {name: table} with paths made absolute
    # JSON: {shipped domain: {model: entry}}, the models a suite adds to a shipped domain
    # ([domains.mnist.models.my_model]), paths made absolute.
    extensions: str = ""

    def activate(self) -> None:
        import sys
        for folder in self.pythonpath:
            if folder not in sys.path:
                sys.path.insert(0, folder)
        load_plugins(self.plugins)
        extend_shipped(json.loads(self.extensions) if self.extensions else {})
        if self.domains:
            from optbench.domains.files import FileDomain
            for name, table in json.loads(self.domains).items():
                # Once per process and table: another suite may declare the name anew.
                if _DECLARED.get(name) != table:
                    DOMAINS.register(name, FileDomain(name, where=f"domains.{name}", **table), replace=True)
                    _DECLARED[name] = table


_DECLARED: dict[str, dict] = {}   # file-based domains registered in this process, by their table
_SHIPPED: dict[str, object] = {}   # a shipped domain's own instance, while a suite extends it


def extend_shipped(extensions: dict[str, dict]) -> None:
    """Give each named shipped domain the suite's extra models (a copy of the domain with
    `models` set, so the package's instance is never changed), and restore every other
    shipped domain an earlier suite of this process extended."""
    import copy
    for name in list(_SHIPPED):
        if name not in extensions:
            DOMAINS.register(name, _SHIPPED.pop(name), replace=True)
    for name, models in extensions.items():
        current = DOMAINS[name]
        if current.models == models:
            continue
        base = _SHIPPED.setdefault(name, current)
        extended = copy.copy(base)
        extended.__dict__.pop("_declared", None)   # declared_models' cache of the base's (empty) models
        extended.models = models
        DOMAINS.register(name, extended, replace=True)


@dataclass(frozen=True)
class CellSpec:
    domain: str
    proxy: str
    source: str
    n_samples: int
    seed: int
    settings: tuple[tuple[str, object], ...]   # sorted (name, value) pairs
    label: str = ""
    # "shipped": the packaged proxy; "per_seed": seed s gets its own replicate of the
    # proxy's recipe (training/replicates.py), so intervals include training variance.
    proxy_training: str = "shipped"
    # Feature spaces of the distribution metrics (the first is the primary one, whose
    # metrics keep their plain names); empty: the domain's feature_spaces.
    features: tuple[str, ...] = ()
    context: Context = field(default=Context(), compare=False, repr=False)
    # (name, version) of the plug-in metrics that apply (optbench/metrics.py identity),
    # fixed when the suite is read, after its plug-ins registered them: part of the id.
    metrics: tuple[tuple[str, int], ...] = ()
    # Keep every output's value of each per-sample metric at every level and on the real
    # baseline (samples.safetensors): what per-sample grading reads (report/detectors.py).
    per_sample: bool = False

    def feature_spaces(self) -> tuple[str, ...]:
        return self.features or tuple(get_domain(self.domain).feature_spaces)

    @property
    def settings_dict(self) -> dict:
        return dict(self.settings)

    def canonical(self) -> dict:
        """What determines the numbers (the label does not)."""
        try:
            declared = SOURCES[self.source].settings
        except (KeyError, PluginError):   # a plug-in source this process has not imported
            declared = {}
        settings = {k: v for k, v in self.settings if not (
            k in declared and declared[k].omit_default and v == _default(declared[k]))}
        out = {"domain": self.domain, "proxy": self.proxy, "source": self.source,
               "n_samples": self.n_samples, "seed": self.seed, "settings": settings}
        if self.proxy_training != "shipped":   # only then, so shipped-proxy ids stay as they were
            out["proxy_training"] = self.proxy_training
        if self.features:
            out["features"] = list(self.features)
        if self.per_sample:   # only then, so other ids stay as they were
            out["per_sample"] = True
        return out

    def group_key(self) -> str:
        """Cells that differ only in seed form one curve."""
        return curve_key(self.canonical())

    def versions(self) -> dict:
        import torch
        dom = get_domain(self.domain)
        models = sorted({self.proxy, *dom.judges, *self.feature_spaces(),
                         *SOURCES[self.source].models(self.settings_dict)})
        out = {"numbers": NUMBERS_VERSION, "torch": ".".join(torch.__version__.split(".")[:2]),
               "checkpoints": {m: model_hash(self.domain, m)[:16] for m in models}}
        if not dom.shipped:
            out["data"] = dom.fingerprint()   # a user's data can change under the same name
        if self.proxy_training == "per_seed":
            from optbench.training.replicates import replicate_hash
            out["replicate"] = replicate_hash(self.domain, self.proxy, self.seed)
        elif self.proxy_training == "replicates":
            out["replicate"] = given_replicate(self.domain, self.proxy, self.seed)["sha256"][:16]
        version = SOURCES[self.source].version
        if version != 1:   # only then, so other sources' ids stay as they were
            out["source_version"] = version
        # Plug-in metrics (and package metrics whose version moved) that apply here: a
        # new or changed metric gives new cell ids, so it never meets a stale cell.
        if self.metrics:   # only then, so cells of the built-in metrics keep their ids
            out["metrics"] = dict(self.metrics)
        return out

    @property
    def cell_id(self) -> str:
        blob = json.dumps({"spec": self.canonical(), "versions": self.versions()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def given_replicate(domain: str, proxy: str, seed: int) -> dict:
    """The weights seed `seed` pushes against under proxy_training = 'replicates': the
    model's file, then its `replicates`, cycled ({"file", "sha256"})."""
    from optbench.models.checkpoints import model_entry
    entry = model_entry(domain, proxy)
    files = [{"file": entry["file"], "sha256": entry["sha256"]}, *entry.get("replicates", [])]
    return files[seed % len(files)]


def curve_key(spec: dict) -> str:
    """The one definition of a curve: a cell's spec (CellSpec.canonical(), or a stored
    spec.json) without its seed."""
    return json.dumps({**{k: spec[k] for k in ("domain", "proxy", "source", "n_samples", "settings")},
                       "proxy_training": spec.get("proxy_training", "shipped"),
                       "features": list(spec.get("features", []))}, sort_keys=True)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cells: tuple[CellSpec, ...]
    path: str = ""
    # What command-line overrides changed (apply_overrides), one line; "" without any.
    overrides: str = ""
    # Resolve departures between grid levels after the cells run (optbench/refine.py).
    refine: bool = False


def _default(setting):
    return tuple(setting.default) if setting.kind is list else setting.default


def _suggest(word: str, allowed) -> str:
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(where: str, table: dict, allowed: dict | tuple) -> None:
    for key in table:
        if key not in allowed:
            raise SuiteError(f"{where}: unknown field {key!r}{_suggest(key, allowed)}; "
                             f"allowed: {', '.join(allowed)}")


def _check_name(where: str, value, allowed) -> None:
    if not isinstance(value, str):
        raise SuiteError(f"{where}: expected a string, got {type(value).__name__}; "
                         f"allowed: {', '.join(allowed)}")
    if value not in allowed:
        raise SuiteError(f"{where}: unknown value {value!r}{_suggest(value, allowed)}; "
                         f"allowed: {', '.join(allowed)}")


def _check_seeds(where: str, seeds) -> tuple[int, ...]:
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise SuiteError(f"{where}: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SuiteError(f"{where}: seeds must be distinct, got {seeds!r}")
    return tuple(seeds)


def _check_value(where: str, value, setting) -> None:
    kind = setting.kind
    ok = (isinstance(value, kind) and not isinstance(value, bool)) if kind is not bool else isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise SuiteError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    # TOML allows nan and inf, and `nan < minimum` is False, so they would pass the bound.
    if isinstance(value, float) and not math.isfinite(value):
        raise SuiteError(f"{where}: must be a finite number, got {value!r}")
    if setting.allowed and value not in setting.allowed:
        raise SuiteError(f"{where}: unknown value {value!r}{_suggest(str(value), setting.allowed)}; "
                         f"allowed: {', '.join(setting.allowed)}")
    if setting.minimum is not None and value < setting.minimum:
        bound = "> 0" if setting.minimum and setting.minimum < 1e-6 else f">= {setting.minimum:g}"
        raise SuiteError(f"{where}: must be {bound}, got {value!r}")
    ceiling = setting.maximum if setting.maximum is not None else FLOAT_CEILING if kind is float else None
    if ceiling is not None and value > ceiling:
        low = _number(setting.minimum) if setting.minimum is not None else "-inf"
        raise SuiteError(f"{where}: must be <= {_number(ceiling)}, got {value!r}; allowed: "
                         f"{low}..{_number(ceiling)}")


def _number(v: float) -> str:
    """4194304, not 4.1943e+06; 1e-12 and 1e+30 as such."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _check_number_list(where: str, value, setting) -> tuple[float, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise SuiteError(f"{where}: expected a non-empty list of numbers, got {value!r}")
    bad = [v for v in value if not math.isfinite(v)]
    if bad:  # TOML allows nan and inf; the ordering checks below cannot catch nan
        raise SuiteError(f"{where}: every value must be a finite number, got {bad[0]!r}")
    if setting.minimum is not None and min(value) < setting.minimum:
        raise SuiteError(f"{where}: every value must be >= {setting.minimum:g}, got {min(value)!r}")
    if sorted(value) != value or len(set(value)) != len(value):
        raise SuiteError(f"{where}: values must be distinct and increasing, got {value!r}")
    return tuple(float(v) for v in value)


def _curve_label(label: str, s: dict, axes: dict, source) -> str:
    """The cell's label plus the grid axes that vary; without a label, every setting
    that is not its default."""
    if label:
        varying = ", ".join(f"{k}={s[k]}" for k in axes if len(axes[k]) > 1)
        return f"{label} {varying}" if varying else label
    changed = ", ".join(f"{k}={v}" for k, v in s.items()
                        if len(axes[k]) > 1 or v != _default(source.settings[k]))
    return changed or source.name


def available_memory() -> int | None:
    """Bytes this machine can still hand out (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(where: str, n_samples: int, pool_size: int, sample_floats: int, targets: int = 10) -> None:
    """Refuse a cell that cannot fit in memory now, rather than minutes into running it.
    A pool above pressure/pool.py's IN_MEMORY is streamed: one chunk of images at a time,
    plus its per-sample values (float32, about 24 metrics per target, twice while joined)."""
    from optbench.pressure.pool import CHUNK, IN_MEMORY
    have = available_memory()
    images = pool_size if pool_size <= IN_MEMORY else CHUNK
    need = (n_samples + images) * sample_floats * 4 * FLOAT_COPIES   # 4 bytes a float32
    if pool_size > IN_MEMORY:
        need += pool_size * targets * 24 * 4 * 2
    if have is not None and need > have:
        what = f"n_samples + settings.pool_size: {n_samples + pool_size}" if pool_size else \
            f"n_samples: {n_samples}"
        streamed = " (streamed)" if pool_size > IN_MEMORY else ""
        raise SuiteError(f"{where}.{what} samples need about {need / 2**30:.0f} GiB here{streamed}, more than "
                         f"the {have / 2**30:.0f} GiB available; use fewer samples")


def _is_name(name) -> bool:
    """A name that is safe as a file or folder name: no path separator, no '..'."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in name))


def _check_real_data(where: str, dom, n: int) -> None:
    """Every cell compares its outputs with n held-out real examples (the baseline, from
    the test split) and with the null of its metrics at n (drawn without replacement
    from half the null pool): refuse an n the domain's data cannot give, rather than
    store a smaller baseline or no null."""
    from optbench.referees.null import max_null_n, null_splits
    try:
        test, limit = dom.split_sizes()["test"], max_null_n(dom)
    except DomainError as e:
        raise SuiteError(f"{where}: {e}") from None
    if n > min(test, limit):
        raise SuiteError(f"{where}: {n} is more than the held-out data of domain {dom.name!r} allows: at "
                         f"most {min(test, limit)} (the real baseline draws n of the {test} test "
                         f"examples, the null n of half the {limit * 2} in {' + '.join(null_splits(dom))}); "
                         "use fewer samples or declare larger splits")


def _lookup(where: str, cell: dict, key: str, registry):
    """The registered (or imported) object a cell's `key` names, or a SuiteError."""
    if not isinstance(cell[key], str):
        raise SuiteError(f"{where}.{key}: expected a string, got {type(cell[key]).__name__}; "
                         f"allowed: {', '.join(registry)}")
    try:
        return registry.lookup(cell[key])
    except (PluginError, DomainError) as e:
        # A registered name that failed to build gets no did-you-mean (it would be itself).
        hint = "" if cell[key] in list(registry) else _suggest(cell[key], registry)
        raise SuiteError(f"{where}.{key}: {e}{hint}") from None


def _expand_cell(where: str, cell: dict, seeds: tuple[int, ...], context: Context, per_sample: bool,
                 origin: dict | None = None, changed: dict | None = None) -> list[CellSpec]:
    """The cell's specs. `origin`: {field: flag} of the fields a command-line flag set,
    named in error messages; `changed`: what the flags changed, added to the labels."""
    origin = origin or {}
    _check_keys(where, cell, CELL_KEYS)
    for key in ("domain", "source", "n_samples"):
        if key not in cell:
            raise SuiteError(f"{where}: missing field {key!r}")
    dom, source = (_lookup(where, cell, key, registry) for key, registry in (("domain", DOMAINS), ("source", SOURCES)))
    domain = cell["domain"]
    try:
        dom.split_sizes()   # the data before the models: they are sized and checked on it
    except DomainError as e:
        raise SuiteError(f"{where}.domain: {e}") from None
    try:
        models = catalog(domain)
    except (CheckpointError, DomainError) as e:
        raise SuiteError(f"{where}.domain: {e}") from None
    proxies = cell.get("proxy", dom.default_proxy)
    proxies = proxies if isinstance(proxies, list) else [proxies]   # a list is a grid axis
    if not proxies:
        raise SuiteError(f"{where}.proxy: empty list; give at least one model")
    for role in ("judges", "ensemble", "feature_spaces"):
        if not getattr(dom, role):   # the referee averages the judges, measures in the spaces
            raise SuiteError(f"{where}.domain: domain {domain!r} declares no {role}; a cell's referee "
                             f"needs at least one: name models of the domain in {role}")
        missing = [m for m in getattr(dom, role) if m not in models]
        if missing:
            raise SuiteError(f"{where}.domain: domain {domain!r} names {missing[0]!r} in {role}, a model it "
                             f"does not have; allowed: {', '.join(sorted(models))} (declare it, or run "
                             f"`optbench train {domain} --only {missing[0]}`)")
    kinds, broken = {}, {}
    for m, e in models.items():
        try:
            kinds[m] = entry_kind(e)
        except PluginError as e:   # an unused model's missing plug-in must not block the suite
            broken[m] = e
    used = {*dom.judges, *dom.ensemble, *dom.feature_spaces}
    proxies_named = cell.get("proxy", dom.default_proxy)
    used |= set(proxies_named if isinstance(proxies_named, list) else [proxies_named])
    for m in sorted(used & broken.keys()):   # the referees' architectures and the proxies' resolve
        raise SuiteError(f"{where}.domain: domain {domain!r}, model {m!r}: {broken[m]}")
    usable = sorted(m for m, k in kinds.items() if k in source.proxy_kinds and m not in referee_roles(domain))
    for proxy in proxies:
        _check_name(f"{where}.proxy", proxy, sorted(models))
        refereeing = referee_as_proxy_error(domain, proxy)
        if refereeing:
            raise SuiteError(f"{where}.proxy: {refereeing}; allowed: {', '.join(usable)}")
        if proxy not in usable:
            raise SuiteError(f"{where}.proxy: {proxy!r} ({models[proxy].get('arch', 'torchscript')}) cannot be a proxy "
                             f"for source {source.name!r}; allowed: {', '.join(usable)}")
    training = cell.get("proxy_training", "shipped")
    _check_name(f"{where}.proxy_training", training, PROXY_TRAINING)
    if training == "replicates":
        for proxy in proxies:
            if not models[proxy].get("replicates"):
                raise SuiteError(f"{where}.proxy: {proxy!r} declares no replicates, so proxy_training = "
                                 f"'replicates' has nothing to cycle; add replicates = [files] to its model table")
    if training == "per_seed":
        from optbench.models.recipes import ENSEMBLE_PROXIES, recipes_for
        try:
            trainable = sorted([*recipes_for(domain), *ENSEMBLE_PROXIES])
        except ValueError:   # a domain the shipped recipes do not fit
            trainable = []
        for proxy in proxies:
            if proxy not in trainable:
                raise SuiteError(f"{where}.proxy: {proxy!r} has no training recipe, so "
                                 f"proxy_training = 'per_seed' cannot replicate it; allowed: "
                                 f"{', '.join(p for p in trainable if p in usable)}")
    spaces = tuple(dom.feature_spaces)
    features = cell.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise SuiteError(f"{where}.features: expected a list of names; allowed: {', '.join(spaces)}")
    for f in features:
        _check_name(f"{where}.features", f, spaces)
    if len(set(features)) != len(features):
        raise SuiteError(f"{where}.features: names must be distinct, got {features!r}")
    n = cell["n_samples"]
    if not isinstance(n, int) or isinstance(n, bool) or not 6 <= n <= MAX_SAMPLES:
        raise SuiteError(f"{where}.n_samples{_from('n_samples', origin)}: expected an integer >= 6 and "
                         f"<= {MAX_SAMPLES}, got {n!r}")
    label = cell.get("label", "")
    if not isinstance(label, str):
        raise SuiteError(f"{where}.label: expected a string, got {type(label).__name__}")
    cell_seeds = _check_seeds(f"{where}.seeds", cell["seeds"]) if "seeds" in cell else seeds
    per_sample = cell.get("per_sample", per_sample)
    if not isinstance(per_sample, bool):
        raise SuiteError(f"{where}.per_sample: expected true or false, got {per_sample!r}")
    settings = cell.get("settings", {})
    if not isinstance(settings, dict):
        raise SuiteError(f"{where}.settings: expected a table, got {type(settings).__name__}")
    _check_keys(f"{where}.settings", settings, source.settings)
    axes = {}
    for key, setting in source.settings.items():
        value = settings.get(key, setting.default)
        at = f"{where}.settings.{key}{_from(f'settings.{key}', origin)}"
        if setting.kind is list:  # a list-valued setting is one value, not a grid axis
            axes[key] = [_check_number_list(at, value, setting)]
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise SuiteError(f"{at}: empty list; give at least one value")
        for v in values:
            _check_value(at, v, setting)
        axes[key] = [float(v) if setting.kind is float else v for v in values]
    _check_memory(where, n, max(axes.get("pool_size", [0])), math.prod(dom.shape), dom.num_classes)
    _check_real_data(f"{where}.n_samples{_from('n_samples', origin)}", dom, n)
    specs = []
    for combo in itertools.product(*axes.values()):
        s = dict(zip(axes, combo))
        problem = source.check(s, dom)
        if not problem and s.get("pool_size", n) < n:
            problem = f"pool_size: must be >= n_samples ({n}), got {s['pool_size']}"
        if not problem and s.get("start") == "mean" and "generator_train" not in dom.splits:
            problem = (f"start: 'mean' starts from the mean generator_train example, and domain "
                       f"{dom.name!r} declares no generator_train split; use 'real' or 'noise', or add the split")
        if problem:
            key = problem.split(":", 1)[0]
            cause = _from((f"settings.{key}", *(["n_samples"] if key == "pool_size" else [])), origin)
            raise SuiteError(f"{where}.settings.{key}{cause}:{problem.split(':', 1)[1]}" if cause else
                             f"{where}.settings.{problem}")
        for m in source.models(s):
            if m not in models:
                from optbench.models.recipes import TRAINED_BY
                raise SuiteError(f"{where}.source: {source.name} needs model {m!r}, which domain "
                                 f"{domain!r} does not have; run `optbench train {domain} --only "
                                 f"{TRAINED_BY.get(m, m)}`")
        curve = _curve_label(label, s, axes, source)
        notes = override_notes(s, changed or {})
        if notes:   # a curve whose spec a flag changed must not share the file's label
            curve = f"{curve} ({', '.join(notes)})"
        for proxy in proxies:
            name = f"{curve} [{proxy}]" if len(proxies) > 1 else curve
            specs += [CellSpec(domain, proxy, cell["source"], n, seed, tuple(sorted(s.items())), name, training,
                               tuple(features), context, tuple(metric_identity(domain).items()), per_sample)
                      for seed in cell_seeds]
    return specs


def _string_list(where: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SuiteError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return value


def _context(path: str, data: dict) -> Context:
    """The suite's plug-ins and file-based domains, activated here (so parsing can check
    names against them) and carried by every cell to the workers."""
    base = Path(path).resolve().parent if path != "<suite>" else Path.cwd()
    folders = tuple(str((base / p).resolve()) for p in _string_list(f"{path}: pythonpath", data.get("pythonpath", [])))
    for folder in folders:
        if not Path(folder).is_dir():
            raise SuiteError(f"{path}: pythonpath: no such folder {folder} (folders are relative to "
                             "the suite file)")
    plugins = tuple(_string_list(f"{path}: plugins", data.get("plugins", [])))
    tables = data.get("domains", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise SuiteError(f"{path}: domains: expected tables [domains.<name>]")
    resolved, extensions = {}, {}
    for name, table in tables.items():
        if not _is_name(name):
            raise SuiteError(f"{path}: domains.{name}: a domain name is 1 to {MAX_NAME} ASCII letters, "
                             "digits, '-' or '_' (it names cache files and folders)")
        if name in DOMAINS and not is_file_domain(name):
            extensions[name] = _extension(path, name, table, base)
            continue
        t = dict(table)
        # Never the package's own folder: `optbench train` would write into site-packages.
        t.setdefault("checkpoints", f"checkpoints/{name}")
        for key in ("path", "checkpoints"):
            if isinstance(t.get(key), str):
                t[key] = str((base / Path(t[key]).expanduser()).resolve())
        missing = [k for k in ("data", "path") if k not in t]
        if missing:
            raise SuiteError(f"{path}: domains.{name}: missing field {missing[0]!r}")
        resolved[name] = t
    context = Context(folders, plugins, json.dumps(resolved, sort_keys=True) if resolved else "",
                      json.dumps(extensions, sort_keys=True) if extensions else "")
    try:
        context.activate()
    except (PluginError, DomainError) as e:
        raise SuiteError(f"{path}: {e}") from None
    return context


def _extension(path: str, name: str, table: dict, base: Path) -> dict:
    """A suite's [domains.<shipped>.models.*] tables: models added to a shipped domain (its
    data, splits, referees and shipped nulls unchanged), each file relative to the suite."""
    where = f"{path}: domains.{name}"
    extra = [k for k in table if k != "models"]
    if extra:
        raise SuiteError(f"{where}: {name!r} is a shipped domain; a suite may only add models to it "
                         f"([domains.{name}.models.<model>]), not set {extra[0]!r}; to change its data "
                         "or referees, declare a new domain under another name")
    models = table.get("models", {})
    if not isinstance(models, dict) or not models or not all(isinstance(t, dict) for t in models.values()):
        raise SuiteError(f"{where}.models: expected tables [domains.{name}.models.<model>]")
    try:
        from optbench.models.checkpoints import read_manifest
        shipped = read_manifest(name)["models"]
    except (CheckpointError, DomainError) as e:
        raise SuiteError(f"{where}: {e}") from None
    out = {}
    for model, entry in models.items():
        if model in shipped:
            raise SuiteError(f"{where}.models.{model}: the name is taken by a shipped model of {name!r}; "
                             "choose another")
        if not _is_name(model):
            raise SuiteError(f"{where}.models.{model}: a model name is 1 to {MAX_NAME} ASCII letters, "
                             "digits, '-' or '_'")
        e = dict(entry)
        for key in ("file", "torchscript", "diffusers"):
            if isinstance(e.get(key), str):
                e[key] = str((base / Path(e[key]).expanduser()).resolve())
        if isinstance(e.get("replicates"), list):
            e["replicates"] = [str((base / Path(f).expanduser()).resolve()) if isinstance(f, str) else f
                               for f in e["replicates"]]
        out[model] = e
    return out


def load_context(path: str | Path) -> Context:
    """Activate a suite file's pythonpath, plugins and [domains] without parsing its
    cells: what a script needs to train models for a domain the suite declares."""
    try:
        data = tomllib.loads(read_suite_text(path))
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: TOML syntax error: {e}") from None
    return _context(str(path), data)


def is_file_domain(name: str) -> bool:
    from optbench.domains.files import FileDomain
    return isinstance(DOMAINS[name], FileDomain)


# The setting that bounds a source's pressure, which `--max-level K` caps at K (the first
# of these that a source declares): the last step of an ascent or fine-tune (max_steps:
# pixel_ascent, online_pixel_ascent, feature_vis, latent_ascent, generator_finetune,
# diffusion_finetune), the last generation of a search (max_generations: random_search,
# cma_es, genetic), the pool that a selection's n or 1/q runs up to (pool_size:
# best_of_n, quantilizer), the guidance scales (scales: those above K are dropped). A
# source with none of them is refused.
PRESSURE_LIMITS = ("max_steps", "max_generations", "pool_size", "scales")


def pressure_limit(source) -> str | None:
    """The setting of `source` that --max-level caps, or None."""
    return next((k for k in PRESSURE_LIMITS if k in source.settings), None)


@dataclass(frozen=True)
class Overrides:
    """Command-line changes to every cell of a suite (`optbench run --seeds ... --n-samples N
    --max-level K`). Applied to the parsed TOML before its cells are expanded
    (apply_overrides), so the values are checked like the file's own and the cell ids
    follow the changed specs: a cell whose spec changed gets a new id, one that did not
    keeps its id."""
    seeds: tuple[int, ...] | None = None     # replace every cell's seeds
    n_samples: int | None = None             # replace every cell's n_samples
    max_level: float | None = None           # cap each source's PRESSURE_LIMITS setting

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.seeds, self.n_samples, self.max_level))

    def flag(self, name: str) -> str:
        """The flag as typed, for messages: '--n-samples 32'."""
        if name == "seeds":
            return "--seeds " + " ".join(str(v) for v in self.seeds)
        if name == "n_samples":
            return f"--n-samples {self.n_samples}"
        return f"--max-level {_number(self.max_level)}"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cap(where: str, value, setting, limit: float):
    """`value` of a PRESSURE_LIMITS setting with its pressure capped at `limit` (a grid
    axis capped value by value, repeats dropped); values that are not numbers are left
    for the checks to refuse."""
    if setting.kind is list:   # guidance scales: the levels themselves
        return [v for v in value if not _is_number(v) or v <= limit] if isinstance(value, list) else value
    if setting.kind is int and not float(limit).is_integer():
        raise SuiteError(f"{where} (from --max-level {_number(limit)}): expected int, this setting "
                         "counts whole steps or samples; give an integer --max-level")
    cap = int(limit) if setting.kind is int else float(limit)
    if isinstance(value, list):
        return list(dict.fromkeys(min(v, cap) if _is_number(v) else v for v in value))
    return min(value, cap) if _is_number(value) else value


def apply_overrides(data: dict, overrides: Overrides, path: str = "<suite>") -> tuple[dict, list[dict]]:
    """The parsed suite file `data` with `overrides` applied, and per [[cell]] table what
    they set: {"origin": {field: flag}, "changed": {"n_samples": 32, "caps": {setting:
    (cap, values before)}}}. Error messages name the flag beside the field
    ("cell[0].n_samples (from --n-samples 3)"), and the labels of curves whose spec
    changed say how ("Adam (n_samples=32)"; override_notes). Values are not checked here:
    the cells are expanded and checked as if the file held them."""
    cells = data.get("cell")
    if not isinstance(cells, list):
        return data, []
    if not overrides:
        return data, [{"origin": {}, "changed": {}} for _ in cells]
    data = {**data, "cell": [dict(c) if isinstance(c, dict) else c for c in cells]}
    if overrides.seeds is not None:
        data["seeds"] = list(overrides.seeds)
    marks = []
    for i, cell in enumerate(data["cell"]):
        mark = {"origin": {}, "changed": {}}
        marks.append(mark)
        if not isinstance(cell, dict):
            continue
        if overrides.seeds is not None:
            cell.pop("seeds", None)   # every cell gets the suite's (overridden) seeds
        if overrides.n_samples is not None:
            mark["origin"]["n_samples"] = overrides.flag("n_samples")
            if cell.get("n_samples") != overrides.n_samples:
                mark["changed"]["n_samples"] = overrides.n_samples
            cell["n_samples"] = overrides.n_samples
        if overrides.max_level is not None:
            _cap_cell(f"{path}: cell[{i}]", cell, overrides, mark)
    return data, marks


def _cap_cell(where: str, cell: dict, overrides: Overrides, mark: dict) -> None:
    """Cap the cell's pressure-bounding setting at --max-level (apply_overrides)."""
    if not isinstance(cell.get("source"), str):
        return   # the expansion refuses it, naming the field
    try:
        source = SOURCES.lookup(cell["source"])
    except (PluginError, DomainError, KeyError):
        return   # the expansion refuses it, with a did-you-mean
    limit = pressure_limit(source)
    if limit is None:
        raise SuiteError(f"{where}.source: {overrides.flag('max_level')} caps the setting that bounds "
                         f"a source's pressure ({', '.join(PRESSURE_LIMITS)}), and source {source.name!r} "
                         f"declares none (its settings: {', '.join(source.settings) or 'none'}); "
                         "drop --max-level, or cap this cell's settings in the suite file")
    settings = cell.get("settings", {})
    if not isinstance(settings, dict):
        return
    setting = source.settings[limit]
    value = settings.get(limit, _default(setting))
    value = list(value) if isinstance(value, tuple) else value
    capped = _cap(f"{where}.settings.{limit}", value, setting, overrides.max_level)
    if capped == value:
        return
    cell["settings"] = {**settings, limit: capped}
    mark["origin"][f"settings.{limit}"] = overrides.flag("max_level")
    before = value if isinstance(value, list) and setting.kind is not list else [value]
    cap = int(overrides.max_level) if setting.kind is int else float(overrides.max_level)
    mark["changed"].setdefault("caps", {})[limit] = (cap, before)


def override_notes(settings: dict, changed: dict) -> list[str]:
    """How the overrides changed one cell's spec (apply_overrides' "changed" of its
    [[cell]] table; `settings`: the cell's), e.g. ["n_samples=32", "max_steps=16"];
    empty where its spec is the file's."""
    notes = [f"n_samples={changed['n_samples']}"] if "n_samples" in changed else []
    for limit, (cap, before) in changed.get("caps", {}).items():
        value = settings.get(limit)
        if isinstance(value, (list, tuple)):   # guidance scales: one list-valued setting
            notes.append(f"{limit}<={_number(cap)}")
        elif value == cap and cap not in before:   # a grid value below the cap kept its spec
            notes.append(f"{limit}={_number(cap)}")
    return notes


def _from(field: str, origin: dict) -> str:
    """' (from --n-samples 3)' where a flag set the field, for error messages."""
    flags = [origin[f] for f in ((field,) if isinstance(field, str) else field) if f in origin]
    return f" (from {', '.join(dict.fromkeys(flags))})" if flags else ""


def parse_suite(text: str, path: str = "<suite>", overrides: Overrides | None = None) -> Suite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: TOML syntax error: {e}") from None
    return parse_suite_data(data, path, overrides)


def parse_suite_data(data: dict, path: str = "<suite>", overrides: Overrides | None = None) -> Suite:
    """A suite from its parsed TOML tables (what `optbench card` builds in memory);
    relative paths are read from `path`'s folder. `overrides`: command-line changes to
    every cell (apply_overrides), applied before the cells are expanded and checked."""
    _check_keys(path, data, SUITE_KEYS)
    name = data.get("name")
    if not _is_name(name):
        shown = name if not isinstance(name, str) or len(name) <= 40 else name[:40] + f"... ({len(name)} characters)"
        raise SuiteError(f"{path}: name: expected 1 to {MAX_NAME} ASCII letters, digits, '-' or '_' "
                         f"(it names the results folder), got {shown!r}")
    overrides = overrides or Overrides()
    if overrides.seeds is None:   # else checked once the overrides are applied, naming the flag
        _check_seeds(f"{path}: seeds", data.get("seeds", [0]))
    if not isinstance(data.get("description", ""), str):
        raise SuiteError(f"{path}: description: expected a string, got "
                         f"{type(data['description']).__name__} {data['description']!r}")
    from optbench.referees.null import null_draws
    null_draws()   # a bad OPTBENCH_NULL_DRAWS or OPTBENCH_CACHE fails here, not inside every cell
    from optbench.cache import cache_root
    cache_root()
    context = _context(path, data)
    data, marks = apply_overrides(data, overrides, path)   # after the plug-ins: they may add sources
    seeds_origin = {"seeds": overrides.flag("seeds")} if overrides.seeds is not None else {}
    seeds = _check_seeds(f"{path}: seeds{_from('seeds', seeds_origin)}", data.get("seeds", [0]))
    cells = data.get("cell")
    if not isinstance(cells, list) or not cells:
        raise SuiteError(f"{path}: cell: expected at least one [[cell]] table")
    specs, owner = [], []   # owner[k]: the [[cell]] index that made specs[k]
    per_sample = data.get("per_sample", False)
    if not isinstance(per_sample, bool):
        raise SuiteError(f"{path}: per_sample: expected true or false, got {per_sample!r}")
    for i, cell in enumerate(cells):
        expanded = _expand_cell(f"{path}: cell[{i}]", cell, seeds, context, per_sample, **marks[i])
        specs += expanded
        owner += [i] * len(expanded)
    ids = [s.cell_id for s in specs]
    if len(set(ids)) != len(ids):
        if overrides:   # the file's cells differed: the flags made two the same
            first: dict[str, int] = {}
            i, j = next((first[c], k) for k, c in enumerate(ids) if first.setdefault(c, k) != k)
            flags = " ".join(overrides.flag(f) for f in ("seeds", "n_samples", "max_level")
                             if getattr(overrides, f) is not None)
            raise SuiteError(f"{path}: cell[{owner[i]}] and cell[{owner[j]}] make identical cells after "
                             f"{flags}; drop one of them from the suite file or choose other values")
        raise SuiteError(f"{path}: two cells have identical specs; remove the duplicate")
    # Labels name curves in tables, legends and grid files, so two curves (cells that
    # differ in more than the seed) must not share one.
    curves: dict[str, tuple[str, int]] = {}   # label -> (group key, cell index)
    for spec, i in zip(specs, owner):
        key, first = curves.setdefault(spec.label, (spec.group_key(), i))
        if key != spec.group_key():
            raise SuiteError(f"{path}: cell[{first}] and cell[{i}] both make curves labelled "
                             f"{spec.label!r}; labels name curves in tables, legends and grid "
                             "files: give each a distinct label")
    refine = data.get("refine", False)
    if not isinstance(refine, bool):
        raise SuiteError(f"{path}: refine: expected true or false, got {refine!r}")
    return Suite(name, str(data.get("description", "")), tuple(specs), path,
                 _overrides_line(overrides, marks, specs, owner), refine)


def _overrides_line(overrides: Overrides, marks: list[dict], specs: list[CellSpec], owner: list[int]) -> str:
    """What the overrides did, in one line ("" without overrides); `owner[k]`: the
    [[cell]] table that made specs[k]."""
    if not overrides:
        return ""
    parts, tables = [], len(marks)
    if overrides.seeds is not None:
        parts.append(f"{overrides.flag('seeds')} (every cell's seeds)")
    if overrides.n_samples is not None:
        hit = sum("n_samples" in m["changed"] for m in marks)
        parts.append(f"{overrides.flag('n_samples')} (changed {hit} of {tables} [[cell]] tables)")
    if overrides.max_level is not None:
        capped = [m["changed"].get("caps", {}) for m in marks]
        names = sorted({k for c in capped for k in c})
        parts.append(f"{overrides.flag('max_level')} (capped {', '.join(names) or 'nothing'} in "
                     f"{sum(map(bool, capped))} of {tables} [[cell]] tables)")
    notes = [override_notes(spec.settings_dict, marks[i]["changed"]) for spec, i in zip(specs, owner)]
    changed = sum(map(bool, notes))
    example = next((n for n in notes if n), [])
    return "; ".join(parts) + (f"; {changed} of {len(specs)} cells have a changed spec: new ids, labels "
                               f"marked '({', '.join(example)})'" if changed else "; no cell's spec changed")


def read_suite_text(path: str | Path) -> str:
    """A suite file's text, or a SuiteError saying why it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise SuiteError(f"{p}: no such suite file")
    if p.is_dir():
        raise SuiteError(f"{p}: is a folder; expected a suite file (.toml)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SuiteError(f"{p}: cannot read: {e.strerror or e}") from None
    try:  # utf-8-sig: accept (and drop) the byte-order mark some editors write
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at position "
                         f"{e.start}); save the suite file as UTF-8") from None


def load_suite(path: str | Path, overrides: Overrides | None = None) -> Suite:
    return parse_suite(read_suite_text(path), str(path), overrides)
