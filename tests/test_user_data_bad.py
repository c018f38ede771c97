"""Users' data that cannot work is refused when the domain is declared, in one line
naming the file, the field and the fix; data that can work is read at its true values."""
import numpy as np
import pytest
from PIL import Image

from optbench.domains import Domain, DomainError
from optbench.domains.files import FileDomain

SPLITS = {"proxy_train": 2, "judge_train": 2, "test": 2, "reference": 0.3}


def refused(*args, **fields) -> str:
    """The one-line DomainError message of declaring a FileDomain."""
    with pytest.raises(DomainError) as e:
        FileDomain(*args, **{"splits": SPLITS, **fields})
    message = str(e.value)
    assert "\n" not in message, message
    return message


def assert_parts(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def _folder(root, images: dict[tuple[int, int], Image.Image], suffix=".png"):
    """images[(class, i)] saved as root/class_<c>/<i><suffix>."""
    for (c, i), im in images.items():
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
        im.save(root / f"class_{c}" / f"{i}{suffix}")
    return root


def _npz(tmp_path, name="d.npz", **arrays):
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def _xy(n=30, classes=3, shape=(4,), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)).astype(np.float32), np.arange(n) % classes


# -- image depth and modes --------------------------------------------------------------

def test_16_bit_gray_pngs_keep_their_depth(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {(c, i): rng.integers(0, 2000, (4, 5)).astype(np.uint16) for c in range(2) for i in range(10)}
    _folder(tmp_path / "g", {k: Image.fromarray(a) for k, a in arrays.items()})
    assert Image.open(tmp_path / "g" / "class_0" / "0.png").mode == "I;16"
    dom = FileDomain("g16", "image_folder", tmp_path / "g", splits=SPLITS)
    x, _ = dom.load_pool()
    assert dom.shape == (1, 4, 5)
    np.testing.assert_allclose(x[3, 0], arrays[(0, 3)] / 65535.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(x[10 + 7, 0], arrays[(1, 7)] / 65535.0, rtol=0, atol=1e-7)
    assert x.max() < 2000 / 65535 + 1e-6   # low values stay low, nothing is clipped to 1


@pytest.mark.parametrize("dtype", [">u2", "<u2", "int32"])
def test_16_bit_and_32_bit_integer_tiffs_are_scaled_by_65535(tmp_path, dtype):
    rng = np.random.default_rng(1)
    arrays = {(c, i): rng.integers(0, 65536, (3, 3)).astype(dtype) for c in range(2) for i in range(10)}
    _folder(tmp_path / "t", {k: Image.fromarray(a) for k, a in arrays.items()}, suffix=".tif")
    x, _ = FileDomain("t16", "image_folder", tmp_path / "t", splits=SPLITS).load_pool()
    np.testing.assert_allclose(x[5, 0], arrays[(0, 5)].astype(np.float64) / 65535.0, rtol=0, atol=1e-7)


def test_8_bit_and_16_bit_versions_of_one_picture_agree(tmp_path):
    rng = np.random.default_rng(2)
    pictures = [rng.integers(0, 256, (4, 4)).astype(np.uint8) for _ in range(10)]
    # class 0: 8-bit; class 1: the same pictures at 16 bits (v * 257, plus under half a step)
    images = {(0, i): Image.fromarray(p) for i, p in enumerate(pictures)}
    images |= {(1, i): Image.fromarray((p.astype(np.uint16) * 257 + 100)) for i, p in enumerate(pictures)}
    x, _ = FileDomain("mixed", "image_folder", _folder(tmp_path / "m", images), splits=SPLITS).load_pool()
    np.testing.assert_allclose(x[:10], x[10:], rtol=0, atol=1 / 255)
    np.testing.assert_allclose(x[:10, 0], np.stack(pictures) / 255.0, rtol=0, atol=1e-7)


def test_palette_images_become_rgb_or_gray_by_their_palette(tmp_path):
    rng = np.random.default_rng(3)
    color = rng.integers(0, 256, (16, 3)).astype(np.uint8)
    gray = np.repeat(np.arange(0, 256, 17, dtype=np.uint8)[:, None], 3, axis=1)
    for name, palette in (("color", color), ("gray", gray)):
        idx = {(c, i): rng.integers(0, 16, (4, 5)).astype(np.uint8) for c in range(2) for i in range(10)}
        images = {}
        for k, a in idx.items():
            im = Image.frombytes("P", (a.shape[1], a.shape[0]), a.tobytes())
            im.putpalette(palette.flatten().tolist())
            images[k] = im
        x, _ = FileDomain(name, "image_folder", _folder(tmp_path / name, images), splits=SPLITS).load_pool()
        expected = palette[idx[(1, 4)]].transpose(2, 0, 1) / 255.0
        np.testing.assert_allclose(x[14], expected if name == "color" else expected[:1], rtol=0, atol=1e-7)


def test_one_bit_images_read_as_zero_and_one_and_gray_palettes_as_one_channel(tmp_path):
    rng = np.random.default_rng(4)
    bits = {(c, i): rng.random((4, 4)) < 0.5 for c in range(2) for i in range(10)}
    images = {k: Image.fromarray(b.astype(np.uint8) * 255).convert("1") for k, b in bits.items()}
    images[(1, 9)] = images[(1, 9)].convert("L").convert("P")   # a palette of grays
    x, _ = FileDomain("bits", "image_folder", _folder(tmp_path / "b", images), splits=SPLITS).load_pool()
    np.testing.assert_array_equal(x[2, 0], bits[(0, 2)].astype(np.float32))
    np.testing.assert_array_equal(x[19, 0], bits[(1, 9)].astype(np.float32))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_opaque_alpha_is_dropped_and_transparent_pixels_refused(tmp_path, mode):
    rng = np.random.default_rng(6)
    rgb = {(c, i): rng.integers(0, 256, (4, 4, 3)).astype(np.uint8) for c in range(2) for i in range(10)}
    images = {k: Image.fromarray(a).convert(mode) for k, a in rgb.items()}
    dom = FileDomain("o", "image_folder", _folder(tmp_path / "o", images), splits=SPLITS)
    # what Pillow's own conversion gives, channels first
    expected = np.asarray(images[(0, 6)].convert("L" if mode == "LA" else "RGB"), np.float64) / 255.0
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    assert dom.shape == expected.shape
    np.testing.assert_allclose(dom.load_pool()[0][6], expected, rtol=0, atol=1e-7)
    if mode == "P":
        images[(1, 3)].info["transparency"] = int(np.asarray(images[(1, 3)])[0, 0])
    else:
        a = np.asarray(images[(1, 3)]).copy()
        a[0, 0, -1] = 0
        images[(1, 3)] = Image.fromarray(a)
    message = refused("t", "image_folder", _folder(tmp_path / "t", images))
    assert_parts(message, "domain 't': path:", str(tmp_path / "t" / "class_1" / "3.png"), f"mode {mode}",
                 "transparent", "save it without alpha")


def test_float_images_outside_0_1_or_not_finite_are_refused(tmp_path):
    images = {(c, i): Image.fromarray(np.full((3, 3), 0.25, np.float32)) for c in range(2) for i in range(10)}
    for i in range(10):
        images[(0, i)] = Image.fromarray(np.full((3, 3), 0.01 * i, np.float32))
        images[(1, i)] = Image.fromarray(np.full((3, 3), 0.5 + 0.01 * i, np.float32))
    x, _ = FileDomain("f", "image_folder", _folder(tmp_path / "f", images, ".tif"), splits=SPLITS).load_pool()
    np.testing.assert_allclose(x[13], np.full((1, 3, 3), 0.53), rtol=0, atol=1e-7)
    images[(1, 2)] = Image.fromarray(np.full((3, 3), 3.5, np.float32))
    message = refused("f2", "image_folder", _folder(tmp_path / "f2", images, ".tif"))
    assert_parts(message, str(tmp_path / "f2" / "class_1" / "2.tif"), "mode F", "[3.5, 3.5]", "[0, 1]")
    bad = np.full((3, 3), 0.5, np.float32)
    bad[1, :2] = [np.nan, np.inf]
    images[(1, 2)] = Image.fromarray(bad)
    message = refused("f3", "image_folder", _folder(tmp_path / "f3", images, ".tif"))
    assert_parts(message, str(tmp_path / "f3" / "class_1" / "2.tif"), "2 non-finite values (NaN or inf)")


def test_32_bit_integer_images_beyond_16_bits_are_refused(tmp_path):
    images = {(c, i): Image.fromarray(np.full((3, 3), 100 * i + c, np.int32)) for c in range(2) for i in range(10)}
    images[(0, 4)] = Image.fromarray(np.full((3, 3), 70000, np.int32))
    message = refused("i32", "image_folder", _folder(tmp_path / "i", images, ".tif"))
    assert_parts(message, str(tmp_path / "i" / "class_0" / "4.tif"), "mode I", "70000", "0..65535")


def _png_bytes(size=(40, 40), seed=7) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3)).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("content", ["truncated", "junk", "empty"])
def test_an_unreadable_image_is_named(tmp_path, content):
    images = {(c, i): Image.fromarray(np.full((40, 40, 3), 10 * i + c, np.uint8)) for c in range(2) for i in range(10)}
    root = _folder(tmp_path / "u", images)
    data = _png_bytes()
    bad = root / "class_1" / "5.png"
    bad.write_bytes({"truncated": data[:len(data) * 2 // 3], "junk": b"not an image", "empty": b""}[content])
    message = refused("u", "image_folder", root)
    assert_parts(message, f"path: {bad} cannot be read as an image", "replace or remove it")


def test_an_image_of_several_frames_is_refused(tmp_path):
    images = {(c, i): Image.fromarray(np.full((4, 4), 10 * i + c, np.uint8)) for c in range(2) for i in range(10)}
    root = _folder(tmp_path / "a", images, ".gif")
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 255)]
    frames[0].save(root / "class_1" / "3.gif", save_all=True, append_images=frames[1:])
    assert_parts(refused("a", "image_folder", root), f"path: {root / 'class_1' / '3.gif'} has 2 frames",
                 "save each frame as its own image")


def test_a_file_the_user_may_not_read_is_named(tmp_path, monkeypatch):
    import errno
    x, y = _xy()
    path = _npz(tmp_path, x=x, y=y)

    def denied(file, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(file))
    import optbench.domains.files as files
    monkeypatch.setattr(files, "open", denied, raising=False)   # what open() does without read permission
    assert_parts(refused("p", "npz", path), f"domain 'p': path: {path}: Permission denied")


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    rng = np.random.default_rng(8)
    images = {(c, i): Image.fromarray(rng.integers(0, 256, (4, 4)).astype(np.uint8))
              for c in range(2) for i in range(10)}
    root = _folder(tmp_path / "h", images)
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / ".ipynb_checkpoints" / "0.png")
    (root / "class_0" / "._0.png").write_bytes(b"\x00\x05\x16\x07")   # macOS resource fork
    dom = FileDomain("h", "image_folder", root, splits=SPLITS)
    assert dom.num_classes == 2 and len(dom.load_pool()[0]) == 20


def test_duplicate_images_are_named_by_file(tmp_path):
    rng = np.random.default_rng(9)
    images = {(c, i): Image.fromarray(rng.integers(0, 256, (4, 4)).astype(np.uint8))
              for c in range(2) for i in range(10)}
    for i in range(10):   # every image of class 0 is the same: some copy lands in two splits
        images[(0, i)] = images[(0, 0)]
    root = _folder(tmp_path / "d", images)
    message = refused("d", "image_folder", root)
    assert_parts(message, "domain 'd': an example of split", "is identical to one in split",
                 "remove duplicates from the data")
    named = [f"{root / 'class_0'}/{i}.png" for i in range(10) if f"{root / 'class_0'}/{i}.png" in message]
    assert len(named) == 2, message
    assert "row" not in message


def test_duplicate_npz_rows_are_named_by_both_rows(tmp_path):
    x, y = _xy()
    x[y == 1] = x[1]   # every class-1 row is the same
    message = refused("dn", "npz", _npz(tmp_path, x=x, y=y))
    rows = [int(r) for r in __import__("re").findall(r"row (\d+)", message)]
    assert len(rows) == 2 and all(y[r] == 1 for r in rows), message
    assert_parts(message, str(tmp_path / "d.npz"))


# -- .npz files ---------------------------------------------------------------------------

def test_fractional_labels_are_refused_naming_the_row(tmp_path):
    x, y = _xy()
    y = y.astype(np.float64)
    y[4] = 0.9
    message = refused("fr", "npz", _npz(tmp_path, x=x, y=y))
    assert_parts(message, f"path: {tmp_path / 'd.npz'}", "y[4] = 0.9", "not an integer", "class labels 0..C-1")
    y[4] = 1.0   # whole numbers stored as floats are labels
    dom = FileDomain("ok", "npz", _npz(tmp_path, "ok.npz", x=x, y=y), splits=SPLITS)
    assert dom.load_pool()[1].tolist() == (np.arange(30) % 3).tolist()


@pytest.mark.parametrize("bad, parts", [
    (lambda y: np.where(np.arange(30) == 7, -1, y), ["y[7] = -1 is negative", "class labels 0..C-1"]),
    (lambda y: np.where(np.arange(30) >= 5, y, np.nan), ["y has 5 NaN or inf labels, the first in row 0"]),
    (lambda y: y[:, None], ["y has shape (30, 1)", "y.reshape(-1)"]),
    (lambda y: np.eye(3)[y], ["y has shape (30, 3)", "y.argmax(1)"]),
    (lambda y: y.astype(str), ["y has dtype <U21", "integer class labels"]),
    (lambda y: np.where(y == 2, 5, y), ["no example of classes 2, 3, 4", "labels run 0..5",
                                        "np.unique(y, return_inverse=True)[1]"]),
    (lambda y: np.zeros_like(y), ["y has only class 0", "at least 2 classes"]),
])
def test_bad_labels_are_refused(tmp_path, bad, parts):
    x, y = _xy()
    message = refused("lab", "npz", _npz(tmp_path, x=x, y=bad(y)))
    assert_parts(message, f"domain 'lab': path: {tmp_path / 'd.npz'}", *parts)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_x_is_refused_with_count_and_first_row(tmp_path, value):
    x, y = _xy()
    x[6, 1] = x[6, 3] = x[20, 0] = value
    message = refused("nf", "npz", _npz(tmp_path, x=x, y=y))
    assert_parts(message, f"path: {tmp_path / 'd.npz'}", "x has 3 non-finite values (NaN or inf)",
                 "the first in row 6", "replace or drop")
    assert "did you mean" not in message and "bounds" not in message


def _write_npz_of(tmp_path, kind) -> tuple:
    x, y = _xy()
    path = tmp_path / "d.npz"
    if kind == "empty file":
        path.write_bytes(b"")
        return path, ["is empty (0 bytes)", "np.savez(path, x=x, y=y)"]
    if kind == "npy":
        with open(path, "wb") as f:
            np.save(f, x)
        return path, ["is a single .npy array, not an .npz archive", "np.savez(path, x=x, y=y)"]
    if kind == "junk":
        path.write_bytes(b"x,y\n1,2\n")
        return path, ["is not an .npz archive", "np.savez(path, x=x, y=y)"]
    if kind == "truncated":
        np.savez(path, x=x, y=y)
        path.write_bytes(path.read_bytes()[:300])
        return path, ["cannot be read as an .npz archive", "save it again"]
    if kind == "empty arrays":
        np.savez(path, x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64))
        return path, ["x has shape (0, 4) with no values", "at least one example"]
    if kind == "object":
        np.savez(path, x=np.array([[1.0], "a"] * 15, dtype=object), y=y)
        return path, ["array 'x' holds Python objects", "never read",
                      "np.savez(path, x=np.asarray(x, dtype=np.float32), y=np.asarray(y, dtype=np.int64))"]
    if kind == "strings":
        np.savez(path, x=x.astype(str), y=y)
        return path, ["x has dtype <U", "not numbers", "x.astype(np.float32)"]
    if kind == "complex":
        np.savez(path, x=x.astype(np.complex64), y=y)
        return path, ["x has dtype complex64", "not numbers"]
    if kind == "3-d":
        np.savez(path, x=np.random.default_rng(0).random((30, 8, 8)).astype(np.float32), y=y)
        return path, ["x has shape (30, 8, 8)", "(N, d) vectors or (N, C, H, W) images", "x[:, None]"]
    if kind == "5-d":
        np.savez(path, x=np.random.default_rng(0).random((30, 1, 2, 2, 2)).astype(np.float32), y=y)
        return path, ["x has shape (30, 1, 2, 2, 2)", "(N, d) vectors or (N, C, H, W) images"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["empty file", "npy", "junk", "truncated", "empty arrays", "object",
                                  "strings", "complex", "3-d", "5-d"])
def test_unreadable_npz_files_get_one_line_with_the_fix(tmp_path, kind):
    path, parts = _write_npz_of(tmp_path, kind)
    message = refused("bad", "npz", path)
    assert_parts(message, f"domain 'bad': path: {path}", *parts)
    assert "allow_pickle" not in message and "zero-size" not in message


def test_channels_last_images_are_refused_and_channels_first_read(tmp_path):
    rng, y = np.random.default_rng(10), np.arange(30) % 3
    message = refused("cl", "npz", _npz(tmp_path, x=rng.random((30, 20, 20, 3)).astype(np.float32), y=y))
    assert_parts(message, f"path: {tmp_path / 'd.npz'}: x has shape (30, 20, 20, 3)",
                 "channels-last (N, H, W, C)", "x.transpose(0, 3, 1, 2)")
    # (N, 3, 8, 4): channels-first, though its last axis is 4
    x = rng.random((30, 3, 8, 4)).astype(np.float32)
    dom = FileDomain("cf", "npz", _npz(tmp_path, "cf.npz", x=x, y=y), splits=SPLITS)
    assert dom.shape == (3, 8, 4)
    np.testing.assert_array_equal(dom.load_pool()[0], x)


def test_npz_path_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "d.npz").mkdir()
    assert_parts(refused("dir", "npz", tmp_path / "d.npz"), f"path: {tmp_path / 'd.npz'} is a folder",
                 "an .npz file")


# -- splits and declaration ----------------------------------------------------------------

def test_an_unknown_split_name_is_refused_with_a_suggestion(tmp_path):
    x, y = _xy()
    message = refused("sp", "npz", _npz(tmp_path, x=x, y=y), splits={"tset": 2, "test": 2, "reference": 2})
    assert_parts(message, "domain 'sp': splits: unknown split 'tset'", "(did you mean 'test'?)",
                 "allowed: proxy_train, judge_train, generator_train, test, reference")


def test_a_domain_of_test_and_reference_loads_and_names_the_splits_it_lacks(tmp_path):
    x, y = _xy(n=60)
    dom = FileDomain("tr", "npz", _npz(tmp_path, x=x, y=y), splits={"test": 8, "reference": 8})
    assert dom.split_sizes() == {"test": 24, "reference": 24}
    np.testing.assert_array_equal(dom.load_split("test")[0].numpy(), x[dom.split_indices("test")])
    with pytest.raises(DomainError) as e:
        dom.load_split("generator_train")
    assert str(e.value) == ("domain 'tr': split 'generator_train' is not declared (declared: test, reference); "
                            "add generator_train to the domain's splits to use what reads it")


def test_splits_must_be_a_table(tmp_path):
    x, y = _xy()
    message = refused("sp", "npz", _npz(tmp_path, x=x, y=y), splits=["test", "reference"])
    assert_parts(message, "domain 'sp': splits: expected a table split -> per-class count or share",
                 "got list")
    message = refused("sp", "npz", tmp_path / "d.npz", split_seed="7")
    assert_parts(message, "domain 'sp': split_seed: expected an integer >= 0, got '7'")


def test_bounds_must_be_two_numbers(tmp_path):
    x, y = _xy()
    message = refused("b", "npz", _npz(tmp_path, x=x, y=y), bounds=["low", 1])
    assert_parts(message, "domain 'b': bounds: expected [low, high], two numbers", "['low', 1]")


def test_a_cifar_batch_of_the_wrong_size_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(bytes(3073 * 2))
    (folder / "data_batch_3.bin").write_bytes(bytes(3073 + 10))
    message = refused("c", "torchvision", tmp_path, dataset="CIFAR10")
    assert_parts(message, f"path: {folder / 'data_batch_3.bin'} has 3083 bytes", "multiple of 3073")
    (folder / "data_batch_3.bin").unlink()
    assert_parts(refused("c", "torchvision", tmp_path, dataset="CIFAR10"),
                 f"path: no {folder / 'data_batch_3.bin'}")


# -- domains with code ----------------------------------------------------------------------

class _Coded(Domain):
    name, num_classes, shape = "coded", 3, (2,)
    splits = {"test": 2, "reference": 2}

    def __init__(self, x, y):
        self._xy = (x, y)

    def load_pool(self):
        return self._xy


def test_a_coded_domain_with_non_finite_data_is_refused():
    x, y = _xy(shape=(2,))
    x[9, 0] = np.nan
    x[12, 1] = np.inf
    with pytest.raises(DomainError) as e:
        _Coded(x, y).load_split("test")
    assert_parts(str(e.value), "domain 'coded': load_pool returned x with 2 non-finite values (NaN or inf), "
                 "the first in row 9")


def test_a_coded_domain_missing_a_class_is_refused():
    x, y = _xy(shape=(2,), classes=2)
    with pytest.raises(DomainError) as e:
        _Coded(x, y).load_split("test")
    assert_parts(str(e.value), "domain 'coded': load_pool returned no example of class 2",
                 "labels must cover 0..2")


def test_the_cli_refuses_bad_user_data_in_one_line(tmp_path, capsys):
    from optbench.cli import main as cli
    x, y = _xy()
    y = y.astype(np.float64)
    y[11] = 1.5
    _npz(tmp_path, x=x, y=y)
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[domains.mine]\ndata = "npz"\npath = "d.npz"\n'
                     'splits = { test = 3, reference = 3 }\n'
                     '[[cell]]\ndomain = "mine"\nsource = "pixel_ascent"\nn_samples = 8\n')
    assert cli(["run", str(suite), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert_parts(err[0], f"optbench: error: {suite}: domains.mine: path: {tmp_path / 'd.npz'}",
                 "y[11] = 1.5 is not an integer")
    assert not (tmp_path / "out").exists()


def test_gray_images_in_a_folder_of_colour_ones_become_rgb(tmp_path):
    """A gray palette (or L) image among colour ones is not refused: its channel is
    repeated, as Pillow's convert("RGB") does."""
    from PIL import Image
    rng = np.random.default_rng(3)
    for c in range(2):
        (tmp_path / "imgs" / f"k{c}").mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"k{c}" / f"{i}.png")
    gray = Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8))
    gray.convert("P").save(tmp_path / "imgs" / "k1" / "9.png")
    dom = FileDomain("mixed", "image_folder", tmp_path / "imgs", splits={"test": 0.4, "reference": 0.4})
    x, _ = dom.load_pool()
    expected = np.asarray(Image.open(tmp_path / "imgs" / "k1" / "9.png").convert("RGB"), np.float32) / 255
    assert dom.shape == (3, 4, 4)
    np.testing.assert_array_equal(x[19], expected.transpose(2, 0, 1))
