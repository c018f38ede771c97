"""Departure levels resolved finer than the log2 grid.

A cell evaluates an iterative source at steps 0, 1, 2, 4, 8, ..., so a departure read from
the grid is known only to within a doubling: "departs at 16" means somewhere in (8, 16].
Refinement reruns the cell's source (its numbers are a function of its spec: the same
proxy, starts and noise) with extra steps inside each bracket (a, b] where a departure
key first stays beyond its null, evaluates the referee there, and stores those rows in
`refined.json` beside the cell:

    steps       every step between a and b when b - a <= SUBDIVISIONS (exact steps),
                else SUBDIVISIONS - 1 evenly spaced ones (resolution (b - a) / 8)
    keys        KID in every feature space and the exact departure truths (gold_ks,
                gold_atypical) where the cell has them: the departures the findings read
    check       the bracket ends are evaluated again; a refinement whose values there
                give another verdict than the grid's, or differ from its values by more
                than REPRODUCE_RTOL (relative), is stored as not reproduced and never read; the largest difference is recorded

report/summary.departs_at reads the grid's rows and the refined ones together, so each
seed's departure has the resolution of the last evaluated step before it
(`departure_resolution`). Continuous knobs (guidance scales, pool sizes) are not refined:
their departures keep the grid's resolution, and the summary says so.

The cell's own files are not changed (its id, rows and snapshots stay what the spec
made); `refined.json` is versioned and rewritten when REFINE_VERSION moves."""
from __future__ import annotations

import json
import math
from pathlib import Path

from optbench.record import REFINE_VERSION, REFINED

SUBDIVISIONS = 8
# Bracket ends must give the grid's verdicts (beyond the null or not) and match its values
# to this relative tolerance: cells made on another CPU (other kernels, other thread
# counts) differ by 1e-7 to 1e-3 relative, the most where KID is near 0.
REPRODUCE_RTOL = 1e-2
DEPARTURE_TRUTHS = ("gold_ks", "gold_atypical")


def refine_keys(cell: dict) -> list[str]:
    """KID in every feature space and the exact departure truths the cell has a null for."""
    row, null = cell["curve"]["rows"][0], cell["curve"].get("null") or {}
    return [k for k in row if (k == "kid" or k.startswith("kid@") or k in DEPARTURE_TRUTHS) and k in null]


def grid_departure(cell: dict, key: str) -> float:
    """The first grid level from which `key` is beyond its null at that level and every
    later one where it is defined (the rule of report/summary.departs_at, read here on
    the grid rows only, with the null's own thresholds); NaN if it never departs."""
    from optbench.referees.null import departed
    knob, null = cell["spec"]["knob"], cell["curve"].get("null") or {}
    at = math.nan
    for r in reversed([r for r in cell["curve"]["rows"] if math.isfinite(r.get(key, math.nan))]):
        if not departed(null, key, r[key]):
            break
        at = r[knob]
    return at


def brackets(cell: dict, keys: list[str]) -> list[tuple[int, int]]:
    """(a, b): the grid level b where a key departs and the level a before it, for every
    key that departs after level 0."""
    knob = cell["spec"]["knob"]
    levels = [int(r[knob]) for r in cell["curve"]["rows"]]
    out = set()
    for key in keys:
        at = grid_departure(cell, key)
        if math.isfinite(at) and at > levels[0]:
            b = levels.index(int(at))
            out.add((levels[b - 1], levels[b]))
    return sorted(out)


def interior(a: int, b: int) -> list[int]:
    """The steps evaluated strictly inside (a, b)."""
    if b - a <= SUBDIVISIONS:
        return list(range(a + 1, b))
    return sorted({a + round((b - a) * i / SUBDIVISIONS) for i in range(1, SUBDIVISIONS)} - {a, b})


def refine_cell(spec, folder: Path, referee, proxy) -> dict:
    """Rerun one complete cell (its `proxy`: the one the cell pushed against) with the
    extra steps and write refined.json; returns it."""
    from optbench.domains import get_domain
    from optbench.pressure import SOURCES
    from optbench.pressure.source import Context
    from optbench.record import read_cell
    from optbench.referees.null import departed
    from optbench.storage import write_atomic

    cell = read_cell(folder)
    knob = cell["spec"]["knob"]
    keys = refine_keys(cell)
    spans = brackets(cell, keys)
    extra = sorted({s for a, b in spans for s in interior(a, b)})
    ends = sorted({b for _, b in spans})
    out = {"schema": "optbench.refined/1", "version": REFINE_VERSION, "cell_id": spec.cell_id, "knob": knob,
           "keys": keys, "brackets": [list(s) for s in spans], "subdivisions": SUBDIVISIONS,
           "reproduced": True, "max_rel_diff": 0.0, "rows": []}
    if extra:
        ctx = Context(proxy, get_domain(spec.domain), spec.n_samples, spec.seed, None,
                      tuple(sorted({0, *extra, *ends})))
        traj = SOURCES[spec.source].run(ctx, spec.settings_dict)
        start = traj.start if traj.has_start else None
        grid = {int(r[knob]): r for r in cell["curve"]["rows"]}
        wanted = set(extra) | set(ends)
        for level in traj.levels:
            step = int(level.knob)
            if step not in wanted:
                continue
            values = referee.evaluate(level.x, traj.target, start, proxy)
            row = {knob: step, **{k: values.get(k, math.nan) for k in keys}}
            if step in grid:   # a bracket end: must reproduce the grid's verdicts and values
                null = cell["curve"].get("null") or {}
                out["reproduced"] &= all(_same(row[k], grid[step].get(k, math.nan))
                                         and departed(null, k, row[k]) == departed(null, k, grid[step].get(k, math.nan))
                                         for k in keys if math.isfinite(row[k]))
                out["max_rel_diff"] = max(out["max_rel_diff"], *(_rel(row[k], grid[step].get(k, math.nan))
                                                                 for k in keys))
            else:
                out["rows"].append(row)
    write_atomic(Path(folder) / REFINED, json.dumps(out, indent=1, allow_nan=True) + "\n")
    return out


def _rel(a: float, b: float) -> float:
    return 0.0 if not (math.isfinite(a) and math.isfinite(b)) or a == b else abs(a - b) / max(abs(a), abs(b))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REPRODUCE_RTOL, abs_tol=1e-9)


def needs_refinement(spec, folder: Path) -> bool:
    """An iterative cell without a refined.json of this version that reads back (a
    damaged file is redone; a not-reproduced one is an outcome and stays)."""
    from optbench.pressure import SOURCES
    path = Path(folder) / REFINED
    if not SOURCES[spec.source].iterative:
        return False
    try:
        data = json.loads(path.read_text())
        return data.get("version") != REFINE_VERSION or not isinstance(data.get("rows"), list)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return True
