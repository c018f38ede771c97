"""Data hygiene: training data checked against the test and reference splits by content
(optbench/domains/hygiene.py), and `optbench splits`."""
import numpy as np
import pytest

from optbench.cli import main as cli
from optbench.domains import get_domain
from optbench.domains.hygiene import check_training_data, overlap_error


@pytest.fixture(scope="module")
def planted():
    """60 noise rows, then 7 test rows, 10 proxy_train rows and 3 reference rows planted
    at known places."""
    dom = get_domain("mnist")
    rng = np.random.default_rng(0)
    test, _ = dom.load_split("test")
    train, _ = dom.load_split("proxy_train")
    ref, _ = dom.load_split("reference")
    parts = ([("noise", r) for r in rng.random((60, 1, 28, 28), dtype=np.float32)]
             + [("test", r) for r in test[:7].numpy()] + [("proxy_train", r) for r in train[:10].numpy()]
             + [("reference", r) for r in ref[100:103].numpy()])
    order = rng.permutation(len(parts))
    kinds = [parts[i][0] for i in order]
    return np.stack([parts[i][1] for i in order]), kinds


def test_exactly_the_planted_test_and_reference_rows_are_found(planted):
    x, kinds = planted
    found = check_training_data("mnist", x)
    assert found["overlap"] == {"test": 7, "reference": 3}   # the 10 proxy_train rows do not count
    assert found["rows"]["test"] == [i for i, k in enumerate(kinds) if k == "test"]
    assert found["rows"]["reference"] == [i for i, k in enumerate(kinds) if k == "reference"]
    assert found["n"] == 80 and found["clean"] is False
    # Flattened rows and float64 copies are the same content.
    assert check_training_data("mnist", x.reshape(80, -1).astype(np.float64))["overlap"] == found["overlap"]


def test_a_uint8_copy_of_a_test_row_is_found():
    test, _ = get_domain("mnist").load_split("test")
    u8 = (test[[3, 11]].numpy() * 255).round().astype(np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    found = check_training_data("mnist", np.concatenate([noise, u8]))
    assert found["overlap"] == {"test": 2, "reference": 0} and found["rows"]["test"] == [5, 6]


def test_the_refusal_names_the_file_the_count_and_the_fix(planted):
    line = overlap_error(check_training_data("mnist", planted[0]), "my_train.npz")
    assert line.startswith("my_train.npz: 7 rows equal rows of mnist's test split (the split optbench "
                           "starts from and compares with) and 3 rows equal rows of mnist's reference split")
    assert line.endswith("train on `proxy_train` only: optbench splits mnist --export DIR") and "\n" not in line
    train, _ = get_domain("mnist").load_split("proxy_train")
    assert overlap_error(check_training_data("mnist", train), "ok.npz") is None


def test_splits_check_on_the_command_line(tmp_path, capsys, planted):
    np.savez(tmp_path / "bad.npz", x=planted[0], y=np.zeros(80, int))
    assert cli(["splits", "mnist", "--check", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"optbench: error: {tmp_path / 'bad.npz'}: 7 rows equal rows of "
                                               "mnist's test split"), err
    train, y = get_domain("mnist").load_split("proxy_train")
    np.savez(tmp_path / "ok.npz", x=train.numpy(), y=y.numpy())
    assert cli(["splits", "mnist", "--check", str(tmp_path / "ok.npz")]) == 0
    assert "1000 rows, none equal to an example of mnist's test split (500) or reference split (1000)" \
        in capsys.readouterr().out
    np.savez(tmp_path / "shape.npz", x=train.numpy()[:, 0, :20])
    assert cli(["splits", "mnist", "--check", str(tmp_path / "shape.npz")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "shape.npz: x: shape (1000, 20, 28); expected (N, 1, 28, 28)" in err[0], err


def test_splits_export_writes_what_export_wrote(tmp_path, capsys):
    assert cli(["splits", "gmm2", "--export", str(tmp_path / "a"), "--splits", "proxy_train", "test"]) == 0
    assert cli(["export", "gmm2", "--out", str(tmp_path / "b"), "--splits", "proxy_train", "test"]) == 0
    for name in ("gmm2_proxy_train.npz", "gmm2_test.npz"):
        with np.load(tmp_path / "a" / name) as a, np.load(tmp_path / "b" / name) as b:
            assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"])
    assert cli(["splits", "gmm2"]) == 0
    out = capsys.readouterr().out
    assert "test: " in out and "never train on it" in out
    assert cli(["splits", "gmm2", "--splits", "test"]) == 2   # --splits chooses what --export writes
