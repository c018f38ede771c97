"""The runner under abuse (issue 11): a referee offered as the proxy, two runs on one
folder, killed parents of worker pools, full disks while writing cells and plots, and
levels where every sample diverged. The process cases use real processes."""
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optbench.cli import main as cli
from optbench.runner import compute_cell, run_suite, write_cell
from optbench.storage import cell_is_complete
from optbench.storage import StorageError, SuiteBusyError, suite_lock
from optbench.suite import CellSpec, SuiteError, parse_suite

SMALL = """
name = "small"
seeds = [0]
[[cell]]
label = "small"
domain = "mnist"
source = "pixel_ascent"
n_samples = 8
settings = { start = ["real", "noise"], max_steps = 4, lr = 0.05 }
"""

# About 6 s a cell on one core: long enough to act on a run while it is under way.
SLOW = """
name = "slow"
seeds = [0, 1, 2, 3]
[[cell]]
label = "slow"
domain = "mnist"
source = "pixel_ascent"
n_samples = 8
settings = { start = "noise", max_steps = 128, lr = 0.01 }
"""


def _start_run(suite_text: str, tmp_path: Path, *extra: str) -> subprocess.Popen:
    suite = tmp_path / "suite.toml"
    suite.write_text(suite_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "run.log", "w")   # a file, not a pipe: children inherit it
    return subprocess.Popen([sys.executable, "-m", "optbench.cli", "--threads", "1", "run", str(suite),
                             "--out", str(tmp_path / "out"), "--device", "cpu", *extra],
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    t0 = time.time()
    while not condition():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- a referee offered as the proxy ------------------------------------------------------

@pytest.mark.parametrize("model", ["judge_bncnn", "judge_robust", "judge_mlp"])
def test_a_referee_is_refused_as_the_proxy_naming_its_roles(model):
    text = SMALL.replace('source = "pixel_ascent"', f'proxy = "{model}"\nsource = "pixel_ascent"')
    with pytest.raises(SuiteError, match=rf"cell\[0\]\.proxy: '{model}' is a referee of domain 'mnist' "
                                         r"\(judge.*\); .*allowed: gan_discriminator, proxy_adv05"):
        parse_suite(text)
    from optbench.referees import Referee
    with pytest.raises(ValueError, match="is a referee"):
        Referee("mnist", model)      # the Python API refuses it too


def test_the_feature_net_role_is_named():
    text = SMALL.replace('source = "pixel_ascent"', 'proxy = "judge_bncnn"\nsource = "pixel_ascent"')
    with pytest.raises(SuiteError, match="feature net of FID/KID/PRDC/C2ST"):
        parse_suite(text)


# --- two runs on one suite folder --------------------------------------------------------

def test_a_second_run_on_a_busy_folder_is_refused_and_deletes_nothing(tmp_path, capsys):
    first = _start_run(SLOW, tmp_path)
    suite_dir = tmp_path / "out" / "slow"
    lock = suite_dir / ".lock"
    try:
        _wait_for(lambda: lock.exists() and f"pid {first.pid}" in lock.read_text(), what="the lock")
        stale_looking = suite_dir / ".0123456789abcdef.xyz"    # as a live run's temporary folder
        stale_looking.mkdir()
        with pytest.raises(SuiteBusyError, match=rf"in use by another optbench process \(pid {first.pid} "):
            run_suite(parse_suite(SLOW), tmp_path / "out", device="cpu", log=lambda *_: None)
        assert stale_looking.exists()          # a refused run touches nothing
        assert cli(["run", str(tmp_path / "suite.toml"), "--out", str(tmp_path / "out")]) == 4
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another optbench process" in err[0]
        assert cli(["plot", str(suite_dir)]) in (2, 4)   # 2 if no cell is complete yet
        stale_looking.rmdir()
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0, (tmp_path / "run.log").read_text()
    assert all(cell_is_complete(suite_dir / s.cell_id) for s in parse_suite(SLOW).cells)


def test_temporaries_of_a_dead_run_are_removed_once_the_lock_is_free(tmp_path):
    suite = parse_suite(SMALL)
    suite_dir = tmp_path / "small"
    suite_dir.mkdir()
    dead = suite_dir / f".{suite.cells[0].cell_id}.abc123"    # left by a kill -9
    dead.mkdir()
    (dead / "spec.json").write_text("{}")
    run_suite(suite, tmp_path, device="cpu", log=lambda *_: None)
    assert not dead.exists()
    with suite_lock(suite_dir):                  # reentrant within one process
        with suite_lock(suite_dir):
            pass


# --- the parent of a worker pool is killed ----------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _is_pool_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent_and_write_nothing_after(tmp_path):
    run = _start_run(SLOW, tmp_path, "--workers", "2")
    suite_dir = tmp_path / "out" / "slow"
    workers: list[int] = []

    def two_workers_busy():
        workers[:] = [c for c in _children(run.pid) if _is_pool_worker(c)]
        return len(workers) == 2 and any(suite_dir.glob(".lock"))
    _wait_for(two_workers_busy, what="two pool workers")
    time.sleep(3.0)                              # they are inside their first cells now
    os.kill(run.pid, signal.SIGKILL)             # what the OOM killer does
    run.wait(timeout=30)
    t0 = time.time()
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=10, what="workers to exit")
    assert time.time() - t0 < 5
    before = sorted(p.name for p in suite_dir.iterdir())
    time.sleep(8)                                # longer than a cell: an orphan would write one
    assert sorted(p.name for p in suite_dir.iterdir()) == before


# --- full disks -------------------------------------------------------------------------

def test_a_safetensors_error_on_a_full_disk_is_a_one_line_storage_error(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import optbench.record as record

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')
    monkeypatch.setattr(record, "save_file", full)
    with pytest.raises(StorageError, match=r"cannot write cell .*No space left on device .*rerun resumes") as e:
        run_suite(parse_suite(SMALL), tmp_path, device="cpu", log=lambda *_: None)
    assert "\n" not in str(e.value)
    assert [p.name for p in (tmp_path / "small").iterdir()] == [".lock"]   # no half-written cell


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    run_suite(parse_suite(SMALL), out, device="cpu", log=lambda *_: None)
    from optbench.report import write_suite_outputs
    write_suite_outputs(out / "small")
    return out / "small"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".png", ".md", ".json", ".csv", ".html")
            and p.parent.name in ("plots", folder.name)}


def test_plots_on_a_full_disk_keep_the_previous_outputs(small_dir, monkeypatch):
    import matplotlib.figure

    from optbench.report import write_suite_outputs
    before = _snapshot(small_dir)
    assert any(k.startswith("plots/") for k in before)
    real, calls = matplotlib.figure.Figure.savefig, []

    def full_after_one(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_after_one)
    with pytest.raises(StorageError, match="cannot write plots under .*No space left on device; "
                                           "the previous plots/ and summaries are unchanged"):
        write_suite_outputs(small_dir)
    assert _snapshot(small_dir) == before                       # every old output intact
    assert not [p for p in small_dir.iterdir() if p.name.startswith(".plots")]


# --- every sample diverges --------------------------------------------------------------

def test_a_level_where_everything_diverged_is_recorded_and_the_cell_kept(tmp_path, referee):
    """eps = nan (refused by suite files, reachable from the Python API) makes every sample
    NaN from the first step: level 0 stays finite, every later level is recorded as
    all-diverged with NaN metrics, and the cell, its summary and plots are written."""
    settings = {"start": "real", "lr": 0.01, "max_steps": 4, "optimizer": "adam",
                "objective": "logit", "norm": "l2", "eps": math.nan}
    spec = CellSpec("mnist", "proxy_cnn", "pixel_ascent", 8, 0, tuple(sorted(settings.items())), "nan eps")
    result = compute_cell(spec, referee)
    first, *rest = result.rows
    assert first["diverged_frac"] == 0 and math.isfinite(first["kid"])
    assert rest and all(r["diverged_frac"] == 1 and r["n_finite"] == 0 for r in rest)
    assert all(math.isnan(r["judge_prob"]) and math.isnan(r["kid"]) for r in rest)
    assert set(first) == set(rest[0])                          # the same columns at every level
    folder = write_cell(result, tmp_path)
    assert cell_is_complete(folder)
    from optbench.report import write_suite_outputs
    (tmp_path / "suite.json").write_text(json.dumps({"cells": [spec.cell_id]}))
    info = write_suite_outputs(tmp_path)
    assert info["cells"] == 1 and (tmp_path / "plots" / "curves.png").exists()


def test_guidance_at_an_astronomical_scale_diverges_without_losing_the_cell(referee):
    text = """
name = "huge"
[[cell]]
domain = "mnist"
source = "guidance"
n_samples = 6
settings = { scales = [0.0, 1e30], ddim_steps = 2 }
"""
    (spec,) = parse_suite(text).cells            # finite input: validation lets it through
    result = compute_cell(spec, referee)
    assert result.rows[0]["diverged_frac"] == 0
    assert result.rows[1]["diverged_frac"] == 1 and math.isnan(result.rows[1]["fid"])


def test_metric_names_are_exactly_what_evaluate_returns(referee):
    from optbench.pressure.starts import make_starts
    x, t = make_starts("mnist", "real", 8, 0)
    got = referee.evaluate(x, t, x)
    assert set(got) == {"diverged_frac", "n_finite", *referee.metric_names()}
    nan = referee.evaluate(torch.full_like(x, math.nan), t, x)
    assert set(nan) == set(got) and nan["diverged_frac"] == 1


def test_a_cell_resumed_from_another_suite_takes_this_suites_label(small_dir, tmp_path):
    """Cell ids do not depend on labels, so a suite may resume cells copied from another
    suite's folder; its tables and grids must name them as this suite does."""
    import shutil
    from optbench.report import write_suite_outputs
    from optbench.report.summary import load_cells
    other = parse_suite(SMALL.replace('name = "small"', 'name = "other"')
                        .replace('label = "small"', 'label = "renamed"'))
    ids = [c.cell_id for c in other.cells]
    (tmp_path / "other").mkdir()
    for cid in ids:
        shutil.copytree(small_dir / cid, tmp_path / "other" / cid)
    counts = run_suite(other, tmp_path, device="cpu", log=lambda *_: None)
    assert counts["computed"] == 0 and counts["skipped"] == len(ids)
    assert json.loads((small_dir / ids[0] / "spec.json").read_text())["label"].startswith("small")
    assert {c["spec"]["label"] for c in load_cells(tmp_path / "other")} == {c.label for c in other.cells}
    write_suite_outputs(tmp_path / "other")
    summary = (tmp_path / "other" / "summary.md").read_text()
    assert "renamed" in summary and "| small" not in summary
