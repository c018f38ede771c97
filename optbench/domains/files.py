"""Domains from a user's files, declared in a suite file with no Python:

    [domains.cifar5]
    data = "image_folder"          # or "npz", or "torchvision"
    path = "data/cifar5"           # relative to the suite file
    checkpoints = "models/cifar5"  # its manifest.json and safetensors (or [domains.cifar5.models])
    splits = { proxy_train = 0.3, judge_train = 0.3, generator_train = 0.2, test = 0.1, reference = 0.1 }

The formats:
    image_folder  one subfolder per class (sorted names are classes 0..C-1; names starting
                  with "." are skipped), images any format Pillow reads, all one size and
                  channel count. Each image is scaled to [0, 1] by its own depth, so 8- and
                  16-bit copies of one picture read the same: 1, L, RGB, CMYK, YCbCr and
                  palette images by 255 (a palette of grays gives one channel; in a
                  folder that also holds colour images, gray ones become RGB), 16-bit gray
                  (I;16, I;16B) and 32-bit integer (I, values 0..65535) by 65535, float (F)
                  as stored, which must lie in [0, 1]. An alpha channel is dropped when
                  every pixel is opaque and refused otherwise. Pillow reads 16-bit RGB PNGs
                  at 8 bits per channel.
    npz           arrays `x` (N, d) vectors or (N, C, H, W) images, float or integer
                  (uint8 scaled to [0, 1]), and `y` (N,) integer labels 0..C-1, every class
                  present; object arrays are never read
    torchvision   a data root as torchvision writes it, already on disk: `dataset` =
                  "MNIST" or "FashionMNIST" (raw idx files, train and test pooled) or
                  "CIFAR10" (the binary version, cifar-10-batches-bin; the python
                  version is pickled and never read)

Every fault is refused when the domain is declared, naming the file and the fix: values
that are not finite, labels that are not whole numbers 0..C-1, unreadable files. Splits
are cut per class from the pooled examples (Domain.load_pool), then checked disjoint by
row and by content (domains/base.py), with duplicates named by file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from optbench.domains.base import MAX_CLASSES, Domain, DomainError
from optbench.domains.base import count_of as _count

DATA_FORMATS = ("image_folder", "npz", "torchvision")
TORCHVISION_SETS = ("MNIST", "FashionMNIST", "CIFAR10")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DOMAIN_KEYS = {"data": f"one of {', '.join(DATA_FORMATS)}", "path": "file or folder of the data",
               "dataset": f"for torchvision: one of {', '.join(TORCHVISION_SETS)}",
               "splits": "table split -> per-class count or share", "split_seed": "integer",
               "checkpoints": "folder with manifest.json", "models": "tables of models",
               "bounds": "[low, high]", "default_proxy": "model name", "judges": "model names",
               "ensemble": "model names", "feature_spaces": "model names, the first primary",
               "mean": "number or list per channel", "std": "number or list per channel"}


class FileDomain(Domain):
    """A domain whose pool is read from `path` in format `data`."""

    def __init__(self, name: str, data: str, path: str | Path, where: str = "", **fields):
        self.where = where or f"domain {name!r}"
        unknown = [k for k in fields if k not in DOMAIN_KEYS]
        if unknown:
            raise DomainError(f"{self.where}: unknown field {unknown[0]!r}; allowed: {', '.join(DOMAIN_KEYS)}")
        if data not in DATA_FORMATS:
            raise DomainError(f"{self.where}.data: unknown value {data!r}; allowed: {', '.join(DATA_FORMATS)}")
        self.name, self.data, self.path = name, data, Path(path).expanduser()
        self.dataset = fields.pop("dataset", None)
        if data == "torchvision" and self.dataset not in TORCHVISION_SETS:
            raise DomainError(f"{self.where}.dataset: unknown value {self.dataset!r}; allowed: "
                              f"{', '.join(TORCHVISION_SETS)}")
        if "bounds" in fields:
            fields["bounds"] = self._bounds(fields["bounds"])
        for key in ("judges", "ensemble", "feature_spaces"):
            if key in fields:
                fields[key] = self._names(key, fields[key])
        if "default_proxy" in fields and (not isinstance(fields["default_proxy"], str) or not fields["default_proxy"]):
            raise DomainError(f"{self.where}: default_proxy: expected a model name, got {fields['default_proxy']!r}")
        for key in ("mean", "std"):
            if isinstance(fields.get(key), list):
                fields[key] = tuple(fields[key])
        for key, value in fields.items():
            setattr(self, key, value)
        x, y = self._read()
        self._pool = (x, y)
        self.num_classes = int(y.max()) + 1
        self.shape = tuple(x.shape[1:])
        if "bounds" not in fields:
            self.bounds = (0.0, 1.0) if x.min() >= 0 and x.max() <= 1 else (float(x.min()), float(x.max()))
        self._data   # splits, labels and duplicates checked now, before any work

    def load_pool(self):
        return self._pool

    def _where(self) -> str:
        return self.where

    def row_name(self, row: int) -> str:
        if self.data == "image_folder":
            return str(list_images(self.path)[0][row])
        return f"row {row} of {self.path}"

    def _names(self, key: str, value) -> tuple[str, ...]:
        """A list of model names (a bare string would be read as its letters)."""
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise DomainError(f"{self.where}: {key}: expected a list of model names, e.g. [\"judge_a\"], "
                              f"got {value!r}")
        return tuple(value)

    def _bounds(self, value) -> tuple[float, float]:
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(b, (int, float)) and not isinstance(b, bool) and np.isfinite(b) for b in value))
        if not ok:
            raise DomainError(f"{self.where}: bounds: expected [low, high], two numbers, got {value!r}")
        return float(value[0]), float(value[1])

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.path.exists():
            raise DomainError(f"{self.where}.path: no such file or folder {self.path}")
        reader = {"image_folder": read_image_folder, "npz": read_npz, "torchvision": read_torchvision}[self.data]
        try:
            return reader(self.path, *([self.dataset] if self.data == "torchvision" else []))
        except DomainError as e:
            raise DomainError(f"{self.where}: {e}") from None
        except OSError as e:   # a file or folder this user may not read
            raise DomainError(f"{self.where}: path: {e.filename or self.path}: {e.strerror or e}") from None


# -- image folders --------------------------------------------------------------------

ONE_BYTE = ("1", "L", "RGB", "CMYK", "YCbCr")      # read through Pillow's 8-bit conversion
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
WITH_ALPHA = ("LA", "RGBA", "PA")


def _visible(p: Path) -> bool:
    """Hidden names (.ipynb_checkpoints, macOS ._ files) are tools' leftovers, not data."""
    return not p.name.startswith(".")


def list_images(root: Path) -> tuple[list[Path], list[int]]:
    """Every image file under root's class folders, in pool order, and its class."""
    if not root.is_dir():
        raise DomainError(f"path: {root} is a file; data = \"image_folder\" expects a folder with one "
                          "subfolder per class")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if len(classes) < 2:
        raise DomainError(f"path: {root} needs one subfolder per class (at least 2), found {len(classes)}")
    files, labels = [], []
    for c, folder in enumerate(classes):
        found = sorted(f for f in folder.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES and _visible(f) and f.is_file())
        if not found:
            raise DomainError(f"path: class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [c] * len(found)
    return files, labels


def read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    files, labels = list_images(root)
    xs = [read_image(f) for f in files]
    if {a.shape[0] for a in xs} == {1, 3}:
        # Gray and colour images in one folder (a gray palette among colour ones): gray
        # becomes RGB by repeating its channel, exactly as Pillow converts it.
        xs = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in xs]
    shape = xs[0].shape
    for f, a in zip(files, xs):
        if a.shape != shape:
            raise DomainError(f"path: {f} is {a.shape[1]}x{a.shape[2]}x{a.shape[0]}, the first image "
                              f"{shape[1]}x{shape[2]}x{shape[0]} ({files[0]}); every image must have one "
                              "size and channel count")
    return np.stack(xs), np.asarray(labels, dtype=np.int64)


def read_image(f: Path) -> np.ndarray:
    """One image as (C, H, W) float32 in [0, 1], scaled by its own depth."""
    from PIL import Image
    try:
        with Image.open(f) as im:
            if getattr(im, "n_frames", 1) > 1:   # only the first frame would be read
                raise DomainError(f"path: {f} has {im.n_frames} frames; save each frame as its own image")
            im.load()
            a = image_array(im, f)
    except DomainError:
        raise
    except Exception as e:   # Pillow raises many kinds for a damaged file
        raise DomainError(f"path: {f} cannot be read as an image ({type(e).__name__}: {e}); "
                          "replace or remove it") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def image_array(im, f: Path) -> np.ndarray:
    """(H, W) or (H, W, C) float32 in [0, 1] of an opened image."""
    mode = im.mode
    if mode in SIXTEEN_BIT:
        return np.asarray(im).astype(np.float32) / 65535.0
    if mode == "I":
        return _int32_image(np.asarray(im), f)
    if mode == "F":
        return _float_image(np.asarray(im, dtype=np.float32), f)
    if mode in WITH_ALPHA or (mode == "P" and "transparency" in im.info):
        _refuse_transparency(im, f)
    if mode in ("P", "PA"):
        return np.asarray(im.convert("L" if _gray_palette(im) else "RGB"), dtype=np.float32) / 255.0
    if mode in WITH_ALPHA:
        return np.asarray(im.convert("L" if mode == "LA" else "RGB"), dtype=np.float32) / 255.0
    if mode in ONE_BYTE:
        return np.asarray(im.convert("L" if mode in ("1", "L") else "RGB"), dtype=np.float32) / 255.0
    raise DomainError(f"path: {f} has mode {mode}, which is not read; save it as 8-bit gray (L) or "
                      "color (RGB), or 16-bit gray (I;16)")


def _int32_image(a: np.ndarray, f: Path) -> np.ndarray:
    # Pillow gives mode I for some 16-bit files; wider values have no agreed full scale.
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > 65535:
        raise DomainError(f"path: {f} has mode I (32-bit integer) with values in [{lo}, {hi}], outside "
                          "0..65535; save it as 16-bit gray (I;16) or rescale it")
    return a.astype(np.float32) / 65535.0


def _float_image(a: np.ndarray, f: Path) -> np.ndarray:
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise DomainError(f"path: {f} has mode F with {_count(bad, 'non-finite value')} (NaN or inf); replace them "
                          "or remove the image")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        raise DomainError(f"path: {f} has mode F (32-bit float) with values in [{lo:g}, {hi:g}]; float "
                          "images must lie in [0, 1]: rescale it, or save it as 8- or 16-bit integers")
    return a


def _refuse_transparency(im, f: Path) -> None:
    """An opaque alpha channel carries nothing and is dropped; real transparency has no
    meaning to a classifier, so the user flattens it onto the background they intend."""
    alpha = np.asarray(im.convert("RGBA").getchannel("A") if im.mode in ("P", "PA") else im.getchannel("A"))
    clear = int((alpha < 255).sum())
    if clear:
        raise DomainError(f"path: {f} has mode {im.mode} with {_count(clear, 'transparent pixel')}; transparency "
                          "is not read: save it without alpha, flattened onto a background, e.g. "
                          "Image.alpha_composite(Image.new('RGBA', im.size, 'white'), "
                          "im.convert('RGBA')).convert('RGB')")


def _gray_palette(im) -> bool:
    palette = np.asarray(im.getpalette() or [0, 0, 0]).reshape(-1, 3)
    return bool((palette == palette[:, :1]).all())


# -- .npz files -------------------------------------------------------------------------

SAVE_NPZ = "np.savez(path, x=x, y=y)"
NUMERIC = "biuf"   # numpy dtype kinds: bool, signed, unsigned, float


def read_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    _check_npz_file(file)
    try:
        with np.load(file, allow_pickle=False) as data:   # never unpickle
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DomainError(f"path: {file} has no array {missing[0]!r}; it has {', '.join(data.files)}; "
                                  "expected x (N, ...) and y (N,)")
            x, y = (_npz_array(data, key, file) for key in ("x", "y"))
    except DomainError:
        raise
    except Exception as e:   # zipfile, zlib and numpy's format errors of a damaged file
        raise DomainError(f"path: {file} cannot be read as an .npz archive ({type(e).__name__}: {e}); "
                          f"save it again with {SAVE_NPZ}") from None
    x = check_x(x, file)
    return x, check_labels(y, len(x), file)


def _check_npz_file(file: Path) -> None:
    """What the file is, from its first bytes, before numpy guesses (numpy reads an
    unknown file as a pickle and suggests allow_pickle)."""
    if file.is_dir():
        raise DomainError(f"path: {file} is a folder; data = \"npz\" expects an .npz file ({SAVE_NPZ})")
    with open(file, "rb") as fh:
        head = fh.read(6)
    if not head:
        raise DomainError(f"path: {file} is empty (0 bytes); save the data with {SAVE_NPZ}")
    if head == b"\x93NUMPY":
        raise DomainError(f"path: {file} is a single .npy array, not an .npz archive; save both arrays "
                          f"with {SAVE_NPZ}")
    if not head.startswith(b"PK"):
        raise DomainError(f"path: {file} is not an .npz archive (a zip of .npy arrays); save the data "
                          f"with {SAVE_NPZ}")


def _npz_array(data, key: str, file: Path) -> np.ndarray:
    """One array, its header read first so object arrays are named, never loaded."""
    fmt = np.lib.format
    with data.zip.open(f"{key}.npy") as fh:
        version = fmt.read_magic(fh)
        header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        dtype = header(fh)[2]
    if dtype.hasobject:
        raise DomainError(f"path: {file}: array {key!r} holds Python objects (dtype {dtype}), which are "
                          "never read (loading them would unpickle); save numeric arrays: "
                          "np.savez(path, x=np.asarray(x, dtype=np.float32), y=np.asarray(y, dtype=np.int64))")
    return data[key]


def _looks_channels_last(shape: tuple[int, ...]) -> bool:
    """(N, H, W, C): a last axis of 1, 3 or 4 channels, and either a first axis that
    cannot be channels or square images only when read channels-last ((N, 4, 4, 3) is
    3-channel 4x4 images, not 4-channel 4x3 ones)."""
    _, a, b, c = shape
    if c not in (1, 3, 4):
        return False
    return a not in (1, 3, 4) or (a == b != c)


def check_x(x: np.ndarray, file: Path) -> np.ndarray:
    """x as float32 (uint8 scaled to [0, 1]) if it is numbers, channels-first, finite."""
    if x.dtype.kind not in NUMERIC:
        raise DomainError(f"path: {file}: x has dtype {x.dtype}, not numbers; save x as numbers, "
                          "e.g. x.astype(np.float32)")
    if x.ndim not in (2, 4):
        hint = "; for one-channel images (N, H, W) save x[:, None]" if x.ndim == 3 else ""
        raise DomainError(f"path: {file}: x has shape {x.shape}; expected (N, d) vectors or (N, C, H, W) "
                          f"images{hint}")
    if x.size == 0:
        raise DomainError(f"path: {file}: x has shape {x.shape} with no values; expected at least one "
                          "example")
    if x.ndim == 4 and _looks_channels_last(x.shape):
        raise DomainError(f"path: {file}: x has shape {x.shape}, which looks channels-last (N, H, W, C); "
                          "images must be channels-first (N, C, H, W): save x.transpose(0, 3, 1, 2)")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(len(x), -1).any(1))[0])
        raise DomainError(f"path: {file}: x has {_count(int(bad.sum()), 'non-finite value')} (NaN or inf), the first "
                          f"in row {row}; replace or drop those rows")
    return x


def check_labels(y: np.ndarray, n: int, file: Path) -> np.ndarray:
    """y as int64 if it holds one whole-number label per example, 0..C-1 with every class
    present (casting would floor 0.9 to 0, and a missing class leaves its splits empty)."""
    expected = "expected integer class labels 0..C-1"
    if y.dtype.kind not in NUMERIC:
        raise DomainError(f"path: {file}: y has dtype {y.dtype}; {expected} (y.astype(np.int64))")
    if y.ndim != 1:
        fix = ("save y.reshape(-1)" if y.ndim == 2 and y.shape[1] == 1 else
               "for one-hot labels save y.argmax(1)" if y.ndim == 2 else "save one label per example")
        raise DomainError(f"path: {file}: y has shape {y.shape}; expected one label per example, shape (N,): {fix}")
    if len(y) != n:
        raise DomainError(f"path: {file}: x has {n} rows and y {len(y)}; expected one label per example")
    if y.dtype.kind == "f":
        _whole_numbers(y, file, expected)
    negative = np.flatnonzero(y < 0)
    if len(negative):
        r = int(negative[0])
        raise DomainError(f"path: {file}: y[{r}] = {y[r]:g} is negative ({len(negative)} of {len(y)} labels "
                          f"are); {expected}")
    y = y.astype(np.int64)
    _every_class(y, file)
    return y


def _whole_numbers(y: np.ndarray, file: Path, expected: str) -> None:
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        raise DomainError(f"path: {file}: y has {_count(len(bad), 'NaN or inf label')}, the first in row "
                          f"{int(bad[0])}; {expected}")
    bad = np.flatnonzero(y != np.round(y))
    if len(bad):
        r = int(bad[0])
        raise DomainError(f"path: {file}: y[{r}] = {y[r]:g} is not an integer ({len(bad)} of {len(y)} labels "
                          f"are fractional); {expected}")


def _every_class(y: np.ndarray, file: Path) -> None:
    top = int(y.max())
    if top >= MAX_CLASSES:
        raise DomainError(f"path: {file}: y has a label {top}; at most {MAX_CLASSES} classes, labeled "
                          "0..C-1: relabel with y = np.unique(y, return_inverse=True)[1]")
    present = np.unique(y)
    if len(present) < 2:
        raise DomainError(f"path: {file}: y has only class {int(present[0])}; a domain needs at least 2 classes")
    missing = np.setdiff1d(np.arange(top + 1), present)
    if len(missing):
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        shown = ", ".join(map(str, missing[:10].tolist())) + more
        raise DomainError(f"path: {file}: y has no example of class{'es' if len(missing) > 1 else ''} {shown} "
                          f"(labels run 0..{top}); every class 0..C-1 needs examples: relabel to 0..K-1, "
                          "e.g. y = np.unique(y, return_inverse=True)[1]")


# -- torchvision roots ---------------------------------------------------------------------

CIFAR_RECORD = 3073   # one label byte, then 3x32x32 pixel bytes


def read_torchvision(root: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "CIFAR10":
        return _read_cifar10(root)
    from torchvision.datasets.mnist import read_image_file, read_label_file   # raw idx, no pickle
    folder = root / dataset / "raw"
    xs, ys = [], []
    for part in ("train", "t10k"):
        images, labels = folder / f"{part}-images-idx3-ubyte", folder / f"{part}-labels-idx1-ubyte"
        for f, read, into in ((images, read_image_file, xs), (labels, read_label_file, ys)):
            if not f.is_file():
                raise DomainError(f"path: no {f} (torchvision's raw {dataset} files, unpacked)")
            try:
                into.append(read(str(f)).numpy())
            except Exception as e:   # a damaged idx file fails in torch's parser
                raise DomainError(f"path: {f} cannot be read as an idx file ({type(e).__name__}: {e}); "
                                  f"download {dataset} again") from None
    x = np.concatenate(xs)[:, None].astype(np.float32) / 255.0
    return x, check_labels(np.concatenate(ys), len(x), folder)


def _read_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-bin"
    if not folder.is_dir():
        py = root / "cifar-10-batches-py"
        hint = (f"; {py} is the pickled python version, which is never read: download "
                "cifar-10-binary.tar.gz and unpack it there") if py.is_dir() else ""
        raise DomainError(f"path: no {folder}{hint}")
    files = [folder / f"data_batch_{i}.bin" for i in range(1, 6)] + [folder / "test_batch.bin"]
    for f in files:
        if not f.is_file():
            raise DomainError(f"path: no {f}; download cifar-10-binary.tar.gz and unpack it again")
        size = f.stat().st_size
        if size == 0 or size % CIFAR_RECORD:
            raise DomainError(f"path: {f} has {size} bytes, not a multiple of {CIFAR_RECORD} (one CIFAR-10 "
                              "record); download cifar-10-binary.tar.gz and unpack it again")
    raw = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, CIFAR_RECORD) for f in files])
    x = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return x, check_labels(raw[:, 0], len(x), folder)
