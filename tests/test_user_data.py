"""Users' data by path: image folders, .npz files and torchvision roots become domains
whose splits are declared, disjoint, and whose pixels are the ones on disk."""
import struct

import numpy as np
import pytest
from PIL import Image

from optbench.domains import DomainError
from optbench.domains.files import FileDomain

SPLITS = {"proxy_train": 2, "judge_train": 2, "test": 2, "reference": 0.3}


def _pngs(root, classes=2, per_class=10, size=(4, 5), seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / f"class_{c}" / f"{i}.png")
            arrays[(c, i)] = a
    return arrays


def test_image_folder_pixels_labels_and_splits(tmp_path):
    arrays = _pngs(tmp_path / "imgs")
    dom = FileDomain("imgs", "image_folder", tmp_path / "imgs", splits=SPLITS)
    assert (dom.shape, dom.num_classes, dom.bounds) == ((3, 4, 5), 2, (0.0, 1.0))
    x, y = dom.load_pool()
    # the first image of class 1, channels first, scaled by 1/255: what PIL wrote
    np.testing.assert_allclose(x[10], arrays[(1, 0)].transpose(2, 0, 1) / 255.0, rtol=0, atol=1e-7)
    assert y.tolist() == [0] * 10 + [1] * 10
    sizes = dom.split_sizes()
    assert sizes == {"proxy_train": 4, "judge_train": 4, "test": 4, "reference": 6}  # 0.3 of 10 = 3 per class
    rows = [set(dom.split_indices(s).tolist()) for s in SPLITS]
    assert sum(map(len, rows)) == len(set().union(*rows))   # disjoint


def test_identical_images_in_two_splits_are_refused(tmp_path):
    _pngs(tmp_path / "imgs", per_class=10)
    for i in range(10):   # every image of class 0 is the same: some copy lands in two splits
        Image.open(tmp_path / "imgs" / "class_0" / "0.png").save(tmp_path / "imgs" / "class_0" / f"{i}.png")
    with pytest.raises(DomainError, match=r"domain 'dups': an example of split .* is identical to one in split"):
        FileDomain("dups", "image_folder", tmp_path / "imgs", splits=SPLITS)   # refused when declared


def test_an_image_of_another_size_is_named(tmp_path):
    _pngs(tmp_path / "imgs")
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "imgs" / "class_1" / "odd.png")
    with pytest.raises(DomainError, match=r"odd\.png is 6x6x3, the first image 4x5x3"):
        FileDomain("odd", "image_folder", tmp_path / "imgs", splits=SPLITS)


def test_npz_uint8_is_scaled_and_float_keeps_its_range(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 1, 3, 3), dtype=np.uint8)
    y = np.repeat([0, 1, 2], 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    dom = FileDomain("npz8", "npz", tmp_path / "d.npz", splits=SPLITS)
    np.testing.assert_allclose(dom.load_pool()[0], x / 255.0, atol=1e-7)
    np.savez(tmp_path / "v.npz", x=rng.normal(0, 3, (30, 5)).astype(np.float32), y=y)
    vec = FileDomain("vec", "npz", tmp_path / "v.npz", splits=SPLITS)
    assert vec.shape == (5,) and not vec.is_image and vec.bounds[0] < -1
    before = vec.fingerprint()
    np.savez(tmp_path / "v.npz", x=rng.normal(0, 3, (30, 5)).astype(np.float32), y=y)
    assert FileDomain("vec", "npz", tmp_path / "v.npz", splits=SPLITS).fingerprint() != before
    np.savez(tmp_path / "bad.npz", images=x, y=y)
    with pytest.raises(DomainError, match=r"bad\.npz has no array 'x'; it has images, y"):
        FileDomain("bad", "npz", tmp_path / "bad.npz", splits=SPLITS)


def _idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_mnist_root_reads_the_raw_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    parts = {}
    for part, n in (("train", 20), ("t10k", 10)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 2
        _idx(raw / f"{part}-images-idx3-ubyte", images, 2051)
        _idx(raw / f"{part}-labels-idx1-ubyte", labels, 2049)
        parts[part] = (images, labels)
    dom = FileDomain("tvm", "torchvision", tmp_path, dataset="MNIST", splits=SPLITS)
    x, y = dom.load_pool()
    np.testing.assert_allclose(x[:, 0], np.concatenate([parts["train"][0], parts["t10k"][0]]) / 255.0, atol=1e-7)
    assert y.tolist() == np.concatenate([parts["train"][1], parts["t10k"][1]]).tolist()


def test_pickled_cifar_is_refused_with_the_binary_version_named(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DomainError, match=r"pickled python version, which is never read: download cifar-10-binary"):
        FileDomain("c10", "torchvision", tmp_path, dataset="CIFAR10", splits=SPLITS)


def test_suite_domain_tables_are_checked_field_by_field(tmp_path):
    from optbench.suite import SuiteError, parse_suite
    _pngs(tmp_path / "imgs")
    text = f"""
name = "x"
[domains.mine]
data = "jpeg_folder"
path = "{tmp_path / 'imgs'}"
[[cell]]
domain = "mine"
source = "pixel_ascent"
n_samples = 8
"""
    with pytest.raises(SuiteError, match=r"domains\.mine\.data: unknown value 'jpeg_folder'; allowed: image_folder, npz, torchvision"):
        parse_suite(text)
    with pytest.raises(SuiteError, match=r"domains\.mine: missing field 'path'"):
        parse_suite(text.replace(f'path = "{tmp_path / "imgs"}"', ""))


def test_a_domain_name_declared_again_with_other_data_is_read_anew(tmp_path):
    from optbench.domains import get_domain
    from optbench.suite import _context
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", x=rng.random((30, 4)).astype(np.float32), y=np.repeat([0, 1, 2], 10))
    table = {"data": "npz", "splits": {"test": 3, "reference": 3}}
    _context(str(tmp_path / "s.toml"), {"domains": {"again": {**table, "path": "a.npz"}}})
    first = get_domain("again").fingerprint()
    _context(str(tmp_path / "s.toml"), {"domains": {"again": {**table, "path": "b.npz"}}})
    assert get_domain("again").fingerprint() != first
    np.testing.assert_array_equal(get_domain("again").load_pool()[0], np.load(tmp_path / "b.npz")["x"])
