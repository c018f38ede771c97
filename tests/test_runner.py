"""Cells: determinism, storage, resume, corruption and failure handling, the CLI."""
import json
import os
import shutil

import pytest

from optbench.cli import main as cli
from optbench.runner import compute_cell, run_suite
from optbench.storage import cell_is_complete
from optbench.suite import parse_suite

TINY = """
name = "tiny"
seeds = [0, 1, 2]
[[cell]]
label = "tiny"
domain = "mnist"
source = "pixel_ascent"
n_samples = 16
settings = { start = ["real", "noise"], max_steps = 8, lr = 0.05 }
"""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    counts = run_suite(parse_suite(TINY), out, device="cpu", log=lambda *_: None)
    assert counts["computed"] == 6 and counts["failed"] == 0
    return out / "tiny"


def test_same_spec_and_seed_give_identical_curves(tiny_dir, referee):
    spec = parse_suite(TINY).cells[0]
    again = compute_cell(spec, referee)
    stored = json.loads((tiny_dir / spec.cell_id / "curve.json").read_text())
    assert json.loads(json.dumps(again.rows)) == stored["rows"]
    assert again.baseline == stored["baseline"]


def test_cell_folder_holds_spec_curve_grid_and_marker(tiny_dir):
    spec = parse_suite(TINY).cells[0]
    folder = tiny_dir / spec.cell_id
    assert cell_is_complete(folder)
    stored = json.loads((folder / "spec.json").read_text())
    assert stored["cell_id"] == spec.cell_id and stored["settings"] == spec.settings_dict
    rows = (folder / "curve.csv").read_text().splitlines()
    assert rows[0].startswith("steps,pressure,") and len(rows) == 1 + 5  # levels 0,1,2,4,8
    assert [p.name for p in tiny_dir.glob(".*")] == [".lock"]  # no temporary folders left behind


def test_rerun_skips_complete_cells_and_redoes_corrupted_ones(tiny_dir, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_dir, copy)
    suite = parse_suite(TINY)
    victim, missing = suite.cells[1].cell_id, suite.cells[2].cell_id
    (copy / victim / "curve.json").write_text('{"rows": [')      # truncated on disk
    shutil.rmtree(copy / missing)                               # never finished
    assert not cell_is_complete(copy / victim)
    original = (tiny_dir / victim / "curve.json").read_text()
    counts = run_suite(suite, tmp_path, device="cpu", log=lambda *_: None)
    assert (counts["computed"], counts["skipped"]) == (2, 4)
    assert (copy / victim / "curve.json").read_text() == original
    assert cell_is_complete(copy / missing)


def test_process_pool_gives_identical_curves(tiny_dir, tmp_path):
    # one thread per worker, as in this process (conftest): a machine with more cores would
    # otherwise give each worker more threads, and other kernels' reduction orders
    counts = run_suite(parse_suite(TINY), tmp_path, device="cpu", workers=2, threads=1,
                       log=lambda *_: None)
    assert counts["computed"] == 6
    for spec in parse_suite(TINY).cells:
        ours = json.loads((tmp_path / "tiny" / spec.cell_id / "curve.json").read_text())
        ref = json.loads((tiny_dir / spec.cell_id / "curve.json").read_text())
        differ = [(i, k, a.get(k), b.get(k)) for i, (a, b) in enumerate(zip(ours["rows"], ref["rows"]))
                  for k in a.keys() | b.keys() if a.get(k) != b.get(k)]
        assert not differ, f"{spec.label} seed {spec.seed}: (level, key, pool, in-process): {differ[:6]}"
        assert ours == ref


def test_a_failing_cell_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    import optbench.runner as runner
    suite = parse_suite(TINY)
    real = runner.compute_cell

    def flaky(spec, referee, progress=False):
        if spec.seed == 1:
            raise RuntimeError("boom")
        return real(spec, referee, progress)
    monkeypatch.setattr(runner, "compute_cell", flaky)
    counts = run_suite(suite, tmp_path, device="cpu", log=lambda *_: None)
    assert (counts["computed"], counts["failed"]) == (4, 2)
    failed = sorted((tmp_path / "tiny").glob("*.failed.txt"))
    assert len(failed) == 2 and "RuntimeError: boom" in failed[0].read_text()


def test_unwritable_results_folder_fails_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RuntimeError, match="cannot write results"):
        run_suite(parse_suite(TINY), blocker, device="cpu")


def test_cli_run_then_plot_writes_summary_and_plots(tmp_path, capsys):
    suite_file = tmp_path / "tiny.toml"
    suite_file.write_text(TINY.replace("seeds = [0, 1, 2]", "seeds = [0, 1]"))
    assert cli(["run", str(suite_file), "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = tmp_path / "tiny"
    document = json.loads((out / "summary.json").read_text())
    assert document["schema"] == "optbench.summary/1"
    summary = document["rows"]
    assert [r["label"] for r in summary] == ["tiny start=real", "tiny start=noise"]
    assert all(r["seeds"] == 2 for r in summary)
    summary_md = (out / "summary.md").read_text()
    # ten tables, two curves each: summary, judges, KID departure per feature space, the
    # other metrics' departures, the registry's at_max metrics, proxy compute, fits, equal
    # proxy score, equal proxy compute (pixel ascent spends queries), and KID at equal
    # proxy score per feature space
    assert summary_md.count("| tiny start=") == 20
    assert "## Equal proxy compute" in summary_md
    assert "## Goodhart-law fits" in summary_md
    assert f"optbench run {suite_file} --out {tmp_path} --device cpu" in summary_md
    import csv
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert len(rows) == 2 * 2 * 5 and {"cell_id", "seed", "level", "kid", "baseline_kid"} <= set(rows[0])
    assert {p.name for p in (out / "plots").iterdir()} == {
        "curves.png", "goodhart.png", "grid_tiny_start_real.png", "grid_tiny_start_noise.png"}
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4  # standalone: curves, fits, 2 grids
    assert "<td>tiny start=real</td>" in html and f"optbench run {suite_file}" in html
    # a second run resumes: nothing recomputed
    assert cli(["run", str(suite_file), "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert "0 computed, 4 skipped" in capsys.readouterr().out


def test_cli_bad_suite_is_a_one_line_error_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("n_samples", "n_sample"))
    assert cli(["run", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "n_sample" in err and "did you mean 'n_samples'" in err
    assert not (tmp_path / "tiny").exists()


def test_kill_9_then_rerun_matches_an_uninterrupted_run(tiny_dir, tmp_path):
    """Kill a running suite at several moments (benchmarks/kill_resume.py); the rerun
    must finish with exactly the uninterrupted results and no temporary files."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parent.parent / "benchmarks" / "kill_resume.py"
    spec = importlib.util.spec_from_file_location("kill_resume", path)
    kill_resume = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kill_resume)
    suite_file = tmp_path / "tiny.toml"
    suite_file.write_text(TINY)
    kill_resume.kill_and_resume(suite_file, tmp_path, [2.5, 4.0, 6.0])
    assert kill_resume.compare(tmp_path / "tiny", tiny_dir) == []


def test_full_disk_stops_with_a_clear_message_and_keeps_written_cells(tmp_path, monkeypatch):
    import errno

    import optbench.record as record
    import optbench.runner as runner
    real_save, calls = record.save_file, []

    def save_until_full(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)
    monkeypatch.setattr(record, "save_file", save_until_full)
    suite = parse_suite(TINY)
    with pytest.raises(runner.StorageError, match="No space left on device; cells written before"):
        run_suite(suite, tmp_path, device="cpu", log=lambda *_: None)
    out = tmp_path / "tiny"
    assert [cell_is_complete(out / s.cell_id) for s in suite.cells] == [True, True] + [False] * 4
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".lock"]
    monkeypatch.setattr(record, "save_file", real_save)       # space freed: resume
    counts = run_suite(suite, tmp_path, device="cpu", log=lambda *_: None)
    assert (counts["computed"], counts["skipped"]) == (4, 2)


def test_ray_executor_gives_identical_curves(tiny_dir, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))   # a local Ray would write ~/.ray/auth_token
    suite = parse_suite(TINY.replace("seeds = [0, 1, 2]", "seeds = [0, 1]"))
    counts = run_suite(suite, tmp_path, executor="ray", workers=2, log=lambda *_: None)
    assert counts["computed"] == 4 and counts["failed"] == 0
    assert not (home / ".ray").exists()      # nothing left in the home folder
    assert "RAY_AUTH_TOKEN" not in os.environ
    for spec in suite.cells:
        ours = json.loads((tmp_path / "tiny" / spec.cell_id / "curve.json").read_text())
        assert ours == json.loads((tiny_dir / spec.cell_id / "curve.json").read_text())


def test_cli_list_names_every_model_source_and_metric(capsys):
    from optbench.models.checkpoints import read_manifest
    from optbench.pressure import SOURCES
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    for domain in ("mnist", "gmm2", "faces"):   # trained, learned-vector and exact models
        for name in read_manifest(domain)["models"]:
            assert f"model {name}:" in out
    for name in SOURCES:
        assert f"  {name} (knob:" in out
    assert "  c2st (set, referee, departs high, null pool" in out and "  judge_conf (sample" in out
    assert "  gold_ks (set, gold, departs high, null law" in out and "  det_energy (sample, detector" in out


def test_meta_records_the_kernels_and_another_kernel_set_stays_within_tolerance(tiny_dir, tmp_path):
    """The tiny suite again in a process with ATen's portable kernels: meta.json names
    the kernel set each cell ran with, and the curves agree within the stated tolerance
    (README, "Reproducibility": cross-machine numbers are close, not bit-identical)."""
    import os
    import subprocess
    import sys
    import torch
    code = ("import sys; from pathlib import Path; from optbench.runner import run_suite; from optbench.workers import setup_torch; "
            "from optbench.suite import parse_suite; setup_torch(1); "
            "run_suite(parse_suite(sys.stdin.read()), Path(sys.argv[1]), device='cpu', log=lambda *_: None)")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    one_seed = TINY.replace("seeds = [0, 1, 2]", "seeds = [0]")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], input=one_seed, text=True, env=env,
                   check=True, timeout=600)
    for spec in parse_suite(one_seed).cells:
        here = json.loads((tiny_dir / spec.cell_id / "meta.json").read_text())["machine"]
        there = json.loads((tmp_path / "tiny" / spec.cell_id / "meta.json").read_text())["machine"]
        assert here["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert there["cpu_capability"] == "DEFAULT" and there["aten_cpu_capability_env"] == "default"
        assert here["cpu_model"] and here["arch"]
        a = json.loads((tiny_dir / spec.cell_id / "curve.json").read_text())["rows"]
        b = json.loads((tmp_path / "tiny" / spec.cell_id / "curve.json").read_text())["rows"]
        for ra, rb in zip(a, b):
            for m in ("proxy_prob", "judge_prob"):
                assert abs(ra[m] - rb[m]) <= 0.02, (spec.cell_id, m, ra[m], rb[m])
            assert abs(ra["kid"] - rb["kid"]) <= 0.05 * abs(ra["kid"]) + 0.02, (spec.cell_id, ra["kid"], rb["kid"])
