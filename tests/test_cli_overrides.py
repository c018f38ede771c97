"""The command line a researcher expects: run's --seeds, --n-samples, --max-level and
--dry-run; progress lines; `list models`; compare's suite column; report re-rendering."""
import contextlib
import io
import shutil

import pytest

from optbench.cli import main as cli
from optbench.suite import Overrides, SuiteError, parse_suite

GRID = """
name = "ov"
seeds = [0, 1]
[[cell]]
label = "A"
domain = "mnist"
source = "pixel_ascent"
n_samples = 16
settings = { start = ["real", "noise"], max_steps = 8 }
[[cell]]
label = "B"
domain = "mnist"
source = "pixel_ascent"
n_samples = 32
settings = { max_steps = [4, 16] }
"""

ONE = """
name = "one"
seeds = [0]
[[cell]]
label = "one"
domain = "mnist"
source = "pixel_ascent"
n_samples = 19
settings = { start = "real", max_steps = 4, lr = 0.05 }
"""


def ids(suite):
    return {(c.label, c.seed, c.n_samples, c.settings_dict["max_steps"]): c.cell_id for c in suite.cells}


# -- overrides: ids change exactly when the spec does ---------------------------------------

def test_seeds_replace_every_cells_seeds_and_keep_the_ids_of_seeds_kept():
    base = {c.cell_id for c in parse_suite(GRID).cells}
    suite = parse_suite(GRID.replace("n_samples = 32", "n_samples = 32\nseeds = [7]"), "g.toml",
                        Overrides(seeds=(1, 2)))
    assert {c.seed for c in suite.cells} == {1, 2}          # the cell's own seeds replaced too
    kept = [c for c in suite.cells if c.seed == 1]
    assert all(c.cell_id in base for c in kept) and len(kept) == 4
    assert not any(c.cell_id in base for c in suite.cells if c.seed == 2)
    assert "no cell's spec changed" in suite.overrides and "--seeds 1 2" in suite.overrides


def test_n_samples_changes_the_ids_and_labels_of_only_the_cells_it_changes():
    base = parse_suite(GRID)
    suite = parse_suite(GRID, "g.toml", Overrides(n_samples=16))
    before = {c.cell_id for c in base.cells}
    for c in suite.cells:
        assert c.n_samples == 16
        changed = c.label.startswith("B")                    # B had 32, A had 16 already
        assert (c.cell_id not in before) == changed
        assert c.label.endswith("(n_samples=16)") == changed
    assert "4 of 8 cells have a changed spec" in suite.overrides


def test_max_level_caps_max_steps_and_only_capped_cells_get_new_ids():
    base = ids(parse_suite(GRID))
    assert ids(parse_suite(GRID, "g.toml", Overrides(max_level=1000))) == base   # caps nothing
    suite = parse_suite(GRID, "g.toml", Overrides(max_level=8))
    after = {c.cell_id: c for c in suite.cells}
    assert sorted(c.settings_dict["max_steps"] for c in suite.cells if c.label.startswith("B")) == [4, 4, 8, 8]
    for c in suite.cells:
        unchanged = c.settings_dict["max_steps"] in (4, 8) and not c.label.endswith("(max_steps=8)")
        assert (c.cell_id in base.values()) == unchanged, c.label
    assert sum(c.label.endswith("(max_steps=8)") for c in after.values()) == 2   # B's 16 -> 8, two seeds


def test_max_level_drops_guidance_scales_above_it_and_caps_a_selections_pool():
    text = """
name = "g"
[[cell]]
label = "cfg"
domain = "mnist"
source = "guidance"
n_samples = 16
[[cell]]
label = "bon"
domain = "mnist"
source = "best_of_n"
proxy = "gan_discriminator"
n_samples = 16
"""
    suite = parse_suite(text, "g.toml", Overrides(max_level=64))
    cfg, bon = suite.cells
    assert cfg.settings_dict["scales"] == (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)   # none above 64: unchanged
    assert bon.settings_dict["pool_size"] == 64 and bon.label == "bon (pool_size=64)"
    cfg4 = parse_suite(text.split("[[cell]]\nlabel = \"bon\"")[0], "g.toml", Overrides(max_level=4)).cells[0]
    assert cfg4.settings_dict["scales"] == (0.0, 1.0, 2.0, 4.0) and cfg4.label == "cfg (scales<=4)"
    with pytest.raises(SuiteError, match=r"cell\[1\]\.settings\.pool_size \(from --max-level 8\): must be >= "
                                         r"n_samples \(16\), got 8"):
        parse_suite(text, "g.toml", Overrides(max_level=8))


def test_max_level_refuses_a_source_with_no_setting_that_bounds_its_pressure():
    from optbench.pressure import SOURCES, Source
    SOURCES.register("ov_unbounded", Source(name="ov_unbounded", knob="k", pressure="k", doc="",
                                            run=lambda ctx, s: None))
    try:
        with pytest.raises(SuiteError) as e:
            parse_suite(ONE.replace("pixel_ascent", "ov_unbounded").replace(
                'settings = { start = "real", max_steps = 4, lr = 0.05 }', ""), "u.toml", Overrides(max_level=3))
        assert str(e.value).startswith("u.toml: cell[0].source: --max-level 3 caps the setting that bounds a "
                                       "source's pressure (max_steps, max_generations, pool_size, scales), and "
                                       "source 'ov_unbounded' declares none")
    finally:
        SOURCES.unregister("ov_unbounded")


def one_line(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("in_file, flags, flag_text", [
    ("n_samples = 3", ["--n-samples", "3"], "n_samples (from --n-samples 3)"),
    ("n_samples = 5000", ["--n-samples", "5000"], "n_samples (from --n-samples 5000)"),
    ("max_steps = 0", ["--max-level", "0"], "settings.max_steps (from --max-level 0)"),
])
def test_a_bad_flag_value_is_the_files_one_line_error_naming_the_flag(in_file, flags, flag_text, tmp_path,
                                                                       capsys):
    field = flag_text.split(" (")[0]
    bad = tmp_path / "bad.toml"
    bad.write_text(ONE.replace("n_samples = 19" if "n_samples" in in_file else "max_steps = 4", in_file))
    good = tmp_path / "good.toml"
    good.write_text(ONE)
    out = tmp_path / "results"
    assert cli(["run", str(bad), "--out", str(out), "--dry-run"]) == 2
    from_file = one_line(capsys)
    assert cli(["run", str(good), "--out", str(out), "--dry-run", *flags]) == 2
    from_flag = one_line(capsys)
    assert f"cell[0].{field}:" in from_file and f"cell[0].{flag_text}:" in from_flag
    assert from_flag.replace(str(good), str(bad)).replace(flag_text, field) == from_file
    assert not out.exists()


def test_bad_seeds_name_the_flag(tmp_path, capsys):
    path = tmp_path / "one.toml"
    path.write_text(ONE)
    assert cli(["run", str(path), "--dry-run", "--seeds", "1", "1"]) == 2
    assert one_line(capsys) == (f"optbench: error: {path}: seeds (from --seeds 1 1): seeds must be distinct, "
                                "got [1, 1]")


# -- a run, its progress lines, --dry-run, compare, report -----------------------------------

@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """One tiny cell run through the CLI with a fresh cache (so its null is computed and
    announced: an n no other test uses, so no referee of this process holds it either),
    stdout captured (not a terminal: plain lines)."""
    root = tmp_path_factory.mktemp("cli")
    path = root / "one.toml"
    path.write_text(ONE)
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv("OPTBENCH_CACHE", str(root / "cache"))
        assert cli(["run", str(path), "--out", str(root / "results"), "--device", "cpu"]) == 0
    return path, root / "results", stdout.getvalue()


def test_a_run_prints_its_plan_each_long_phase_and_a_line_per_cell(one_run):
    path, _, out = one_run
    lines = out.splitlines()
    assert lines[0] == f"reading {path} (every cell and model is checked before any runs) ..."
    assert lines[1].startswith("one: 1 cells, 1 to compute, 0 complete (skipped); first 1 real-data null(s) "
                               "to compute; estimated about ")
    assert any(line.startswith("computing the real-data null of mnist at n=19 (60 draws") for line in lines)
    assert any(line.startswith("[1/1] ") and " one seed=0: " in line for line in lines)


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_dry_run_lists_cells_to_compute_and_skip_and_writes_nothing(one_run, tmp_path, capsys):
    path, results, _ = one_run
    before = snapshot(results)
    assert cli(["run", str(path), "--out", str(results), "--dry-run", "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert snapshot(results) == before
    done, new = parse_suite(path.read_text(), str(path), Overrides(seeds=(0, 1))).cells
    assert f"  skip     {done.cell_id}  one seed=0: complete" in out
    assert f"  compute  {new.cell_id}  one seed=1: ~" in out and "(recorded)" in out
    assert "one: 2 cells, 1 to compute, 1 complete (skipped)" in out
    fresh = tmp_path / "fresh"
    assert cli(["run", str(path), "--out", str(fresh), "--dry-run", "--n-samples", "20"]) == 0
    out = capsys.readouterr().out
    assert not fresh.exists()
    assert "overrides: --n-samples 20 (changed 1 of 1 [[cell]] tables); 1 of 1 cells have a changed spec" in out
    assert "one (n_samples=20) seed=0: ~" in out


def test_compare_has_a_suite_column_and_keeps_two_suites_curves_apart(one_run, tmp_path, capsys):
    _, results, _ = one_run
    other = tmp_path / "other"
    shutil.copytree(results / "one", other)
    assert cli(["compare", str(results / "one"), str(other), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "equal_proxy.md").read_text()
    assert "| suite | curve | how |" in md
    assert "| one | one | stopped |" in md and "| other | one | stopped |" in md
    assert cli(["compare", str(other), str(other), "--out", str(tmp_path / "cmp")]) == 2
    assert "is given twice" in one_line(capsys)


def test_report_renders_from_the_summary_and_plots_without_recomputing(one_run, tmp_path, capsys):
    _, results, _ = one_run
    d = tmp_path / "one"
    shutil.copytree(results / "one", d)
    (d / "report.html").unlink()
    kept = {p: p.stat().st_mtime_ns for p in [d / "summary.md", d / "curves.csv", *(d / "plots").iterdir()]}
    assert cli(["report", str(d)]) == 0
    assert (d / "report.html").is_file() and "data:image/png;base64," in (d / "report.html").read_text()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    (d / "summary.md").unlink()
    capsys.readouterr()
    assert cli(["report", str(d)]) == 2
    assert one_line(capsys) == (f"optbench: error: {d}: no summary.md to render; `optbench plot {d}` writes "
                                "the summary, plots and report")


# -- list models ------------------------------------------------------------------------------

def test_list_models_names_each_model_with_kind_role_arch_and_sha(capsys):
    assert cli(["list", "models", "mnist"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == {f"mnist:{m}" for m in __import__("optbench.models.checkpoints", fromlist=["catalog"])
                          .catalog("mnist")}
    proxy = lines["mnist:proxy_cnn"]
    assert "classifier; default proxy; SmallCNN; sha256 9260d8257fd0; test accuracy 0.958" in proxy
    assert "judge, judge ensemble member, feature net" in lines["mnist:judge_bncnn"]
    assert "control" in lines["mnist:proxy_cnn_untrained"]
    assert lines["mnist:gan_discriminator"].split(None, 1)[1].startswith("realness (discriminator); proxy")
    assert "generator;" in lines["mnist:gan_generator"]
    assert cli(["list", "models", "nope"]) == 2
    assert one_line(capsys).startswith("optbench: error: domain: unknown domain 'nope'")
