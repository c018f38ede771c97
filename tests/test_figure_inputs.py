"""The report reads records only: what a figure needs from a model (a proxy's decision
regions, the exact referee's projections, a generator's samples) is computed by the run
(optbench/figure_inputs.py) and stored in the folder. With every way of loading or
running a model made to raise, the figures still carry those layers, equal to an
independent recomputation; a folder written before they were stored is drawn without
them, with a note to rerun with --force."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.figure_inputs import CELL_FILE, SUITE_FILE, read_cell_figures, read_generator_samples

GMM_SUITE = """
name = "fig_gmm"
seeds = [0]

[[cell]]
label = "pixel ascent"
domain = "gmm2"
proxy = "proxy_mlp"
proxy_training = "per_seed"
source = "pixel_ascent"
n_samples = 32
settings = { start = "real", lr = 0.05, max_steps = 4 }
"""

FACES_SUITE = """
name = "fig_faces"
seeds = [0]

[[cell]]
label = "pixel ascent"
domain = "faces"
source = "pixel_ascent"
n_samples = 16
settings = { start = "real", lr = 0.05, max_steps = 2 }

[[cell]]
label = "best-of-n, GAN"
domain = "faces"
source = "best_of_n"
n_samples = 16
settings = { generator = "gan_generator", pool_size = 64 }
"""


def forbid_models(monkeypatch) -> None:
    """Every way the package loads or runs a model raises: the loaders, wherever a
    module imported them by name, the generator's sampling and the faces projection."""
    import optbench.gold.faces as faces
    import optbench.models.checkpoints as checkpoints
    import optbench.models.gan as gan
    import optbench.referees as referees
    import optbench.training.replicates as replicates

    def no(*a, **k):
        raise AssertionError("the report loaded or ran a model")
    originals = {checkpoints.load_model, replicates.load_replicate, referees.load_proxy, gan.generate}
    for name, module in list(sys.modules.items()):
        if name.startswith("optbench") and module is not None:
            for attr, value in list(vars(module).items()):
                if any(value is f for f in originals):
                    monkeypatch.setattr(module, attr, no)
    monkeypatch.setattr(faces, "project", no)
    monkeypatch.setattr(faces.ManifoldReferee, "reconstruct", no)


def capture_imshow(monkeypatch) -> list:
    import matplotlib.axes
    seen = []
    real = matplotlib.axes.Axes.imshow

    def imshow(self, X, *a, **k):
        seen.append((np.asarray(X), k))
        return real(self, X, *a, **k)
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", imshow)
    return seen


def make_old(suite: Path) -> None:
    """The folder as a run before figure inputs wrote it: no figures.safetensors in any
    cell (nor in its DONE) and no generator samples."""
    (suite / SUITE_FILE).unlink(missing_ok=True)
    for done in suite.glob("*/DONE"):
        hashes = json.loads(done.read_text())
        hashes.pop(CELL_FILE)
        (done.parent / CELL_FILE).unlink()
        done.write_text(json.dumps(hashes, indent=1) + "\n")


# ---------------------------------------------------------------------------- gmm2: regions

@pytest.fixture(scope="module")
def gmm_suite(tmp_path_factory) -> Path:
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    out = tmp_path_factory.mktemp("fig")
    counts = run_suite(parse_suite(GMM_SUITE), out, device="cpu", log=lambda *_: None)
    assert counts["computed"] == 1 and counts["failed"] == 0, counts
    return out / "fig_gmm"


def test_gmm2_picture_draws_the_stored_regions_without_loading_a_model(gmm_suite, tmp_path, monkeypatch):
    from optbench.report import write_suite_outputs
    from optbench.storage import cell_is_complete
    from optbench.training.replicates import load_replicate
    suite = tmp_path / "fig_gmm"
    shutil.copytree(gmm_suite, suite)
    (cell,) = [d for d in suite.iterdir() if (d / "DONE").is_file()]
    assert cell_is_complete(cell) and CELL_FILE in json.loads((cell / "DONE").read_text())
    assert read_generator_samples(suite) == {}   # written at the end of the run; no generator here
    tensors, meta = read_cell_figures(cell)
    regions = tensors["proxy_regions"]
    assert regions.dtype == torch.uint8 and regions.shape == (100, 100) and set(tensors) == {"proxy_regions"}
    assert json.loads(meta["regions_bounds"]) == [-1.0, 1.0] and meta["regions_proxy"] == "proxy_mlp"
    assert (cell / CELL_FILE).stat().st_size < 11_000
    # Independently: the seed's replicate, its argmax at a few pixel centres.
    model, _ = load_replicate("gmm2", "proxy_mlp", 0, "cpu")
    g = regions.shape[0]
    idx = [(0, 0), (0, g - 1), (g - 1, 0), (g // 2, g // 3), (17, 83), (71, 29), (g - 1, g - 1)]
    pts = torch.tensor([[-1 + (j + 0.5) * 2 / g, -1 + (i + 0.5) * 2 / g] for i, j in idx])
    with torch.no_grad():
        expected = model(pts).argmax(1).tolist()
    assert [int(regions[i, j]) for i, j in idx] == expected
    assert len(set(regions.flatten().tolist())) > 1   # a field, not one colour

    forbid_models(monkeypatch)
    seen = capture_imshow(monkeypatch)
    info = write_suite_outputs(suite)
    assert info["cells"] == 1 and info["warnings"] == []
    drawn = [(x, k) for x, k in seen if x.shape == (g, g)]
    assert len(drawn) == 1 and np.array_equal(drawn[0][0], regions.numpy())
    assert drawn[0][1]["extent"] == (-1.0, 1.0, -1.0, 1.0) and drawn[0][1]["origin"] == "lower"
    assert (suite / "plots" / "picture_gmm2.png").stat().st_size > 10_000
    assert "Note:" not in (suite / "summary.md").read_text()


def test_an_old_gmm2_folder_plots_without_regions_and_says_how_to_add_them(gmm_suite, tmp_path, monkeypatch):
    from optbench.report import write_suite_outputs
    suite = tmp_path / "fig_gmm"
    shutil.copytree(gmm_suite, suite)
    make_old(suite)
    forbid_models(monkeypatch)
    seen = capture_imshow(monkeypatch)
    info = write_suite_outputs(suite)
    assert info["cells"] == 1 and not info["left_out"]   # the old cell is complete without the file
    assert not seen   # no decision-region field
    (warning,) = info["warnings"]
    assert warning == (f"{suite} predates the stored figure inputs: plots/picture_gmm2.png is drawn without "
                       "the proxy's decision regions; rerun the suite with --force to add them")
    assert (suite / "plots" / "picture_gmm2.png").stat().st_size > 10_000
    assert "**Note:** this results folder predates the stored figure inputs" in (suite / "summary.md").read_text()


# ---------------------------------------------------------------------------- faces: projections, GAN sheet

def _faces_row(knob: str, level: float, t: float) -> dict:
    row = {knob: level, "pressure": level, "proxy_prob": 0.2 + 0.7 * t, "judge_prob": 0.2 + 0.3 * t,
           "gap": 0.4 * t, "diverged_frac": 0.0, "n_finite": 16, "kid": 0.01 + 0.1 * t, "kid_std": 0.01,
           "fid": 1.0 + 5 * t, "precision": 0.9, "recall": 0.9, "c2st": 0.5 + 0.3 * t, "diversity": 3.0,
           "l2": level, "gold_atypical": t, "gold_prob": 1 - t, "gold_hit": 1 - t, "gold_proj_err": 0.05 + t,
           "gold_edge": 0.0}
    return row | {f"{j}_prob": 0.5 for j in ("judge_bncnn", "judge_mlp")}


@pytest.fixture()
def faces_suite(tmp_path, monkeypatch):
    """A faces suite written by the runner's own write_cell and suite hook, from hand-made
    results (computing faces cells takes minutes): real faces at the first level, faces
    with stripes at the last."""
    from optbench.domains import get_domain
    from optbench.figure_inputs import write_suite_figures
    from optbench.gold.faces import ManifoldReferee, sample
    from optbench.pressure import SOURCES
    from optbench.runner import CellResult, write_cell
    from optbench.suite import parse_suite
    # The exact referee's projection without its 1,000-face calibration (reconstruct needs none).
    monkeypatch.setitem(get_domain("faces").__dict__, "_gold", ManifoldReferee.__new__(ManifoldReferee))
    suite = parse_suite(FACES_SUITE)
    folder = tmp_path / suite.name
    folder.mkdir()
    x, _, _ = sample(8, np.random.default_rng(3))
    first = torch.from_numpy(x)
    last = first.clone()
    last[..., ::4] = 1.0
    snaps = torch.stack([first, (first + last) / 2, last])
    null = {"kid": {"q01": -0.01, "q99": 0.02, "n": 16, "draws": 60, "mean": 0.0, "std": 0.01},
            "gold_atypical": {"q01": 0.0, "q99": 0.1, "n": 16, "draws": 60, "mean": 0.0, "std": 0.01}}
    for spec in suite.cells:
        knob, distance = SOURCES[spec.source].knob, SOURCES[spec.source].distance
        rows = [_faces_row(knob, float(v), t) | {distance: t} for v, t in zip((1, 2, 4), (0.0, 0.5, 1.0))]
        rows[-1]["proxy_prob"] = float("nan")   # a last level without a proxy value: the one before is shown
        write_cell(CellResult(spec, rows, {"kid": 0.001, "fid": 0.5, "judge_prob": 0.9}, snaps, torch.arange(8) % 2,
                              {"proxy_kind": "classifier", "wall_seconds": 0.1}, [], null), folder)
    write_suite_figures(folder, suite.cells)
    (folder / "suite.json").write_text(json.dumps({"schema": 1, "name": suite.name, "cells": [
        s.cell_id for s in suite.cells], "labels": {s.cell_id: s.label for s in suite.cells}}))
    return folder, snaps


def test_faces_projections_and_gan_sheet_come_from_the_stored_arrays(faces_suite, monkeypatch):
    from PIL import Image
    from torchvision.utils import save_image

    from optbench.gold.faces import project, render
    from optbench.models.checkpoints import load_model
    from optbench.models.gan import generate, sample_latents
    from optbench.report import write_suite_outputs
    folder, snaps = faces_suite
    cells = sorted(d for d in folder.iterdir() if (d / "DONE").is_file())
    # Independently: the projection of the first and the last level with a proxy value.
    shown = torch.cat([snaps[0], snaps[1]])
    expected = render(project(shown)[0]).float()
    for cell in cells:
        tensors, _ = read_cell_figures(cell)
        assert tensors["projection_levels"].tolist() == [0, 1]
        assert tensors["projections"].dtype == torch.float16 and tensors["projections"].shape == (2, 8, 1, 28, 28)
        assert torch.allclose(tensors["projections"].float().flatten(0, 1), expected, atol=2e-3)
        assert (cell / CELL_FILE).stat().st_size < 30_000
    samples = read_generator_samples(folder)
    assert list(samples) == ["faces/gan_generator"]
    G = load_model("faces", "gan_generator")
    direct = generate(G, sample_latents(100, 5, G.latent_dim))
    assert samples["faces/gan_generator"].dtype == torch.float16
    assert torch.allclose(samples["faces/gan_generator"].float(), direct, atol=2e-3)

    forbid_models(monkeypatch)
    seen = capture_imshow(monkeypatch)
    info = write_suite_outputs(folder)
    assert info["cells"] == 2 and info["warnings"] == []
    strips = [x for x, _ in seen if x.shape == (56, 2 * 8 * 28)]   # outputs above their projections
    assert len(strips) == 2
    for strip in strips:
        assert np.allclose(strip[28:], torch.cat(list(expected[:, 0]), 1).clamp(0, 1).numpy(), atol=2e-3)
    # The sheet is the stored samples, drawn as the report draws them.
    ref = folder / "sheet.png"
    save_image(samples["faces/gan_generator"].float().clamp(0, 1), str(ref), nrow=10, padding=2, pad_value=0.5)
    with Image.open(folder / "plots" / "samples_gan_generator.png") as a, Image.open(ref) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_an_old_faces_folder_draws_outputs_only_and_says_how_to_add_them(faces_suite, monkeypatch):
    from optbench.report import write_suite_outputs
    folder, _ = faces_suite
    make_old(folder)
    forbid_models(monkeypatch)
    seen = capture_imshow(monkeypatch)
    info = write_suite_outputs(folder)
    assert info["cells"] == 2 and not info["left_out"]
    assert len([x for x, _ in seen if x.shape == (28, 2 * 8 * 28)]) == 2   # the outputs, no projection row
    (warning,) = info["warnings"]
    assert warning == (f"{folder} predates the stored figure inputs: plots/projections_faces.png is drawn "
                       "without the projections; plots/samples_gan_generator.png is not drawn; rerun the "
                       "suite with --force to add them")
    assert (folder / "plots" / "projections_faces.png").is_file()
    assert not (folder / "plots" / "samples_gan_generator.png").exists()


def test_a_cell_of_a_domain_without_gold_stores_metadata_only(tmp_path):
    """The file marks a folder written with figure inputs: present, about 40 bytes."""
    from types import SimpleNamespace

    from optbench.figure_inputs import write_cell_figures
    from optbench.suite import parse_suite
    spec = parse_suite('name = "m"\nseeds = [0]\n[[cell]]\nlabel = "a"\ndomain = "mnist"\nsource = "pixel_ascent"\n'
                       'n_samples = 16\nsettings = { max_steps = 2 }\n').cells[0]
    write_cell_figures(SimpleNamespace(spec=spec, snapshots=torch.zeros(2, 8, 1, 28, 28), rows=[]), tmp_path)
    assert read_cell_figures(tmp_path) == ({}, {"schema": "1"})
    assert (tmp_path / CELL_FILE).stat().st_size < 64
