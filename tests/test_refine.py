"""Departure refinement (optbench/refine.py): the refined departure of a digits8 pixel
ascent is the one a brute-force run that evaluates every step finds, the bracket ends
reproduce the grid, and the report reads the refined rows."""
from __future__ import annotations

import json
import math

import pytest

SUITE = """
name = "ref"
seeds = [0, 1]
refine = true
[[cell]]
domain = "digits8"
proxy_training = "per_seed"
source = "pixel_ascent"
n_samples = 128
settings = { start = "real", lr = 0.05, max_steps = 16, optimizer = "sgd" }
"""


def first_staying_beyond(values: list[float], threshold: float) -> int | None:
    """The first index from which every value is above the threshold (by hand)."""
    at = None
    for i in range(len(values) - 1, -1, -1):
        if not values[i] > threshold:
            break
        at = i
    return at


@pytest.fixture(scope="module")
def refined_cell(tmp_path_factory):
    from optbench.report.summary import load_cells
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    out = tmp_path_factory.mktemp("ref")
    suite = parse_suite(SUITE)
    counts = run_suite(suite, out, log=lambda *_: None, workers=2)   # cells and refinement in a pool
    assert counts["computed"] == 2 and counts["refine_refined"] == 2
    cell = next(c for c in load_cells(out / "ref") if c["spec"]["seed"] == 0)
    return suite, cell, out


def test_the_refined_departure_is_the_brute_force_one(refined_cell):
    from optbench.domains import get_domain
    from optbench.pressure import SOURCES
    from optbench.pressure.source import Context
    from optbench.report.summary import departs_at, departure_resolution
    from optbench.runner import cell_proxy, referee_for
    suite, cell, _ = refined_cell
    spec = next(s for s in suite.cells if s.seed == 0)
    data = cell["refined"]
    assert data["reproduced"] and data["brackets"], data
    referee = referee_for(spec, "cpu")
    proxy, _ = cell_proxy(spec, referee)
    ctx = Context(proxy, get_domain("digits8"), 128, 0, None, tuple(range(17)))   # every step
    traj = SOURCES["pixel_ascent"].run(ctx, spec.settings_dict)
    every = [referee.evaluate(level.x, traj.target, traj.start, proxy) for level in traj.levels]
    departed = 0
    for key in data["keys"]:
        want = first_staying_beyond([v[key] for v in every], cell["curve"]["null"][key]["q99"])
        got = departs_at(cell, key)
        grid = departs_at(cell, key, refined=False)
        if want is None:
            assert math.isnan(got)
            continue
        # Brackets of at most 8 steps are refined exactly: the brute-force answer.
        assert got == want, (key, got, want, grid)
        departed += 1
        assert grid >= got and (departure_resolution(cell, key) == 1 or got == 0)
    assert departed >= 2   # SGD against the trained proxy leaves within 16 steps in several spaces


def test_an_unreproduced_refinement_is_never_read(refined_cell):
    from pathlib import Path

    from optbench.record import REFINED, read_cell
    suite, cell, _ = refined_cell
    folder = Path(cell["folder"])
    path = folder / REFINED
    data = json.loads(path.read_text())
    try:
        path.write_text(json.dumps({**data, "reproduced": False}))
        assert "refined" not in read_cell(folder)
        path.write_text("{not json")   # damaged: the cell reads on its grid, and is refined again
        assert "refined" not in read_cell(folder)
        from optbench.refine import needs_refinement
        assert needs_refinement(next(s for s in suite.cells if s.seed == 0), folder)
    finally:
        path.write_text(json.dumps(data))
