"""Suites that cannot give a trustworthy cell are refused before any cell runs, with one
line naming the file, the field and the fix: a sample size without a null or a full
real baseline, knobs past their ceilings, plug-ins that raise or exit at import, a lock
file that is a symbolic link."""
import os
import textwrap

import pytest

from optbench.cli import main as cli

from test_bad_input import TINY   # one tiny MNIST suite for every bad-input test


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("optbench: error: "), err
    return lines[0][len("optbench: error: "):]


def refused(tmp_path, capsys, text, code=2) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    assert cli(["run", str(path), "--out", str(tmp_path / "results"), "--device", "cpu"]) == code
    assert not any((tmp_path / "results").glob("*/*/DONE")), "a cell ran"
    line = error_line(capsys)
    assert line.startswith(f"{path}: "), line
    return line[len(f"{path}: "):]


# -- sample sizes the held-out data cannot give --------------------------------------------

def test_a_sample_size_beyond_the_null_pool_is_refused(tmp_path, capsys):
    from optbench.domains import get_domain
    sizes = get_domain("mnist").split_sizes()
    limit = min(sizes["test"], (sizes["test"] + sizes["generator_train"]) // 2)   # 500
    line = refused(tmp_path, capsys, TINY.replace("n_samples = 16", f"n_samples = {limit + 1}"))
    assert line == (f"cell[0].n_samples: {limit + 1} is more than the held-out data of domain "
                    f"'mnist' allows: at most {limit} (the real baseline draws n of the {sizes['test']} test "
                    f"examples, the null n of half the {sizes['test'] + sizes['generator_train']} in "
                    "test + generator_train); use fewer samples or declare larger splits")


def test_the_largest_allowed_sample_size_has_a_null(monkeypatch):
    """The limit the suite checks is the one the null enforces on the real null pool
    (test + generator_train, counted here from the splits themselves; no off-by-one)."""
    from optbench.domains import get_domain
    from optbench.referees.null import max_null_n, metric_draws
    import torch
    dom = get_domain("gmm2")
    pool = len(dom.load_split("test")[0]) + len(dom.load_split("generator_train")[0])
    n = max_null_n("gmm2")
    assert n == pool // 2
    feats = {"f": torch.randn(pool, 3)}

    class Referee:
        def distribution_of_features(self, f):
            return {"m": float(f["f"].mean())}
    assert len(metric_draws(Referee(), feats, n, 2, 0)["m"]) == 2
    with pytest.raises(ValueError):
        metric_draws(Referee(), feats, n + 1, 2, 0)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "19", "1.5"])
def test_a_bad_null_draw_count_is_refused(value, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPTBENCH_NULL_DRAWS", value)
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert cli(["run", str(path), "--out", str(tmp_path / "results")]) == 2
    assert error_line(capsys) == (
        "environment variable OPTBENCH_NULL_DRAWS: expected an integer >= 20 (draws of the null, "
        f"whose q01 and q99 set the departure thresholds), got {value!r}; unset it for the default 1000")
    assert not (tmp_path / "results").exists()


def test_a_cell_whose_null_fails_is_failed_not_stored_with_an_empty_null(monkeypatch):
    """The runner no longer swallows a null that cannot be drawn into `null: {}`."""
    from optbench.referees import Referee
    from optbench.runner import compute_or_traceback
    from optbench.suite import parse_suite

    def no_null(self, n, proxy=None):
        raise ValueError("n: expected 6..5 (half the pool of 10 real digits), got 16")
    monkeypatch.setattr(Referee, "null", no_null)
    spec = parse_suite(TINY).cells[0]
    outcome = compute_or_traceback(spec, "cpu")
    assert isinstance(outcome, str) and "half the pool of 10" in outcome


# -- ceilings ------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, expected", [
    ("max_steps = 8", "max_steps = 9223372036854775807",
     "cell[0].settings.max_steps: must be <= 1048576, got 9223372036854775807; allowed: 1..1048576"),
    ("lr = 0.05", "lr = 1e308",
     "cell[0].settings.lr: must be <= 1000000, got 1e+308; allowed: 1e-12..1000000"),
    ('source = "pixel_ascent"\nn_samples = 16\nsettings = { start = "real", max_steps = 8, lr = 0.05 }',
     'source = "guidance"\nn_samples = 16\nsettings = { interval_hi = 5000 }',
     "cell[0].settings.interval_hi: must be <= 999, got 5000; allowed: 0..999"),
    ('source = "pixel_ascent"\nn_samples = 16\nsettings = { start = "real", max_steps = 8, lr = 0.05 }',
     'source = "random_search"\nn_samples = 16\nsettings = { population = 100000 }',
     "cell[0].settings.population: must be <= 16384, got 100000; allowed: 2..16384"),
    ('source = "pixel_ascent"\nn_samples = 16\nsettings = { start = "real", max_steps = 8, lr = 0.05 }',
     'source = "feature_vis"\nn_samples = 16\nsettings = { tv = 1e35 }',
     "cell[0].settings.tv: must be <= 1e+30, got 1e+35; allowed: 0..1e+30"),
    ('source = "pixel_ascent"\nn_samples = 16\nsettings = { start = "real", max_steps = 8, lr = 0.05 }',
     'source = "best_of_n"\nn_samples = 16\nsettings = { pool_size = 8 }',
     "cell[0].settings.pool_size: must be >= n_samples (16), got 8"),
])
def test_knobs_past_their_ceilings_are_refused(old, new, expected, tmp_path, capsys):
    assert old in TINY
    assert refused(tmp_path, capsys, TINY.replace(old, new)) == expected


def test_every_knob_that_sizes_work_has_a_ceiling():
    """Steps, generations, populations, batches and timesteps: none is unbounded."""
    from optbench.pressure import SOURCES
    sizing = ("max_steps", "max_generations", "population", "batch_size", "pool_size",
              "ddim_steps", "grad_steps", "retrain_every", "retrain_steps", "jitter", "interval_hi")
    unbounded = [(s.name, k) for s in SOURCES.values() for k, st in s.settings.items()
                 if k in sizing and st.maximum is None]
    assert not unbounded


def test_description_must_be_text(tmp_path, capsys):
    assert refused(tmp_path, capsys, 'description = 123\n' + TINY) == \
        "description: expected a string, got int 123"


def test_a_missing_pythonpath_folder_is_refused(tmp_path, capsys):
    line = refused(tmp_path, capsys, 'pythonpath = ["nope"]\n' + TINY)
    assert line == f"pythonpath: no such folder {tmp_path / 'nope'} (folders are relative to the suite file)"


# -- plug-ins that fail at import ----------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("import sys\nsys.exit(0)",
     "called sys.exit(0) while being imported; a plug-in must only define and register things"),
    ("raise SystemExit(3)",
     "called sys.exit(3) while being imported; a plug-in must only define and register things"),
    ("1 / 0", "raised ZeroDivisionError: division by zero; fix the module"),
    ("raise RuntimeError('no GPU here\\nsecond line')", "raised RuntimeError: no GPU here; fix the module"),
    ("raise KeyError('x')", "raised KeyError: 'x'; fix the module"),
    ("x = (", "raised SyntaxError: "),
])
def test_a_plugin_failing_at_import_is_one_line_naming_suite_and_plugin(body, expected, tmp_path, capsys):
    name = f"plug_{abs(hash(body)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(body + "\n")
    line = refused(tmp_path, capsys, f'pythonpath = ["."]\nplugins = ["{name}"]\n' + TINY)
    prefix = f"plugin {name!r}: " + (f"module {name!r} " if "sys.exit" in expected else
                                     f"importing module {name!r} ")
    assert line.startswith(prefix + expected.split(": ")[0]), line
    assert expected in line or expected.endswith(": "), line


def test_a_domain_whose_constructor_raises_is_named(tmp_path, capsys):
    (tmp_path / "baddom.py").write_text(textwrap.dedent("""
        from optbench.domains import Domain

        class Broken(Domain):
            def __init__(self):
                raise OSError("data drive not mounted")
    """))
    text = 'pythonpath = ["."]\n' + TINY.replace('domain = "mnist"', 'domain = "baddom:Broken"')
    line = refused(tmp_path, capsys, text)
    assert line.startswith("cell[0].domain: domain 'baddom:Broken': building it raised OSError: "
                           "data drive not mounted"), line


# -- the lock file -------------------------------------------------------------------------

def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path, capsys):
    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    precious = tmp_path / "precious.txt"
    precious.write_text("a week of notes\n")
    os.symlink(precious, folder / ".lock")
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert cli(["run", str(path), "--out", str(tmp_path / "results"), "--device", "cpu"]) == 2
    assert error_line(capsys) == (f"{folder.resolve() / '.lock'} is a symbolic link, not optbench's "
                                  "lock file; remove it (its target is left untouched) and rerun")
    assert precious.read_text() == "a week of notes\n"
    assert not list(folder.glob("*/DONE"))


def test_a_lock_that_is_a_folder_is_refused(tmp_path):
    from optbench.storage import suite_lock
    (tmp_path / ".lock").mkdir()
    with pytest.raises(ValueError, match=r"\.lock is a folder, so it cannot be optbench's lock file"):
        with suite_lock(tmp_path):
            pass


def test_a_cache_variable_pointing_at_a_file_is_refused(tmp_path, capsys, monkeypatch):
    file = tmp_path / "cache.txt"
    file.write_text("not a folder")
    monkeypatch.setenv("OPTBENCH_CACHE", str(file))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert cli(["run", str(path), "--out", str(tmp_path / "results")]) == 2
    assert error_line(capsys) == (
        f"environment variable OPTBENCH_CACHE: {file} is not a folder; point OPTBENCH_CACHE at "
        "a folder (created if missing)")
    assert file.read_text() == "not a folder" and not (tmp_path / "results").exists()


def test_a_declared_domain_without_checkpoints_keeps_its_models_beside_the_suite(tmp_path):
    """`optbench train` for it must never write into the installed package."""
    import json
    import numpy as np
    from optbench.suite import load_context
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((60, 2), dtype=np.float32), y=np.repeat([0, 1], 30))
    (tmp_path / "s.toml").write_text('[domains.twoblobs]\ndata = "npz"\npath = "d.npz"\n'
                                     'splits = { test = 0.4, reference = 0.4 }\n')
    context = load_context(tmp_path / "s.toml")
    from optbench.domains import get_domain
    assert get_domain("twoblobs").checkpoint_dir == tmp_path / "checkpoints" / "twoblobs"
    assert json.loads(context.domains)["twoblobs"]["checkpoints"] == str(tmp_path / "checkpoints" / "twoblobs")


def test_an_arch_import_typo_of_a_judge_names_the_import(tmp_path, capsys):
    """Every model's architecture is resolved when the suite is read, not only the proxy's."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((300, 2), dtype=np.float32), y=np.repeat([0, 1], 150))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    models = "\n".join(f'[domains.blobs.models.{m}]\narch = "{arch}"\nfile = "{tmp_path / "m.safetensors"}"'
                       for m, arch in [("proxy_mlp", "MLP"), ("judge_a", "mylab.netz:Net")])
    head, cell = TINY.split("[[cell]]")
    text = (head + f'[domains.blobs]\ndata = "npz"\npath = "d.npz"\ndefault_proxy = "proxy_mlp"\n'
            f'judges = ["judge_a"]\nensemble = ["judge_a"]\nfeature_spaces = ["judge_a"]\n'
            f'splits = {{ test = 0.4, reference = 0.4 }}\n{models}\n[[cell]]'
            + cell.replace('"mnist"', '"blobs"').replace('source = "pixel_ascent"', 'source = "pixel_ascent"\nproxy = "proxy_mlp"'))
    line = refused(tmp_path, capsys, text)
    assert line == ("cell[0].domain: domain 'blobs', model 'judge_a': arch: 'mylab.netz:Net': cannot "
                    "import module 'mylab.netz' (No module named 'mylab'); is it on PYTHONPATH or installed?"), line


def test_a_suite_name_too_long_for_a_folder_is_refused(tmp_path, capsys):
    line = refused(tmp_path, capsys, TINY.replace('name = "tiny"', f'name = "{"n" * 300}"'))
    assert line == ("name: expected 1 to 100 ASCII letters, digits, '-' or '_' (it names the results "
                    f"folder), got '{'n' * 40}... (300 characters)'")


def test_cell_folders_and_files_follow_the_umask(tmp_path):
    """Not mkdtemp's 0700 nor safetensors' 0600: others may read a shared results folder."""
    import stat
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    old = os.umask(0o022)
    try:
        run_suite(parse_suite(TINY.replace("max_steps = 8", "max_steps = 2")), tmp_path, device="cpu",
                  log=lambda *_: None)
    finally:
        os.umask(old)
    cell = next(p for p in (tmp_path / "tiny").iterdir() if (p / "DONE").is_file())
    assert stat.S_IMODE(cell.stat().st_mode) == 0o755
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in cell.iterdir()}
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.parametrize("source, settings, expected", [
    ("pixel_ascent", '{ start = "mean", max_steps = 2 }',
     "cell[0].settings.start: 'mean' starts from the mean generator_train example, and domain "
     "'twosplits' declares no generator_train split; use 'real' or 'noise', or add the split"),
    ("online_pixel_ascent", '{ max_steps = 2 }',
     "cell[0].settings.domain: online_pixel_ascent retrains on the proxy_train split, which domain "
     "'twosplits' does not declare; add proxy_train to its splits"),
])
def test_a_source_needing_a_split_the_domain_lacks_is_refused(source, settings, expected, tmp_path, capsys):
    import numpy as np
    from safetensors.torch import save_file
    from optbench.models.nets import MLP
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((200, 2), dtype=np.float32), y=np.repeat([0, 1], 100))
    net = MLP(8, 2, [2])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "m.safetensors"))
    table = 'arch = "MLP"\narch_kwargs = { hidden = 8, num_classes = 2, in_shape = [2] }\nfile = "m.safetensors"'
    head = 'name = "tiny"\nseeds = [0]\n'
    text = (head + '[domains.twosplits]\ndata = "npz"\npath = "d.npz"\ncheckpoints = "."\n'
            'default_proxy = "p"\njudges = ["j"]\nensemble = ["j"]\nfeature_spaces = ["j"]\n'
            'splits = { test = 0.4, reference = 0.4 }\n'
            f'[domains.twosplits.models.p]\n{table}\n[domains.twosplits.models.j]\n{table}\n'
            f'[[cell]]\ndomain = "twosplits"\nsource = "{source}"\nn_samples = 16\nsettings = {settings}\n')
    assert refused(tmp_path, capsys, text) == expected


def test_a_python_domain_without_checkpoints_uses_the_cache_not_the_package(tmp_path, monkeypatch):
    from optbench.domains import Domain
    from optbench.domains.base import PACKAGED_CHECKPOINTS

    class Mine(Domain):
        name, num_classes, shape = "mine", 2, (2,)
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    assert Mine().checkpoint_dir == tmp_path / "cache" / "checkpoints" / "mine"
    assert not str(Mine().checkpoint_dir).startswith(str(PACKAGED_CHECKPOINTS))
    from optbench.domains import get_domain
    assert get_domain("mnist").checkpoint_dir == PACKAGED_CHECKPOINTS / "mnist"   # shipped: unchanged


# -- declared domains and their models -----------------------------------------------------

def _npz_suite(tmp_path, domain_extra="", model_extra="", x=None, name="ud"):
    """A 2-class 4x4 image domain from an .npz, a SmallCNN proxy and an MLP judge."""
    import numpy as np
    from safetensors.torch import save_file
    from optbench.models.nets import MLP, SmallCNN
    rng = np.random.default_rng(0)
    x = rng.random((80, 1, 4, 4), dtype=np.float32) if x is None else x
    np.savez(tmp_path / "d.npz", x=x, y=np.repeat([0, 1], len(x) // 2))
    for file, net in (("p.safetensors", SmallCNN(4, 2, [1, 4, 4])), ("j.safetensors", MLP(8, 2, [1, 4, 4]))):
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / file))
    return (f'name = "tiny"\nseeds = [0]\n[domains.{name}]\ndata = "npz"\npath = "d.npz"\ncheckpoints = "."\n'
            f'default_proxy = "p"\njudges = ["j"]\nensemble = ["j"]\nfeature_spaces = ["j"]\n'
            f'splits = {{ test = 0.4, reference = 0.4 }}\n{domain_extra}\n'
            f'[domains.{name}.models.p]\narch = "SmallCNN"\narch_kwargs = {{ width = 4, num_classes = 2, in_shape = [1, 4, 4] }}\n'
            f'file = "p.safetensors"\n{model_extra}\n'
            f'[domains.{name}.models.j]\narch = "MLP"\narch_kwargs = {{ hidden = 8, num_classes = 2, in_shape = [1, 4, 4] }}\n'
            f'file = "j.safetensors"\n'
            f'[[cell]]\ndomain = "{name}"\nsource = "pixel_ascent"\nn_samples = 8\nsettings = {{ max_steps = 2 }}\n')


def test_a_well_declared_domain_passes_every_check(tmp_path):
    """The fixture itself is valid: the refusals below come from their one change."""
    from optbench.suite import parse_suite
    from optbench.preflight import check_models
    suite = parse_suite(_npz_suite(tmp_path), str(tmp_path / "tiny.toml"))
    check_models(suite.cells, suite.path)


@pytest.mark.parametrize("domain_extra, model_extra, expected", [
    ('judges = "j"', "", 'domains.ud: judges: expected a list of model names, e.g. ["judge_a"], got \'j\''),
    ("feature_spaces = []", "", "cell[0].domain: domain 'ud' declares no feature_spaces; a cell's referee needs "
                                "at least one: name models of the domain in feature_spaces"),
    ("mean = [0.5, 0.5, 0.5]", "", "domains.ud: mean: expected one number or 1 (one per channel), got (0.5, 0.5, 0.5)"),
    ('ensemble = ["j", "judge_zz"]', "",
     "cell[0].domain: domain 'ud' names 'judge_zz' in ensemble, a model it does not have; allowed: j, p "
     "(declare it, or run `optbench train ud --only judge_zz`)"),
    ("", 'fiel = "p.safetensors"',
     "cell[0].domain: domains.ud: models.p: unknown field 'fiel' (did you mean 'file'?); allowed: arch, "
     "arch_kwargs, file, torchscript, diffusers, kind, sha256, role, replicates"),
    ("", 'kind = "regressor"',
     "cell[0].domain: domains.ud: models.p.kind: unknown value 'regressor'; allowed: classifier, realness "
     "(a registered proxy kind)"),
])
def test_a_bad_domain_or_model_table_is_one_line(domain_extra, model_extra, expected, tmp_path, capsys):
    text = _npz_suite(tmp_path, domain_extra, model_extra)
    if domain_extra.startswith(("judges", "feature_spaces", "ensemble")):   # replace, not repeat, the field
        key = domain_extra.split(" = ")[0]
        text = text.replace(f'{key} = ["j"]\n', "", 1)
    assert refused(tmp_path, capsys, text) == expected


def test_ambiguous_channels_last_images_are_refused(tmp_path, capsys):
    """(N, 4, 4, 3) is 3-channel 4x4 images, not 4-channel 4x3 ones: read channels-first
    it would be silently wrong."""
    import numpy as np
    x = np.random.default_rng(0).random((80, 4, 4, 3), dtype=np.float32)
    line = refused(tmp_path, capsys, _npz_suite(tmp_path, x=x))
    assert line.startswith("domains.ud: path: ") and "x has shape (80, 4, 4, 3), which looks channels-last" in line
    assert line.endswith("save x.transpose(0, 3, 1, 2)")


def test_a_domain_name_that_is_a_path_is_refused(tmp_path, capsys):
    text = _npz_suite(tmp_path, name='"../../evil"').replace('domain = ""../../evil""', 'domain = "x"')
    assert refused(tmp_path, capsys, text) == (
        "domains.../../evil: a domain name is 1 to 100 ASCII letters, digits, '-' or '_' (it names cache "
        "files and folders)")


@pytest.mark.parametrize("body, expected", [
    ("raise FileNotFoundError('/data/blobs.h5')",
     "cell[0].domain: domain 'pool_raises': load_pool raised FileNotFoundError: /data/blobs.h5"),
    ("return np.zeros((60, 1, 3, 4), np.float32), np.arange(60) % 2",
     "cell[0].domain: domain 'pool_raises': load_pool returned x of shape (60, 1, 3, 4); expected (N, 1, 4, 4)"),
])
def test_a_python_domain_s_data_problem_comes_first_and_is_named(body, expected, tmp_path, capsys):
    module = f"mydoms_{abs(hash(body)) % 10**8}"   # one module per case: imports are cached
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""
        import numpy as np
        from optbench.domains import Domain

        class PoolRaises(Domain):
            name, num_classes, shape = "pool_raises", 2, (1, 4, 4)
            splits = {{"test": 0.4, "reference": 0.4}}
            def load_pool(self):
                {body}
    """))
    text = 'pythonpath = ["."]\n' + TINY.replace('domain = "mnist"', f'domain = "{module}:PoolRaises"')
    assert refused(tmp_path, capsys, text) == expected


# -- results folders that are not what they seem ------------------------------------------

def test_out_that_is_a_file_is_bad_input(tmp_path, capsys):
    out = tmp_path / "outfile"
    out.write_text("keep")
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert cli(["run", str(path), "--out", str(out)]) == 2
    assert error_line(capsys) == f"--out: {out} is not a folder; give a folder for the results (created if missing)"
    assert out.read_text() == "keep"


def test_a_lock_hard_linked_to_a_user_file_is_refused(tmp_path):
    from optbench.storage import suite_lock
    precious = tmp_path / "notes.txt"
    precious.write_text("a week of notes\n")
    (tmp_path / "suite").mkdir()
    os.link(precious, tmp_path / "suite" / ".lock")
    with pytest.raises(ValueError, match=r"\.lock is a hard link to another file \(2 names\)"):
        with suite_lock(tmp_path / "suite"):
            pass
    assert precious.read_text() == "a week of notes\n"


def test_only_optbench_s_own_temporaries_are_removed(tmp_path):
    from optbench.storage import suite_lock
    mine = [".0123456789abcdef.k2j3h4", ".plots-new.x1y2", ".plots-old.123"]
    theirs = [".backup.2024", ".git.old", ".0123456789abcdeX.k2"]
    for name in mine + theirs:
        (tmp_path / name).mkdir()
    with suite_lock(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(theirs)


def test_a_cell_folder_that_is_a_symlink_is_replaced_not_followed(tmp_path):
    """--force rewrites a cell: a symlink in its place is removed, its target untouched."""
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    suite = parse_suite(TINY.replace("max_steps = 8", "max_steps = 2"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (tmp_path / "out" / "tiny").mkdir(parents=True)
    (tmp_path / "out" / "tiny" / suite.cells[0].cell_id).symlink_to(elsewhere)
    counts = run_suite(suite, tmp_path / "out", force=True, device="cpu", log=lambda *_: None)
    cell = tmp_path / "out" / "tiny" / suite.cells[0].cell_id
    assert counts["computed"] == 1 and cell.is_dir() and not cell.is_symlink() and (cell / "DONE").is_file()
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]


def test_list_survives_a_domain_that_cannot_load(capsys):
    """One broken plug-in domain is a line of `optbench list`, not its end."""
    from optbench.domains import DOMAINS, Domain

    class Broken(Domain):
        name, num_classes, shape = "list_broken", 2, (2,)
        splits = {"test": 0.4, "reference": 0.4}

        def load_pool(self):
            raise OSError("disk gone")
    DOMAINS.register("list_broken", Broken)
    try:
        assert cli(["list", "domains"]) == 0
        out = capsys.readouterr().out
        assert "  list_broken: cannot be loaded: domain 'list_broken': load_pool raised OSError: disk gone" in out
        assert "  mnist: 10 classes" in out and "  gmm2: 4 classes" in out
    finally:
        DOMAINS.unregister("list_broken")
