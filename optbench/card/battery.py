"""The standard battery: a suite file shipped in the package (batteries/image.toml,
batteries/vector.toml), turned into a suite for one model.

A battery is a suite file with three additions, removed here before the suite is parsed:
`version` (the protocol: leaderboard rows compare only at equal versions), `quick` (what
`--quick` changes) and, per cell, `for` (the proxy kinds it applies to) and `control`
(also push the same architecture untrained). The model enters the shipped domain as a
suite's `[domains.<domain>.models.<name>]` table, so its cells are keyed by its sha256
and use the domain's referees and shipped nulls as they are."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from optbench.domains import get_domain
from optbench.models.checkpoints import catalog
from optbench.pressure import SOURCES
from optbench.suite import Suite, SuiteError, parse_suite_data

BATTERIES = Path(__file__).resolve().parent / "batteries"
BATTERY_KEYS = ("version", "quick")
CELL_KEYS = ("for", "control")
# The settings that bound a source's pressure; --quick multiplies them by quick.pressure.
PRESSURE_CAPS = ("max_steps", "max_generations", "pool_size")
CONTROL_SUFFIX = "_control"


@dataclass(frozen=True)
class CardModel:
    """The model a card measures: its name, its model table (as a suite declares one:
    arch, arch_kwargs, file / torchscript, kind) and its untrained control's, if any."""
    name: str
    entry: dict
    kind: str = "classifier"
    control: dict | None = None
    why_no_control: str = ""
    replicates: tuple[str, ...] = field(default=())

    @property
    def control_name(self) -> str:
        return self.name + CONTROL_SUFFIX


def battery_path(domain: str) -> Path:
    """The battery a domain gets: by the kind of its samples."""
    return BATTERIES / ("image.toml" if get_domain(domain).is_image else "vector.toml")


def read_battery(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: TOML syntax error: {e}") from None


def protocol(path: Path, suite: Suite, quick: bool) -> dict:
    """What a leaderboard row must share with another to be compared: the battery's
    file name and version, whether it ran quick, its seeds and samples per level."""
    data = read_battery(path)
    # The battery's content (comments aside): a leaderboard compares cards of one battery.
    content = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return {"battery": Path(path).name, "battery_sha256": content, "version": data.get("version", 1),
            "quick": bool(quick),
            "seeds": sorted({c.seed for c in suite.cells}),
            "n_samples": sorted({c.n_samples for c in suite.cells}),
            "pressure": float(_quick(data).get("pressure", 1.0)) if quick else 1.0}


def _quick(data: dict) -> dict:
    return data.get("quick", {})


def _cap(value: int, factor: float) -> int:
    """A pressure cap times `factor`, rounded to a power of two (levels are 0, 1, 2, 4, ...)."""
    return max(1, 2 ** round(math.log2(max(1.0, value * factor))))


def battery_suite(domain: str, model: CardModel, *, name: str, quick: bool = False,
                  seeds: list[int] | None = None, n_samples: int | None = None,
                  path: Path | None = None, pythonpath: tuple[str, ...] = ()) -> tuple[Suite, list[dict]]:
    """The battery's suite for `model` on `domain`, and the cells left out (each with why)."""
    path = Path(path or battery_path(domain))
    data = read_battery(path)
    quick_table = _quick(data)
    for key in BATTERY_KEYS:
        data.pop(key, None)
    factor = float(quick_table.get("pressure", 1.0)) if quick else 1.0
    data["seeds"] = list(seeds if seeds is not None else quick_table.get("seeds", data.get("seeds"))
                         if quick else data.get("seeds", [0]))
    data["name"] = name
    if pythonpath:   # where the model's module:Class imports from, in every worker too
        data["pythonpath"] = [str(Path(p).resolve()) for p in pythonpath]
    models = catalog(domain)
    declared = {model.name: {**model.entry, **({"replicates": list(model.replicates)} if model.replicates else {})}}
    if model.name in models and models[model.name].get("sha256") == model.entry.get("sha256"):
        declared = {}   # a shipped model under its own name: the shipped entry, nothing to add
    if model.control is not None:
        declared[model.control_name] = model.control
    if declared:
        data["domains"] = {domain: {"models": declared}}
    cells, left_out = [], []
    for cell in data.get("cell", []):
        cell = copy.deepcopy(cell)
        kinds = cell.pop("for", ["classifier", "realness"])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        control = cell.pop("control", False)
        if model.kind not in kinds:
            continue
        settings = cell.setdefault("settings", {})
        source = SOURCES[cell["source"]]
        needed = [m for m in source.models({**{k: s.default for k, s in source.settings.items()}, **settings})
                  if m not in models]
        if needed:
            left_out.append({"label": cell.get("label", cell["source"]),
                             "why": f"domain {domain!r} has no model {needed[0]!r}"})
            continue
        for key in PRESSURE_CAPS:
            if key in settings and factor != 1.0:
                settings[key] = _cap(settings[key], factor)
        if n_samples is not None:
            cell["n_samples"] = n_samples
            if "pool_size" in settings:
                settings["pool_size"] = max(settings["pool_size"], n_samples)
        cells.append({**cell, "domain": domain, "proxy": model.name,
                      **({"proxy_training": "replicates"} if model.replicates else {})})
        if control:
            if model.control is None:
                left_out.append({"label": cell.get("label", cell["source"]) + ", untrained control",
                                 "why": model.why_no_control})
            else:
                cells.append({**copy.deepcopy(cell), "domain": domain, "proxy": model.control_name,
                              "label": cell.get("label", cell["source"]) + ", untrained control"})
    if not cells:
        raise SuiteError(f"{path}: no cell of the battery runs for a {model.kind} model on {domain!r} "
                         f"(each cell's `for` names the kinds; left out: "
                         f"{'; '.join(x['label'] + ': ' + x['why'] for x in left_out) or 'none'}); check --kind")
    data["cell"] = cells
    return parse_suite_data(data, str(path)), left_out
