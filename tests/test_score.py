"""`optbench score` / `optbench.score`: outputs made elsewhere, read by the domain's
referees exactly as a cell's level is, with the same departure reading."""
import json
import math

import numpy as np
import pytest
import torch

from optbench import score
from optbench.cli import main as cli
from optbench.domains import get_domain
from optbench.metrics import departure_side
from optbench.referees.null import departed
from optbench.scoring import SCHEMA, read_outputs, reads_proxy

N = 64


@pytest.fixture(scope="module")
def real():
    x, y = get_domain("mnist").load_split("test")
    return x[:N], y[:N]


@pytest.fixture(scope="module")
def noise():
    return (torch.from_numpy(np.random.default_rng(0).random((N, 1, 28, 28), dtype=np.float32)),
            torch.arange(N) % 10)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_real_digits_stay_on_the_data_and_uniform_noise_leaves_it(referee, real, noise):
    null = referee.null(N)
    verdicts = {}
    for name, (x, y) in {"real": real, "noise": noise}.items():
        got = score(x, y, domain="mnist", referee=referee)
        direct = referee.evaluate(x, y, None)
        # The numbers are Referee.evaluate's, less the proxy's read-outs (no proxy named).
        assert set(got["metrics"]) == {k for k in direct if not reads_proxy(k)}
        assert "proxy_prob" not in got["metrics"] and "gap" not in got["metrics"]
        assert all(_same(got["metrics"][k], direct[k]) for k in got["metrics"]), name
        # The departure reading is the cell's: referees/null.py `departed` against the null at n.
        assert set(got["departure"]) == {k for k in direct if departure_side(k) and k in null}
        for k, r in got["departure"].items():
            assert r["departed"] == departed(null, k, direct[k])
            assert r["threshold"] == (null[k]["q99"] if r["side"] == "high" else null[k]["q01"])
        assert got["departed"] == [k for k, r in got["departure"].items() if r["departed"]]
        verdicts[name] = got["verdict"]
    assert verdicts["real"]["read"] == verdicts["noise"]["read"] == 28   # 7 metrics x 4 feature spaces
    assert verdicts["real"]["departed"] <= 3, verdicts        # about 1% per metric on real data
    assert verdicts["noise"]["departed"] == 28, verdicts


def test_a_named_proxy_adds_its_read_outs(referee, noise):
    x, y = noise
    got = score(x, y, domain="mnist", proxy="proxy_cnn", referee=referee)
    direct = referee.evaluate(x, y, None)
    assert got["proxy"] == "proxy_cnn"
    for k in ("proxy_prob", "proxy_hit", "judge_agree", "gap", "judge_bncnn_agree"):
        assert _same(got["metrics"][k], direct[k]), k


def test_the_cli_writes_score_json_and_score_md(tmp_path, capsys, noise, real):
    x, y = noise
    start = real[0].numpy()
    np.savez(tmp_path / "out.npz", x=x.numpy(), y=y.numpy(), start=start)
    assert cli(["score", str(tmp_path / "out.npz"), "--domain", "mnist", "--out", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert "off the data by 28 of 28 metrics" in printed, printed
    text = (tmp_path / "s" / "score.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"score.json holds {c}"))   # strict JSON
    assert data["schema"] == SCHEMA and data["domain"] == "mnist" and data["n"] == N and data["start"] is True
    import optbench
    assert data["optbench"] == optbench.__version__ and data["source"].endswith("out.npz")
    assert data["null"]["available"] and data["null"]["n"] == N
    kid = data["departure"]["kid"]
    assert kid["side"] == "high" and kid["departed"] is True and data["metrics"]["kid"] > kid["threshold"]
    assert data["departure"]["precision"]["side"] == "low"
    l2 = float(np.linalg.norm((x.numpy() - start).reshape(N, -1), axis=1).mean())
    assert data["metrics"]["l2"] == pytest.approx(l2, rel=1e-6)   # the starting points were read
    md = (tmp_path / "s" / "score.md").read_text()
    assert "Off the data by 28 of 28 metrics" in md and "| kid |" in md


def _bad(tmp_path, name: str, **arrays) -> str:
    x, y = get_domain("mnist").load_split("test")
    arrays = {"x": x[:10].numpy(), "y": y[:10].numpy(), **arrays}
    np.savez(tmp_path / name, **{k: v for k, v in arrays.items() if v is not None})
    return str(tmp_path / name)


@pytest.mark.parametrize("case, arrays, extra, expected", [
    ("shape", {"x": np.zeros((10, 28, 28), np.float32)}, [], "x: shape (10, 28, 28); expected (N, 1, 28, 28), mnist's shape"),
    ("channels_last", {"x": np.zeros((10, 28, 28, 1), np.float32)}, [], "x.transpose(0, 3, 1, 2)"),
    ("bounds", {"x": np.full((10, 1, 28, 28), 200.0, np.float32)}, [], "x: 7840 values outside mnist's bounds [0, 1]"),
    ("nan", {"x": np.full((10, 1, 28, 28), np.nan, np.float32)}, [], "x: 7840 non-finite values (NaN or inf), the first in row 0"),
    ("count", {"y": np.arange(7) % 10}, [], "y: 7 targets for 10 outputs"),
    ("label", {"y": np.r_[np.zeros(9, int), 12]}, [], "y: y[9] = 12 is outside mnist's classes 0..9"),
    ("fraction", {"y": np.r_[np.zeros(9), 2.5]}, [], "y: y[9] = 2.5 is not a whole number"),
    ("few", {"x": np.zeros((3, 1, 28, 28), np.float32), "y": np.zeros(3, int)}, [], "x: 3 outputs; at least 6"),
    ("start", {"start": np.zeros((9, 1, 28, 28), np.float32)}, [], "start: 9 starting points for 10 outputs"),
    ("no_targets", {"y": None}, [], "no array 'y' and no --targets"),
    ("twice", {}, ["--targets", "t.txt"], "--targets: "),
    ("proxy", {}, ["--proxy", "judge_bncnn"], "--proxy: 'judge_bncnn' is a referee of domain 'mnist'"),
])
def test_bad_inputs_are_one_line_naming_the_field(tmp_path, capsys, case, arrays, extra, expected):
    path = _bad(tmp_path, f"{case}.npz", **arrays)
    (tmp_path / "t.txt").write_text(" ".join(["1"] * 10))
    extra = [str(tmp_path / e) if e == "t.txt" else e for e in extra]
    assert cli(["score", path, "--domain", "mnist", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("optbench: error: ") and expected in err[0], err
    if case not in ("twice", "proxy"):
        assert f"{case}.npz" in err[0]   # the file is named
    assert not (tmp_path / "o").exists()   # refused before any work


def test_image_folders_give_targets_by_class_folder_or_by_targets_file(tmp_path):
    from PIL import Image
    x, _ = get_domain("mnist").load_split("test")
    pix = (x[:8, 0].numpy() * 255).round().astype(np.uint8)
    for i, a in enumerate(pix):
        folder = tmp_path / "by_class" / str(3 if i < 5 else 7)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / f"{i:02d}.png")
        (tmp_path / "flat").mkdir(exist_ok=True)
        Image.fromarray(a).save(tmp_path / "flat" / f"{i:02d}.png")
    found = read_outputs(tmp_path / "by_class", "mnist")
    assert np.array_equal(found["x"], x[:8].numpy()) and found["targets"].tolist() == [3] * 5 + [7] * 3
    (tmp_path / "t.txt").write_text("\n".join("12345678"))
    found = read_outputs(tmp_path / "flat", "mnist", tmp_path / "t.txt")
    assert np.array_equal(found["x"], x[:8].numpy()) and found["targets"].tolist() == list(range(1, 9))
    with pytest.raises(ValueError, match="class folder '12' is outside mnist's classes 0..9"):
        (tmp_path / "by_class" / "12").mkdir()
        read_outputs(tmp_path / "by_class", "mnist")
