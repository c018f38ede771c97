"""Bad input: one line on stderr naming the file, field or flag and what is allowed,
with a documented exit code, and never a traceback."""
import errno
import fcntl
import json
import shutil

import pytest

from optbench.cli import main as cli

TINY = """
name = "tiny"
seeds = [0]
[[cell]]
label = "tiny"
domain = "mnist"
source = "pixel_ascent"
n_samples = 16
settings = { start = "real", max_steps = 8, lr = 0.05 }
"""
SETTINGS = 'settings = { start = "real", max_steps = 8, lr = 0.05 }'


def error_line(capsys) -> str:
    """The one stderr line; fails on a usage block, a traceback or anything else."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("optbench: error: ") or lines[0].startswith("optbench: interrupted")
    return lines[0]


def suite_file(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path, tmp_path, *flags) -> int:
    return cli(["run", str(path), "--out", str(tmp_path / "results"), "--device", "cpu", *flags])


def fake_results(tmp_path):
    """A folder that passes the CLI's results check without running anything."""
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "suite.json").write_text(json.dumps({"name": "tiny", "cells": []}))
    return d


# -- 1, 2: flags ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["--threads", "-1", "list"], "argument --threads: must be an integer >= 1, got '-1'"),
    (["--threads", "0", "list"], "argument --threads: must be an integer >= 1, got '0'"),
    (["run", "s.toml", "--workers", "0"], "argument --workers: must be an integer >= 1, got '0'"),
    (["run", "s.toml", "--workers", "-1"], "argument --workers: must be an integer >= 1, got '-1'"),
    (["run", "s.toml", "--workers", "two"], "argument --workers: must be an integer >= 1, got 'two'"),
    (["run", "s.toml", "--gpus-per-cell", "-0.5"],
     "argument --gpus-per-cell: must be a finite number >= 0, got '-0.5'"),
    (["run", "s.toml", "--gpus-per-cell", "nan"],
     "argument --gpus-per-cell: must be a finite number >= 0, got 'nan'"),
    (["run", "s.toml", "--gpus-per-cell", "inf"],
     "argument --gpus-per-cell: must be a finite number >= 0, got 'inf'"),
    (["run", "s.toml", "--executor", "dask"],
     "argument --executor: invalid choice: 'dask' (choose from 'local', 'ray')"),
    (["lst"], "argument cmd: invalid choice: 'lst'"),
    (["run"], "the following arguments are required: suite"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_are_one_line_errors_naming_the_flag(argv, expected, capsys):
    assert cli(argv) == 2
    line = error_line(capsys)
    assert line.startswith(f"optbench: error: {expected}"), line
    assert "usage:" not in line


# -- 3: devices ----------------------------------------------------------------------------

@pytest.fixture
def cpu_only(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device, why", [
    ("cuda", "torch.cuda.is_available() is False"),
    ("cuda:1", "torch.cuda.is_available() is False"),
    ("mps", "torch.backends.mps.is_available() is False"),
])
def test_a_device_this_machine_lacks_is_refused_before_anything_runs(device, why, tmp_path,
                                                                    capsys, cpu_only):
    assert cli(["run", str(suite_file(tmp_path)), "--out", str(tmp_path / "results"),
                "--device", device]) == 2
    assert error_line(capsys) == (f"optbench: error: --device: {device!r} is not available on "
                                  f"this machine ({why}); allowed here: auto, cpu")
    assert not (tmp_path / "results").exists()   # refused before any cell ran


def test_a_cuda_index_past_the_device_count_is_refused(tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert cli(["run", str(suite_file(tmp_path)), "--device", "cuda:2"]) == 2
    assert error_line(capsys) == (
        "optbench: error: --device: 'cuda:2' is not available on this machine "
        "(torch.cuda.device_count() is 2); allowed here: auto, cpu, cuda, cuda:0, cuda:1")


def test_a_malformed_device_lists_the_allowed_values(tmp_path, capsys, cpu_only):
    assert cli(["run", str(suite_file(tmp_path)), "--device", "gpu"]) == 2
    assert error_line(capsys) == (
        "optbench: error: --device: unknown value 'gpu'; allowed here: auto, cpu "
        "(in general: auto, cpu, cuda, cuda:N, mps)")


# -- 4: results paths ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["plot", "report", "compare"])
def test_results_path_missing_a_file_or_empty_is_a_one_line_error(command, tmp_path, capsys):
    extra = ["--out", str(tmp_path / "cmp")] if command == "compare" else []
    missing, file, empty = tmp_path / "nope", tmp_path / "file.txt", tmp_path / "empty"
    file.write_text("x")
    empty.mkdir()
    for path, expected in [(missing, f"results: no such folder: {missing}"),
                           (file, f"results: {file} is a file; expected a results/<suite> folder"),
                           (empty, f"results: {empty} holds no optbench results")]:
        assert cli([command, str(path), *extra]) == 2
        assert error_line(capsys).startswith(f"optbench: error: {expected}")


def test_compare_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    results, out = fake_results(tmp_path), tmp_path / "out.md"
    out.write_text("keep me")
    assert cli(["compare", str(results), "--out", str(out)]) == 2
    assert error_line(capsys) == (f"optbench: error: --out: {out} is a file; expected a folder "
                                  "(created if missing)")
    assert out.read_text() == "keep me"


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    out = tmp_path_factory.mktemp("results")
    counts = run_suite(parse_suite(TINY), out, device="cpu", log=lambda *_: None)
    assert counts["computed"] == 1
    return out / "tiny"


def test_plot_on_a_read_only_folder_exits_3(tiny_results, tmp_path, capsys):
    d = tmp_path / "tiny"
    shutil.copytree(tiny_results, d)
    d.chmod(0o555)
    try:
        try:   # as root, chmod does not stop writes; the next test covers that case
            (d / "probe").write_text("x")
        except PermissionError:
            pass
        else:
            pytest.skip("this user can write to a 0o555 folder (root)")
        assert cli(["plot", str(d)]) == 3
        line = error_line(capsys)   # which file fails first is the report code's business
        assert line.startswith(f"optbench: error: cannot write {d}/"), line
        assert line.endswith(": Permission denied"), line
    finally:
        d.chmod(0o755)


def test_a_permission_error_while_reporting_exits_3(tmp_path, capsys, monkeypatch):
    import optbench.report
    d = fake_results(tmp_path)

    def refuse(suite_dir):
        raise PermissionError(13, "Permission denied", str(suite_dir / "summary.md"))
    monkeypatch.setattr(optbench.report, "write_suite_outputs", refuse)   # plot
    monkeypatch.setattr(optbench.report, "render_report", refuse)         # report
    for command in ("plot", "report"):
        assert cli([command, str(d)]) == 3
        assert error_line(capsys) == f"optbench: error: cannot write {d / 'summary.md'}: Permission denied"


def test_a_full_disk_while_comparing_exits_3(tmp_path, capsys, monkeypatch):
    import optbench.report
    d, out = fake_results(tmp_path), tmp_path / "cmp"

    def full(dirs, out):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "equal_proxy.png"))
    monkeypatch.setattr(optbench.report, "write_comparison", full)
    assert cli(["compare", str(d), "--out", str(out)]) == 3
    assert error_line(capsys) == (f"optbench: error: cannot write {out / 'equal_proxy.png'}: "
                                  "No space left on device")


# -- exit codes 3, 4 and 130 from a run ----------------------------------------------------

def test_a_results_folder_locked_by_another_run_exits_4(tmp_path, capsys):
    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+") as held:   # a second open file: flock conflicts
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run(suite_file(tmp_path), tmp_path) == 4
    line = error_line(capsys)
    assert line.startswith(f"optbench: error: {folder.resolve()} is in use by another optbench "
                           "process"), line
    assert "give another --out" in line


def test_storage_error_during_a_run_exits_3(tmp_path, capsys, monkeypatch):
    import optbench.runner as runner

    def full(*args, **kwargs):
        raise runner.StorageError("cannot write results/tiny/x: No space left on device")
    monkeypatch.setattr(runner, "run_suite", full)
    assert run(suite_file(tmp_path), tmp_path) == 3
    assert error_line(capsys) == "optbench: error: cannot write results/tiny/x: No space left on device"


def test_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    import optbench.runner as runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "run_suite", interrupted)
    assert run(suite_file(tmp_path), tmp_path) == 130
    assert error_line(capsys) == "optbench: interrupted; complete cells are kept, rerun to resume"


# -- 5: the suite file itself --------------------------------------------------------------

def test_a_folder_as_suite_file_is_refused(tmp_path, capsys):
    assert run(tmp_path, tmp_path) == 2
    assert error_line(capsys) == f"optbench: error: {tmp_path}: is a folder; expected a suite file (.toml)"


def test_a_missing_suite_file_is_refused(tmp_path, capsys):
    assert run(tmp_path / "nope.toml", tmp_path) == 2
    assert error_line(capsys) == f"optbench: error: {tmp_path / 'nope.toml'}: no such suite file"


def test_a_suite_file_not_in_utf8_is_refused(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(TINY.replace('"tiny"\nseeds', '"tiny"\ndescription = "café"\nseeds').encode("latin-1"))
    assert run(path, tmp_path) == 2
    pos = path.read_bytes().index(b"\xe9")
    assert error_line(capsys) == (f"optbench: error: {path}: not UTF-8 text (byte 0xe9 at position "
                                  f"{pos}); save the suite file as UTF-8")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    from optbench.suite import load_suite
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    suite = load_suite(path)
    assert suite.name == "tiny" and [c.label for c in suite.cells] == ["tiny"]


# -- 6, 7: values and sizes ----------------------------------------------------------------

@pytest.mark.parametrize("old, new, expected", [
    (SETTINGS, SETTINGS.replace("lr = 0.05", "lr = nan"),
     "cell[0].settings.lr: must be a finite number, got nan"),
    (SETTINGS, SETTINGS.replace("lr = 0.05", "lr = inf"),
     "cell[0].settings.lr: must be a finite number, got inf"),
    (SETTINGS, SETTINGS.replace("lr = 0.05", "lr = [0.05, -inf]"),
     "cell[0].settings.lr: must be a finite number, got -inf"),
    ('source = "pixel_ascent"\nn_samples = 16\n' + SETTINGS,
     'source = "guidance"\nn_samples = 16\nsettings = { scales = [0, inf] }',
     "cell[0].settings.scales: every value must be a finite number, got inf"),
    ('source = "pixel_ascent"\nn_samples = 16\n' + SETTINGS,
     'source = "guidance"\nn_samples = 16\nsettings = { scales = [0, nan] }',
     "cell[0].settings.scales: every value must be a finite number, got nan"),
    ("n_samples = 16", "n_samples = 10000000",
     "cell[0].n_samples: expected an integer >= 6 and <= 1000000, got 10000000"),
    ('source = "pixel_ascent"\nn_samples = 16\n' + SETTINGS,
     'source = "best_of_n"\nn_samples = 16\nsettings = { pool_size = 8388608 }',
     "cell[0].settings.pool_size: must be <= 4194304, got 8388608; allowed: 2..4194304"),
])
def test_non_finite_and_oversized_values_are_refused(old, new, expected, tmp_path, capsys):
    path = suite_file(tmp_path, TINY.replace(old, new))
    assert run(path, tmp_path) == 2
    assert error_line(capsys) == f"optbench: error: {path}: {expected}"
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("old, new, expected", [
    ("n_samples = 16", "n_samples = 100000",
     "cell[0].n_samples: 100000 samples need about 5 GiB here, more than the 1 GiB available"),
    ('source = "pixel_ascent"\nn_samples = 16\n' + SETTINGS,
     'source = "best_of_n"\nn_samples = 16\nsettings = { pool_size = 4194304 }',
     "cell[0].n_samples + settings.pool_size: 4194320 samples need about 8 GiB here (streamed), "
     "more than the 1 GiB available"),
])
def test_a_cell_larger_than_free_memory_is_refused_before_it_runs(old, new, expected, tmp_path,
                                                                  capsys, monkeypatch):
    import optbench.suite
    monkeypatch.setattr(optbench.suite, "available_memory", lambda: 2**30)
    path = suite_file(tmp_path, TINY.replace(old, new))
    assert run(path, tmp_path) == 2
    assert error_line(capsys) == f"optbench: error: {path}: {expected}; use fewer samples"


def test_memory_check_is_skipped_where_free_memory_is_unknown(monkeypatch):
    import optbench.suite
    monkeypatch.setattr(optbench.suite, "available_memory", lambda: None)
    monkeypatch.setattr(optbench.suite, "_check_real_data", lambda *args: None)   # MNIST has 500 test digits
    suite = optbench.suite.parse_suite(TINY.replace("n_samples = 16", "n_samples = 1000000"))
    assert suite.cells[0].n_samples == 1_000_000


# -- 8: labels -----------------------------------------------------------------------------

CELL = TINY[TINY.index("[[cell]]"):]


def test_two_curves_with_one_label_are_refused(tmp_path, capsys):
    text = TINY + CELL.replace("lr = 0.05", "lr = 0.1")
    path = suite_file(tmp_path, text)
    assert run(path, tmp_path) == 2
    assert error_line(capsys) == (
        f"optbench: error: {path}: cell[0] and cell[1] both make curves labelled 'tiny'; labels "
        "name curves in tables, legends and grid files: give each a distinct label")


def test_cells_differing_only_in_seed_may_share_a_label():
    from optbench.suite import parse_suite
    text = TINY + CELL.replace('n_samples = 16', 'n_samples = 16\nseeds = [1, 2]')
    suite = parse_suite(text)
    assert [(c.label, c.seed) for c in suite.cells] == [("tiny", 0), ("tiny", 1), ("tiny", 2)]


# -- 9: HTML report ------------------------------------------------------------------------

def test_labels_show_as_text_in_the_html_report(tmp_path, monkeypatch):
    import optbench.report.html as html
    label = "<script>alert(1)</script> & [click](javascript:alert(2))"
    monkeypatch.setattr(html, "report_markdown", lambda d: (
        f"# Suite `tiny`\n\n| label | kid |\n|---|---|\n| {label} | 0.1 |\n\n"
        f"- command: `optbench run <a&b>.toml`\n"))
    _, page = html.write_report(tmp_path)
    text = page.read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in text
    assert "<a " not in text and "javascript:alert(2)" in text   # shown, not a link
    assert "<code>optbench run &lt;a&amp;b&gt;.toml</code>" in text   # escaped once, not twice


# -- 10: checkpoint manifests --------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    (b'{"schema": 1,', "not a valid manifest (line 1, column 14: Expecting property name enclosed "
                       "in double quotes); reinstall optbench or run `optbench train mnist`"),
    (b'{"schema": 1, "domain": "caf\xe9"}', "not a valid manifest (byte 0xe9 at position 28 is "
                                           "not UTF-8); reinstall optbench or run `optbench train mnist`"),
    (b'{"schema": 1, "domain": "mnist"}', "field 'models' is missing or not a table of models; "
                                          "reinstall optbench or run `optbench train mnist`"),
])
def test_a_corrupted_manifest_is_a_one_line_error_naming_it(content, expected, tmp_path, capsys,
                                                            monkeypatch):
    from optbench.domains import get_domain
    manifest = tmp_path / "ckpt" / "mnist" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(content)
    monkeypatch.setattr(get_domain("mnist"), "checkpoints", manifest.parent)
    path = suite_file(tmp_path)
    assert run(path, tmp_path) == 2
    assert error_line(capsys) == f"optbench: error: {path}: cell[0].domain: {manifest}: {expected}"
