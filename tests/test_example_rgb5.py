"""The README's walkthrough: examples/rgb5 (a 3-channel 32x32 5-class domain from a
folder of PNGs, a user classifier and a user generator by import path) prepares and runs
from its TOML, with fewer seeds and steps than the example's own suite."""
import json
import shutil
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rgb5"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb5") / "rgb5"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "models", "__pycache__"))
    sys.path.insert(0, str(folder))
    try:
        import prepare
        prepare.HERE = folder
        prepare.main()
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("prepare", None)
    return folder


def test_prepare_writes_the_users_models_and_optbench_referees(example):
    manifest = json.loads((example / "models" / "manifest.json").read_text())["models"]
    assert set(manifest) == {"judge_bncnn", "judge_mlp", "feature_ae"}
    assert manifest["judge_bncnn"]["arch_kwargs"]["in_shape"] == [3, 32, 32]
    assert manifest["judge_bncnn"]["test_accuracy"] > 0.8     # five shapes are easy to tell apart
    assert len(list((example / "data").glob("*/*.png"))) == 5 * 120


def test_suite_runs_pixel_ascent_and_best_of_n_through_the_users_models(example, tmp_path):
    from optbench.report import write_suite_outputs
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    text = (example / "suite.toml").read_text()
    text = text.replace("seeds = [0, 1, 2]", "seeds = [0]").replace("max_steps = 256", "max_steps = 16")
    text = text.replace("pool_size = 4096", "pool_size = 512").replace("n_samples = 60", "n_samples = 30")
    (example / "small.toml").write_text(text)
    suite = parse_suite(text, str(example / "small.toml"))
    counts = run_suite(suite, tmp_path, log=lambda *_: None)
    assert counts["computed"] == 2 and counts["failed"] == 0
    out = tmp_path / "rgb5_example"
    ascent = json.loads((out / suite.cells[0].cell_id / "curve.json").read_text())["rows"]
    assert ascent[-1]["proxy_prob"] > ascent[0]["proxy_prob"] + 0.3   # the user's classifier is fooled
    bon = json.loads((out / suite.cells[1].cell_id / "curve.json").read_text())["rows"]
    probs = [r["proxy_prob"] for r in bon if r["proxy_prob"] == r["proxy_prob"]]   # NaN past min_ess
    assert len(probs) >= 5 and probs[-1] > probs[0] + 0.3 and probs == sorted(probs)
    versions = json.loads((out / suite.cells[1].cell_id / "spec.json").read_text())["versions"]
    assert {"my_classifier", "my_generator", "judge_bncnn"} <= set(versions["checkpoints"]) and "data" in versions
    write_suite_outputs(out)
    assert "best-of-n through my_generator" in (out / "summary.md").read_text()
