"""The cell record: what a cell folder holds, owned here. The runner is its only writer
(runner.write_cell fills a `CellRecord` and calls `write`), the report its only reader
(`read_cell`). The layout's version is RECORD_VERSION, written as "schema" in spec.json,
curve.json and meta.json; a reader checks every field it relies on and names the file and field
of anything else.

    spec.json              the cell's canonical spec and the versions in its id, and what
                           the report needs to read the rows without knowing sources by
                           name: knob, distance, pressure, proxy_kind, goodhart_law,
                           figure_row, source_values, bounds
    curve.json             rows (one per pressure level: the knob, pressure, every
                           metric's value, the source's own declared values, proxy
                           queries), baseline (every metric on n real examples), null
                           (per metric with one), equal_proxy (exact equal-proxy points)
    curve.csv              the rows as a table
    snapshots.safetensors  the first outputs of every level, their targets, the levels
    meta.json              provenance: machine, kernels, versions, commit, wall time
    refined.json           only for suites with refine = true: rows at extra steps inside
                           the brackets where departures happen (optbench/refine.py)
    samples.safetensors    only when the cell's spec asks for per_sample: every per-sample
                           metric's value for each output, "<key>" (levels, n) and
                           "real:<key>" (n,) on the real baseline, float32 (float16 for
                           0/1 verdicts), NaN where an output diverged

(grid.png, figures.safetensors and DONE are written beside them by the runner.)"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from optbench.text import csv_cell

RECORD_VERSION = 1
SPEC, CURVE, CURVE_CSV, SNAPSHOTS, META = "spec.json", "curve.json", "curve.csv", "snapshots.safetensors", "meta.json"
SAMPLES = "samples.safetensors"
REFINED, REFINE_VERSION = "refined.json", 1   # written by optbench/refine.py
REAL_PREFIX = "real:"


@dataclass(frozen=True)
class CellRecord:
    spec: dict                   # spec.json's fields (the schema is added on writing)
    rows: list[dict]             # one per pressure level
    baseline: dict               # every metric on n held-out real examples
    null: dict                   # per metric with a null: mean, std, q01, q99, draws, n
    equal_proxy: list[dict]      # exact equal-proxy points (iterative sources)
    meta: dict                   # provenance
    snapshots: torch.Tensor      # (levels, k, *shape) the first k outputs of each level
    targets: torch.Tensor        # (k,)
    samples: dict | None = None  # per-sample values (SAMPLES), when the spec asks for them

    def write(self, folder: Path) -> None:
        """The record's files into `folder` (the runner's temporary cell folder)."""
        folder = Path(folder)
        knob, cell_id = self.spec["knob"], self.spec["cell_id"]
        (folder / SPEC).write_text(json.dumps({"schema": RECORD_VERSION, **self.spec}, indent=2, sort_keys=True) + "\n")
        curve = {"schema": RECORD_VERSION, "cell_id": cell_id, "knob": knob, "rows": self.rows,
                 "baseline": self.baseline, "equal_proxy": self.equal_proxy, "null": self.null}
        (folder / CURVE).write_text(json.dumps(curve, indent=1, allow_nan=True) + "\n")
        keys = list(dict.fromkeys(k for row in self.rows for k in row))   # every row's, in order
        with open(folder / CURVE_CSV, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([csv_cell(k) for k in keys])   # plug-in metric names are user text
            w.writerows([[row.get(k, "") for k in keys] for row in self.rows])
        save_file({"snapshots": self.snapshots.contiguous(), "targets": self.targets.contiguous(),
                   "levels": torch.tensor([r[knob] for r in self.rows])}, str(folder / SNAPSHOTS))
        (folder / META).write_text(json.dumps({"schema": RECORD_VERSION, **self.meta}, indent=2) + "\n")
        if self.samples:
            save_file({k: _compact(v) for k, v in self.samples.items()}, str(folder / SAMPLES))


def read_cell(folder: Path) -> dict:
    """A cell's spec, curve and meta. A file that is not what the runner writes (edited
    by hand, or replaced along with its DONE) raises a ValueError naming the file and the
    field, so the report can leave the cell out instead of failing half-way through it."""
    folder = Path(folder)
    kinds = {str: "a string", int: "an integer", float: "a number", dict: "a table", list: "a list"}

    def load(name: str) -> tuple[Path, dict]:
        path = folder / name
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not valid JSON (byte 0x{e.object[e.start]:02x} at position "
                             f"{e.start} is not UTF-8)") from None
        if not isinstance(data, dict):
            kind = next((v for k, v in kinds.items() if isinstance(data, k)), "null")
            raise ValueError(f"{path}: expected a JSON object, got {kind}")
        return path, data

    def need(path: Path, table: dict, fields: dict, where: str = "") -> None:
        for key, kind in fields.items():
            value = table.get(key)
            # JSON numbers load as int or float; true and false are ints to Python
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
                raise ValueError(f"{path}: {where}field {key!r} is missing or not {kinds[kind]}")

    def each(path: Path, items, name: str, fields: dict) -> None:
        for key, item in (items.items() if isinstance(items, dict) else enumerate(items)):
            where = f"{name}[{key!r}]"
            if not isinstance(item, dict):
                raise ValueError(f"{path}: {where} is not a table")
            need(path, item, fields, f"{where}: ")

    spec_path, spec = load(SPEC)
    need(spec_path, spec, {"cell_id": str, "label": str, "knob": str, "domain": str, "proxy": str,
                           "source": str, "seed": int, "n_samples": int, "settings": dict})
    curve_path, curve = load(CURVE)
    need(curve_path, curve, {"rows": list, "baseline": dict})
    if not curve["rows"]:
        raise ValueError(f"{curve_path}: field 'rows' is empty")
    each(curve_path, curve["rows"], "rows", {k: float for k in (
        spec["knob"], "proxy_prob", "judge_prob", "gap", "diverged_frac", "kid", "fid")})
    need(curve_path, curve["baseline"], {"kid": float, "fid": float}, "baseline: ")
    # Results made before nulls and equal-proxy points were stored have neither.
    need(curve_path, {"null": {}, "equal_proxy": [], **curve}, {"null": dict, "equal_proxy": list})
    each(curve_path, curve.get("null", {}), "null", {"q01": float, "q99": float})
    each(curve_path, curve.get("equal_proxy", []), "equal_proxy", {"threshold": float, "reached_frac": float})
    _check_snapshots(folder / SNAPSHOTS, len(curve["rows"]))
    out = {"spec": spec, "curve": curve, "meta": load(META)[1], "folder": str(folder)}
    refined = read_refined(folder, spec["knob"])
    return out | ({"refined": refined} if refined is not None else {})


def read_refined(folder: Path, knob: str) -> dict | None:
    """A cell's refined.json (optbench/refine.py) when it is current, well formed and its
    bracket ends reproduced the grid; else None. An optional file written after DONE: a
    damaged one leaves the cell as it is (read on its grid) and is redone by the next
    refining run."""
    path = Path(folder) / REFINED
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or any(
            not isinstance(r, dict) or not isinstance(r.get(knob), (int, float)) for r in data["rows"]):
        return None
    return data if data.get("version") == REFINE_VERSION and data.get("reproduced") is True else None


def _check_snapshots(path: Path, levels: int) -> None:
    """The grid's images: a safetensors file with one snapshot per level (its header
    only; the tensors are read when drawn)."""
    from safetensors import safe_open

    from optbench.errors import message_line
    try:
        with safe_open(str(path), "pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception as e:   # safetensors raises its own error type for a damaged file
        raise ValueError(f"{path}: not a readable safetensors file ({message_line(e)})") from None
    if "snapshots" not in shapes or not shapes["snapshots"] or shapes["snapshots"][0] != levels:
        raise ValueError(f"{path}: expected a tensor 'snapshots' with one row per level ({levels}), "
                         f"found {shapes.get('snapshots')}")


def _compact(v: torch.Tensor) -> torch.Tensor:
    """float16 for 0/1 verdicts (exact in it), float32 for every other value."""
    finite = v[torch.isfinite(v)]
    verdict = bool(((finite == 0) | (finite == 1)).all())
    return v.to(torch.float16 if verdict else torch.float32).contiguous()


def read_samples(folder: Path) -> dict[str, "np.ndarray"] | None:
    """A cell's per-sample values (SAMPLES) as float64 arrays, or None when the cell did
    not keep them; a damaged file raises a ValueError naming it."""
    import numpy as np
    from safetensors.numpy import load_file

    from optbench.errors import message_line
    path = Path(folder) / SAMPLES
    if not path.is_file():
        return None
    try:
        return {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}
    except Exception as e:   # safetensors raises its own error type for a damaged file
        raise ValueError(f"{path}: not a readable safetensors file ({message_line(e)})") from None
