"""The Domain interface: a data set with fixed, disjoint splits, and the models that
referee it. Everything downstream (model sizes, starts, clamps, targets, grids) reads
the domain instead of assuming MNIST.

A domain is a subclass of `Domain` that sets its attributes and implements
`load_pool()`: every example it has, as (x, y). The splits are cut from that pool per
class with a fixed seed, checked disjoint by row and by content. Register it (or name it
in a suite by import path, "mylab.data:MyDomain"):

    from optbench.domains import Domain, DOMAINS

    class Blobs(Domain):
        name, num_classes, shape = "blobs", 3, (2,)      # plain 2-d vectors
        def load_pool(self):
            ...
            return x, y

    DOMAINS.register("blobs", Blobs)
"""
from __future__ import annotations

import difflib
import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from optbench.errors import DomainError, first_line

# The split names every shipped recipe and source uses. A domain may cut fewer (a proxy
# trained elsewhere needs no proxy_train), but `test` and `reference` are required:
# starts and baselines come from `test`, every distribution metric compares to `reference`.
SPLITS = ("proxy_train", "judge_train", "generator_train", "test", "reference")
REQUIRED_SPLITS = ("test", "reference")
MAX_CLASSES = 100_000
PACKAGED_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


class Domain:
    name: str = ""
    num_classes: int = 0
    shape: tuple[int, ...] = ()          # (C, H, W) for images, (d,) for plain vectors
    bounds: tuple[float, float] = (0.0, 1.0)   # the box every output is clamped to
    # Per class: an int (examples) or a float (share of that class's examples).
    splits: dict[str, int | float] = {}
    split_seed: int = 0
    # Model roles, by name in the domain's model catalog (its checkpoint manifest).
    default_proxy: str = "proxy_cnn"
    judges: tuple[str, ...] = ("judge_bncnn", "judge_robust", "judge_mlp")
    ensemble: tuple[str, ...] = ("judge_bncnn", "judge_robust")
    feature_spaces: tuple[str, ...] = ("judge_bncnn", "judge_robust", "judge_mlp", "feature_ae")
    # Where its manifest.json and safetensors live; None: the package's checkpoints/<name>.
    checkpoints: str | Path | None = None
    # True for the package's own domains; any other domain's cell ids hold a fingerprint
    # of its data (Domain.fingerprint).
    shipped: bool = False
    # Models declared beside (or instead of) a manifest, name -> entry: {"arch": name or
    # "module:Class", "arch_kwargs": {...}, "file": "x.safetensors"} or {"torchscript":
    # "x.ts"}, with optional "kind" and "sha256" (computed from the file when absent).
    models: dict[str, dict] = {}
    # Normalization the shipped classifiers apply inside (per channel, or one number);
    # None: measured on judge_train.
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None

    # -- what a subclass implements -------------------------------------------------
    # True only for the domain optbench's image recipes were written for (MNIST): it gets
    # them as written; every other domain gets them sized from its shape.
    template_recipes: bool = False

    def load_pool(self) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
        """Every example as (x: (N, *shape) float, y: (N,) int in 0..num_classes-1)."""
        raise NotImplementedError

    # -- derived ------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def feature_net(self) -> str:
        """The primary feature space (unsuffixed metric names)."""
        return self.feature_spaces[0]

    @property
    def checkpoint_dir(self) -> Path:
        """The declared folder; a shipped domain's package folder; else the user cache
        (never the installed package: `optbench train` writes here)."""
        if self.checkpoints:
            return Path(self.checkpoints).expanduser()
        if self.shipped:
            return PACKAGED_CHECKPOINTS / self.name
        from optbench.cache import cache_root
        return cache_root() / "checkpoints" / self.name

    def _where(self) -> str:
        """How errors name the domain."""
        return f"domain {self.name or type(self).__name__!r}"

    def row_name(self, row: int) -> str:
        """How errors name one example of the pool (a file domain names its file)."""
        return f"row {row}"

    def check(self) -> None:
        """Raise DomainError naming the field if the declaration cannot work."""
        where = self._where()
        if not self.name or not isinstance(self.name, str):
            raise DomainError(f"{where}: name: expected a non-empty string")
        if not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= MAX_CLASSES:
            raise DomainError(f"{where}: num_classes: expected an integer >= 2, got {self.num_classes!r}")
        if not self.shape or not all(isinstance(s, int) and s > 0 for s in self.shape) or len(self.shape) not in (1, 3):
            raise DomainError(f"{where}: shape: expected (C, H, W) or (d,) of positive integers, got {self.shape!r}")
        lo, hi = self.bounds
        if not lo < hi:
            raise DomainError(f"{where}: bounds: expected (low, high) with low < high, got {self.bounds!r}")
        self._check_split_names(where)
        missing = [s for s in REQUIRED_SPLITS if s not in self.splits]
        if missing:
            raise DomainError(f"{where}: splits: missing {', '.join(missing)}; required: "
                              f"{', '.join(REQUIRED_SPLITS)}, optional: {', '.join(s for s in SPLITS if s not in REQUIRED_SPLITS)}")
        for s, v in self.splits.items():
            if not (isinstance(v, int) and v > 0) and not (isinstance(v, float) and 0 < v < 1):
                raise DomainError(f"{where}: splits.{s}: expected an integer > 0 (per class) or a share in (0, 1), got {v!r}")
        shares = sum(v for v in self.splits.values() if isinstance(v, float))
        if shares > 1 + 1e-9:
            raise DomainError(f"{where}: splits: the shares add up to {shares:g}, more than 1")
        seed = self.split_seed
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DomainError(f"{where}: split_seed: expected an integer >= 0, got {seed!r}")
        for key in ("judges", "ensemble", "feature_spaces"):   # a cell needs them non-empty (suite.py)
            names = getattr(self, key)
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
                raise DomainError(f"{where}: {key}: expected a list of model names, got {names!r}")
        self._check_normalization(where)

    def _check_normalization(self, where: str) -> None:
        """mean and std: one number, or one per channel of an image domain."""
        channels = self.shape[0] if self.is_image else 1
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else (value,)
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values)
            if not numbers or len(values) not in (1, channels) or (key == "std" and min(values) <= 0):
                need = "one positive number" if key == "std" else "one number"
                raise DomainError(f"{where}: {key}: expected {need} or {channels} (one per channel), got {value!r}")

    def _check_split_names(self, where: str) -> None:
        if not isinstance(self.splits, dict):
            raise DomainError(f"{where}: splits: expected a table split -> per-class count or share, "
                              f"got {type(self.splits).__name__}")
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), SPLITS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DomainError(f"{where}: splits: unknown split {unknown[0]!r}{hint}; allowed: {', '.join(SPLITS)}")

    @functools.cached_property
    def _data(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
        self.check()
        try:
            x, y = self.load_pool()
        except DomainError:
            raise
        except Exception as e:   # a user's loader: name the domain and what it raised
            raise DomainError(f"{self._where()}: load_pool raised {first_line(e)}") from None
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float().contiguous()
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
        where = self._where()
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise DomainError(f"{where}: load_pool returned x of shape {tuple(x.shape)}; expected (N, {', '.join(map(str, self.shape))})")
        if y.shape != (len(x),) or (len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes)):
            raise DomainError(f"{where}: load_pool returned labels outside 0..{self.num_classes - 1} or not one per example")
        self._check_pool(x, y, where)
        idx = split_per_class(y.numpy(), self.splits, self.split_seed, self.num_classes, where)
        check_disjoint(x, idx, where, self.row_name)
        return x, y, idx

    def _check_pool(self, x: torch.Tensor, y: torch.Tensor, where: str) -> None:
        """Every class present and every value finite: a NaN would surface later as a
        wrong bound or a failed eigh in every cell."""
        missing = sorted(set(range(self.num_classes)) - set(torch.unique(y).tolist()))
        if missing:
            raise DomainError(f"{where}: load_pool returned no example of class{'es' if len(missing) > 1 else ''} "
                              f"{', '.join(map(str, missing[:10]))}; labels must cover 0..{self.num_classes - 1}")
        bad = ~torch.isfinite(x)
        if bad.any():
            row = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
            raise DomainError(f"{where}: load_pool returned x with {int(bad.sum())} non-finite values (NaN or inf), "
                              f"the first in {self.row_name(row)}")

    def declared_models(self) -> dict[str, dict]:
        """`models` with each file's sha256 (hashed once per process)."""
        if "_declared" not in self.__dict__:
            from optbench.model_files import CheckpointError, refuse_pickle, sha256_of
            out = {}
            for name, entry in self.models.items():
                _check_model_table(f"{self._where()}: models.{name}", entry)
                key = next((k for k in ("torchscript", "diffusers") if k in entry), "file")
                if key not in entry or (key == "file" and "arch" not in entry):
                    raise DomainError(f"domain {self.name!r}: models.{name}: expected 'arch' and 'file' "
                                      "(a safetensors state dict), 'torchscript', or 'diffusers' (a folder)")
                file = self.checkpoint_dir / Path(entry[key]).expanduser()
                if key == "diffusers":
                    from optbench.model_files import diffusers_sha256
                    if not file.is_dir():
                        raise CheckpointError(f"domain {self.name!r}: models.{name}: no such folder {file}")
                    digest = diffusers_sha256(file)
                else:
                    refuse_pickle(file, f"domain {self.name!r}: models.{name}: ")
                    if not file.is_file():
                        raise CheckpointError(f"domain {self.name!r}: models.{name}: no such file {file}")
                    digest = sha256_of(file)
                out[name] = {"arch_kwargs": {}, **entry, key: str(file), "sha256": entry.get("sha256") or digest}
                if "replicates" in entry:   # more weight files of the same arch: one per seed
                    files = entry["replicates"]
                    if key != "file" or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                        raise DomainError(f"domain {self.name!r}: models.{name}.replicates: expected a list of "
                                          "safetensors files of the model's arch (beside 'arch' and 'file')")
                    reps = []
                    for f in files:
                        rf = self.checkpoint_dir / Path(f).expanduser()
                        refuse_pickle(rf, f"domain {self.name!r}: models.{name}.replicates: ")
                        if not rf.is_file():
                            raise CheckpointError(f"domain {self.name!r}: models.{name}.replicates: no such file {rf}")
                        reps.append({"file": str(rf), "sha256": sha256_of(rf)})
                    out[name]["replicates"] = reps
            self._declared = out
        return self._declared

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices of `split` into the pool."""
        if split in SPLITS and split not in self.splits:
            raise DomainError(f"{self._where()}: split {split!r} is not declared (declared: {', '.join(self.splits)}); "
                              f"add {split} to the domain's splits to use what reads it")
        if split not in self.splits:
            raise DomainError(f"{self._where()}: unknown split {split!r}; allowed: {', '.join(self.splits)}")
        return self._data[2][split].copy()

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, *shape) float32 and y (N,) int64 of one split (a copy)."""
        x, y, _ = self._data
        idx = torch.from_numpy(self.split_indices(split))
        return x[idx].clone(), y[idx].clone()

    def split_sizes(self) -> dict[str, int]:
        return {s: len(i) for s, i in self._data[2].items()}

    def normalization(self) -> tuple[object, object]:
        """(mean, std) the shipped classifiers normalize with: declared, or measured per
        channel on judge_train (one number for one channel or a vector domain)."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        x, _ = self.load_split("judge_train" if "judge_train" in self.splits else "test")
        if self.is_image and self.shape[0] > 1:
            dims = (0, 2, 3)
            return (tuple(round(float(v), 4) for v in x.mean(dims)),
                    tuple(round(max(float(v), 1e-3), 4) for v in x.std(dims)))
        return round(float(x.mean()), 4), round(max(float(x.std()), 1e-3), 4)

    def model_shape_kwargs(self) -> dict:
        """What the shipped architectures need to size themselves for this domain."""
        mean, std = self.normalization()
        return {"in_shape": list(self.shape), "num_classes": self.num_classes,
                "mean": list(mean) if isinstance(mean, tuple) else mean,
                "std": list(std) if isinstance(std, tuple) else std}

    def fingerprint(self) -> str:
        """sha256 of the pool and the split indices: enters the cell ids of domains whose
        data lives outside the package, so changed data is never read as old results."""
        x, y, idx = self._data
        h = hashlib.sha256(x.numpy().tobytes())
        h.update(y.numpy().tobytes())
        for s in sorted(idx):
            h.update(s.encode() + idx[s].tobytes())
        return h.hexdigest()[:16]

    def gold(self):
        """The domain's exact referee (optbench/gold), or None: only a domain whose law is
        known has one."""
        return None

    def __repr__(self) -> str:
        return f"<domain {self.name}: {self.num_classes} classes, shape {self.shape}>"


def count_of(n: int, thing: str) -> str:
    """"1 tensor", "3 tensors": counts in error messages."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


MODEL_KEYS = ("arch", "arch_kwargs", "file", "torchscript", "diffusers", "kind", "sha256", "role", "replicates")
# role = "control": an untrained copy of another model, paired with it in the controls tables.
MODEL_ROLES = ("control",)


def _check_model_table(where: str, entry) -> None:
    """A declared model's table: known fields only (a typo such as `fiel` would be
    ignored), and a kind that a proxy can have."""
    if not isinstance(entry, dict):
        raise DomainError(f"{where}: expected a table of {', '.join(MODEL_KEYS)}, got {entry!r}")
    unknown = [k for k in entry if k not in MODEL_KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], MODEL_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DomainError(f"{where}: unknown field {unknown[0]!r}{hint}; allowed: {', '.join(MODEL_KEYS)}")
    if "role" in entry and entry["role"] not in MODEL_ROLES:
        raise DomainError(f"{where}.role: unknown value {entry['role']!r}; allowed: {', '.join(MODEL_ROLES)} "
                          "(an untrained control of another model)")
    if "kind" in entry:
        from optbench.proxies import PROXY_KINDS
        if entry["kind"] not in PROXY_KINDS:
            raise DomainError(f"{where}.kind: unknown value {entry['kind']!r}; allowed: "
                              f"{', '.join(PROXY_KINDS)} (a registered proxy kind)")


def split_per_class(y: np.ndarray, splits: dict[str, int | float], seed: int, num_classes: int,
                    where: str) -> dict[str, np.ndarray]:
    """Cut each class's rows, in a seeded random order, into the splits in declared order,
    then shuffle each split across classes (so "the first k" is not one class)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {name: [] for name in splits}
    for c in range(num_classes):
        rows = np.flatnonzero(y == c)
        idx = rng.permutation(rows)
        sizes = {s: v if isinstance(v, int) else int(v * len(rows)) for s, v in splits.items()}
        if sum(sizes.values()) > len(rows):
            raise DomainError(f"{where}: splits need {sum(sizes.values())} examples of class {c}, "
                              f"which has {len(rows)}; declare smaller splits")
        if min(sizes.values()) < 1:
            small = min(sizes, key=sizes.get)
            raise DomainError(f"{where}: splits.{small} gets no example of class {c} "
                              f"({len(rows)} examples); declare a larger share")
        start = 0
        for name, k in sizes.items():
            out[name].append(idx[start:start + k])
            start += k
    return {name: rng.permutation(np.concatenate(parts)) for name, parts in out.items()}


def check_disjoint(x: torch.Tensor, idx: dict[str, np.ndarray], where: str,
                   name=lambda row: f"row {row}") -> None:
    """No row, and no identical example, in two splits: a referee's reference set that
    shares an image with the proxy's training data would flatter what it measures.
    `name` says which example a row is (its row, or its file)."""
    owner: dict[int, str] = {}
    for split, rows in idx.items():
        for r in rows.tolist():
            if r in owner:
                raise DomainError(f"{where}: {name(r)} is in splits {owner[r]!r} and {split!r}")
            owner[r] = split
    seen: dict[bytes, tuple[str, int]] = {}
    flat = x.reshape(len(x), -1).numpy()
    for split, rows in idx.items():
        for r in rows.tolist():
            key = hashlib.blake2b(flat[r].tobytes(), digest_size=16).digest()
            other, first = seen.setdefault(key, (split, r))
            if other != split:
                raise DomainError(f"{where}: an example of split {split!r} ({name(r)}) is identical "
                                  f"to one in split {other!r} ({name(first)}); remove duplicates from the data")
