"""Domains from a user's files, declared in a suite file with no Python:

    [domains.cifar5]
    data = "image_folder"          # or "npz", or "torchvision"
    path = "data/cifar5"           # relative to the suite file
    checkpoints = "models/cifar5"  # its manifest.json and safetensors (or [domains.cifar5.models])
    splits = { proxy_train = 0.3, judge_train = 0.3, generator_train = 0.2, test = 0.1, reference = 0.1 }

The formats:
    image_folder  one subfolder per class (sorted names are classes 0..C-1), images any
                  format Pillow reads, all one size; pixels scaled to [0, 1]
    npz           arrays `x` (N, ...) float or uint8 (uint8 scaled to [0, 1]) and `y` (N,)
    torchvision   a data root as torchvision writes it, already on disk: `dataset` =
                  "MNIST" or "FashionMNIST" (raw idx files, train and test pooled) or
                  "CIFAR10" (the binary version, cifar-10-batches-bin; the python
                  version is pickled and never read)

Splits are cut per class from the pooled examples (Domain.load_pool), then checked
disjoint by row and by content (domains/base.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from optbench.domains.base import Domain, DomainError

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
        for key in ("judges", "ensemble", "feature_spaces", "bounds", "mean", "std"):
            if isinstance(fields.get(key), list):
                fields[key] = tuple(fields[key])
        if "bounds" in fields:
            fields["bounds"] = tuple(float(b) for b in fields["bounds"])
        for key, value in fields.items():
            setattr(self, key, value)
        x, y = self._read()
        self._pool = (x, y)
        self.num_classes = int(y.max()) + 1 if "num_classes" not in fields else fields["num_classes"]
        self.shape = tuple(x.shape[1:])
        if "bounds" not in fields:
            self.bounds = (0.0, 1.0) if x.min() >= 0 and x.max() <= 1 else (float(x.min()), float(x.max()))

    def load_pool(self):
        return self._pool

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.path.exists():
            raise DomainError(f"{self.where}.path: no such file or folder {self.path}")
        reader = {"image_folder": read_image_folder, "npz": read_npz, "torchvision": read_torchvision}[self.data]
        try:
            return reader(self.path, *([self.dataset] if self.data == "torchvision" else []))
        except DomainError as e:
            raise DomainError(f"{self.where}: {e}") from None


def read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DomainError(f"path: {root} needs one subfolder per class (at least 2), found {len(classes)}")
    xs, ys, shape = [], [], None
    for c, folder in enumerate(classes):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DomainError(f"path: class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            with Image.open(f) as im:
                a = np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"))
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                raise DomainError(f"path: {f} is {a.shape[1]}x{a.shape[2]}x{a.shape[0]}, the first image "
                                  f"{shape[1]}x{shape[2]}x{shape[0]}; every image must have one size")
            xs.append(a)
            ys.append(c)
    return (np.stack(xs).astype(np.float32) / 255.0), np.asarray(ys, dtype=np.int64)


def read_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(file, allow_pickle=False) as data:   # never unpickle
        missing = [k for k in ("x", "y") if k not in data.files]
        if missing:
            raise DomainError(f"path: {file} has no array {missing[0]!r}; it has {', '.join(data.files)}; "
                              "expected x (N, ...) and y (N,)")
        x, y = data["x"], data["y"]
    if len(x) != len(y):
        raise DomainError(f"path: {file}: x has {len(x)} rows and y {len(y)}; expected one label per example")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x, y.astype(np.int64)


def read_torchvision(root: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "CIFAR10":
        folder = root / "cifar-10-batches-bin"
        if not folder.is_dir():
            py = root / "cifar-10-batches-py"
            hint = (f"; {py} is the pickled python version, which is never read: download "
                    "cifar-10-binary.tar.gz and unpack it there") if py.is_dir() else ""
            raise DomainError(f"path: no {folder}{hint}")
        files = [folder / f"data_batch_{i}.bin" for i in range(1, 6)] + [folder / "test_batch.bin"]
        raw = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, 3073) for f in files])
        return raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, raw[:, 0].astype(np.int64)
    from torchvision.datasets.mnist import read_image_file, read_label_file   # raw idx, no pickle
    folder = root / dataset / "raw"
    xs, ys = [], []
    for part in ("train", "t10k"):
        images, labels = folder / f"{part}-images-idx3-ubyte", folder / f"{part}-labels-idx1-ubyte"
        if not images.exists():
            raise DomainError(f"path: no {images} (torchvision's raw {dataset} files, unpacked)")
        xs.append(read_image_file(str(images)).numpy())
        ys.append(read_label_file(str(labels)).numpy())
    return np.concatenate(xs)[:, None].astype(np.float32) / 255.0, np.concatenate(ys).astype(np.int64)
