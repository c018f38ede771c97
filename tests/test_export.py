"""`optbench export`: a domain's splits as .npz files, equal to what optbench reads."""
import numpy as np

from optbench.cli import main as cli
from optbench.domains import get_domain


def test_exported_splits_are_the_domain_s_own_examples(tmp_path, capsys):
    assert cli(["export", "gmm2", "--out", str(tmp_path / "splits"), "--splits", "proxy_train", "test"]) == 0
    dom = get_domain("gmm2")
    for split in ("proxy_train", "test"):
        with np.load(tmp_path / "splits" / f"gmm2_{split}.npz") as f:
            x, y = dom.load_split(split)
            assert f["x"].dtype == np.float32 and f["y"].dtype == np.int64
            assert np.array_equal(f["x"], x.numpy()) and np.array_equal(f["y"], y.numpy())
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["gmm2_proxy_train.npz", "gmm2_test.npz"]


def test_an_unknown_split_is_refused_before_writing(tmp_path, capsys):
    assert cli(["export", "gmm2", "--out", str(tmp_path / "splits"), "--splits", "test", "tset"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("optbench: error: domain 'gmm2': unknown split 'tset'"), err
    assert not (tmp_path / "splits").exists()


def test_by_default_only_the_training_splits_are_exported(tmp_path):
    assert cli(["export", "gmm2", "--out", str(tmp_path)]) == 0
    train = sorted(f"gmm2_{s}.npz" for s in get_domain("gmm2").splits if s.endswith("_train"))
    assert sorted(p.name for p in tmp_path.iterdir()) == train and "gmm2_test.npz" not in train
