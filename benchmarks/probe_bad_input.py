"""A reproducible probe of bad input, as a new user would meet it.

Every case is one command, `optbench ...`, run as a subprocess in a fresh folder of its
own that holds only the files the case wrote (a suite file, data, a plug-in module, model
weights), with OMP_NUM_THREADS=1 and a timeout. Each case declares what a correct outcome
is:

    refused    exit 2, stderr exactly one line `optbench: error: ...` that contains the
               case's substrings (case-insensitive), no traceback, no cell written
    accepted   exit 0, and the case's check of the results passes
    either     refused as above, or accepted as above (e.g. a 16-bit PNG: read at its
               true depth, or refused naming the file and the mode)
    exit1      exit 1 with a <cell-id>.failed.txt (a user's code that raises in a cell)
    exit3/4    exit 3 (cannot write) or 4 (busy folder), one `optbench: error:` line

and the outcome is put in one class:

    clear            refused (or exit 1/3/4) as declared: one clear line
    ok               accepted, and the check found the results right
    unclear          one-line error missing a substring, with the wrong exit code, or
                     more than one stderr line
    traceback        a Python traceback, or killed by a signal
    fails in a cell  exit 1 with a .failed.txt where a refusal was due
    accepted         exit 0 where a refusal was due
    silently wrong   exit 0, but the check found the results wrong
    data lost        a file that existed before the command changed or is gone (or a
                     file that must not appear did)
    hung             still running at the timeout
    wrongly refused  a valid input refused with a clean line

`clear` and `ok` are good; everything else is bad. Nulls use OPTBENCH_NULL_DRAWS=60 and
one cache folder shared by the probe's cases (as the tests do), so each odd sample size
costs seconds; cases that set these variables themselves override them.

    .venv/bin/python benchmarks/probe_bad_input.py                 # every case, 2 at a time
    .venv/bin/python benchmarks/probe_bad_input.py -k png -k lock --jobs 1
    .venv/bin/python benchmarks/probe_bad_input.py --list          # ids and descriptions
    .venv/bin/python benchmarks/probe_bad_input.py --update -k lock # rerun some, merge into probe.json

Writes results/probe/probe.json and results/probe/probe.md; exits 1 if any case is bad.
The `train` case checks that nothing is written into the installed package; if it was,
the probe removes the folder it made there (and reports the case as silently wrong)."""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import copy
import csv
import io
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"
PYTHON = str(VENV / "python") if (VENV / "python").exists() else sys.executable
OPTBENCH = [str(VENV / "optbench")] if (VENV / "optbench").exists() else [PYTHON, "-m", "optbench.cli"]
PACKAGE_CHECKPOINTS = ROOT / "optbench" / "checkpoints"
SCHEMA = 1

RUN = ("run", "suite.toml", "--out", "out")
GOOD = ("clear", "ok")
CLASSES = ("clear", "ok", "unclear", "traceback", "fails in a cell", "accepted", "silently wrong",
           "data lost", "hung", "wrongly refused")
CATEGORIES = ("plug-ins", "user data", "user models", "numeric", "CLI, paths, damaged results", "security")


@dataclass
class Case:
    id: str
    category: str
    description: str
    build: Callable[[Path], Callable[[], None] | None]   # writes the files; may return a cleanup
    argv: tuple[str, ...] = RUN          # after `optbench`, run in the case's folder
    expect: str = "refused"              # refused | accepted | either | exit1 | exit3 | exit4
    needles: tuple[str, ...] = ()        # the error line must contain these (any case; "a|b": either)
    forbid: tuple[str, ...] = ()         # ... and must not contain these
    check: Callable[[Path, "Outcome"], str | None] | None = None   # None: right; else what is wrong
    env: dict = field(default_factory=dict)
    sentinels: tuple[str, ...] = ()      # files whose bytes must not change (relative or absolute)
    absent: tuple[str, ...] = ()         # paths (glob patterns) that must not exist afterwards
    fixture: str | None = None           # a prepared folder copied in first (FIXTURES)
    pre: tuple[tuple[str, ...], ...] = ()   # optbench commands run first (not judged)
    between: Callable[[Path], None] | None = None   # after `pre`, before the command
    timeout: float = 120.0


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    folder: Path
    timed_out: bool = False


# ---------------------------------------------------------------------------------------
# Files: TOML, plug-in modules, data, weights
# ---------------------------------------------------------------------------------------

def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)   # JSON's escapes are TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def dump_suite(s: dict) -> str:
    """A suite dict as a TOML file: top-level fields, [domains.<name>] and their
    [domains.<name>.models.<model>] tables, then [[cell]] tables."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in s.items() if k not in ("domains", "cell")]
    domains = s.get("domains", {})
    if not isinstance(domains, dict):
        lines.append(f"domains = {_toml_value(domains)}")
        domains = {}
    for name, table in domains.items():
        lines += ["", f"[domains.{_toml_key(name)}]"]
        models = table.get("models", {}) if isinstance(table, dict) else {}
        for k, v in table.items():
            if k != "models" or not isinstance(v, dict) or not all(isinstance(m, dict) for m in v.values()):
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        if isinstance(models, dict) and all(isinstance(m, dict) for m in models.values()):
            for m, entry in models.items():
                lines += ["", f"[domains.{_toml_key(name)}.models.{_toml_key(m)}]"]
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
    cells = s.get("cell", [])
    if isinstance(cells, list) and all(isinstance(c, dict) for c in cells):
        for cell in cells:
            lines += ["", "[[cell]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in cell.items()]
    else:
        lines.append(f"cell = {_toml_value(cells)}")
    return "\n".join(lines) + "\n"


def write(folder: Path, rel: str, content: str | bytes) -> Path:
    p = folder / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


# The user's own module for the user-model and numeric cases: classifiers, generators and
# their faulty variants. Every case that declares models writes it as myplug.py.
PLUGIN = '''"""A user's models (written by benchmarks/probe_bad_input.py)."""
import math

import torch
from torch import nn


class CentroidNet(nn.Module):
    """logits = -squared distance of a random projection to the class centroids."""

    def __init__(self, in_dim=16, dim=8, classes=3):
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(in_dim, dim))
        self.centroids = nn.Parameter(torch.zeros(classes, dim))

    def features(self, x):
        return x.flatten(1) @ self.proj

    def forward(self, x):
        return -torch.cdist(self.features(x), self.centroids) ** 2


class StatNet(nn.Module):
    """A classifier of any input shape: (mean, std, min, max) of the pixels against centroids."""

    def __init__(self, classes=3):
        super().__init__()
        self.centroids = nn.Parameter(torch.zeros(classes, 4))

    def features(self, x):
        f = x.flatten(1).float()
        return torch.stack([f.mean(1), f.std(1), f.amin(1), f.amax(1)], 1)

    def forward(self, x):
        return -100 * torch.cdist(self.features(x), self.centroids) ** 2


class NaNProxy(CentroidNet):
    """NaN logits for an input with a pixel at 1 (never in the data; MarkedGen makes some)."""

    def forward(self, x):
        out = super().forward(x)
        bad = x.flatten(1).amax(1) >= 0.999
        return torch.where(bad[:, None], torch.full_like(out, float("nan")), out)


class InfProxy(CentroidNet):
    """+inf logits for an input with a pixel at 1."""

    def forward(self, x):
        out = super().forward(x)
        bad = x.flatten(1).amax(1) >= 0.999
        return torch.where(bad[:, None], torch.full_like(out, float("inf")), out)


class AllNaNNet(CentroidNet):
    def forward(self, x):
        return super().forward(x) * float("nan")


class TupleNet(CentroidNet):
    def forward(self, x):
        out = super().forward(x)
        return out, out


class NoFeatures(nn.Module):
    """A classifier without features(): cannot be a feature space."""

    def __init__(self, in_dim=16, dim=8, classes=3):
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(in_dim, dim))
        self.centroids = nn.Parameter(torch.zeros(classes, dim))

    def forward(self, x):
        return -torch.cdist(x.flatten(1) @ self.proj, self.centroids) ** 2


class ScalarFeatures(CentroidNet):
    """A fine classifier whose features() returns one number for the whole batch."""

    def features(self, x):
        return (x.flatten(1) @ self.proj).sum()

    def forward(self, x):
        return -torch.cdist(x.flatten(1) @ self.proj, self.centroids) ** 2


class RaisingNet(CentroidNet):
    def forward(self, x):
        raise RuntimeError("the user's forward is broken")


class WideInput(CentroidNet):
    """Expects 20 input values; the domain has 16."""

    def __init__(self, in_dim=16, dim=8, classes=3):
        super().__init__(in_dim, dim, classes)
        self.pre = nn.Parameter(torch.zeros(20, in_dim))

    def features(self, x):
        return x.flatten(1) @ self.pre @ self.proj


class InitRaises(CentroidNet):
    def __init__(self, **kwargs):
        raise ValueError("InitRaises cannot be built")


class LinearGen(nn.Module):
    """x = clamp(mean + z @ components, 0, 0.95): a linear Gaussian generator."""
    proxy_kind = None

    def __init__(self, latent_dim=4, shape=(1, 4, 4)):
        super().__init__()
        self.latent_dim, self.shape = latent_dim, tuple(shape)
        d = math.prod(shape)
        self.mean = nn.Parameter(torch.zeros(d))
        self.components = nn.Parameter(torch.zeros(latent_dim, d))

    def forward(self, z):
        return (self.mean + z @ self.components).clamp(0, 0.95).view(-1, *self.shape)


class PlainGen(LinearGen):
    """The same generator without `proxy_kind = None`: nothing marks it as a generator."""
    proxy_kind = "classifier"


class MarkedGen(LinearGen):
    """Sets its first pixel to 1 where z[:, 0] > 0.5 (about 31% of latents)."""

    def forward(self, z):
        x = super().forward(z).clone()
        flat = x.view(len(x), -1)
        flat[:, 0] = torch.where(z[:, 0] > 0.5, torch.ones_like(flat[:, 0]), flat[:, 0])
        return x


class InfGen(LinearGen):
    """+inf pixels where z[:, 0] > 0.5."""

    def forward(self, z):
        x = super().forward(z).clone()
        x[z[:, 0] > 0.5] = float("inf")
        return x


class NaNGen(LinearGen):
    def forward(self, z):
        return super().forward(z) * float("nan")


class WrongShapeGen(LinearGen):
    """Emits 3x4x4 images on a 1x4x4 domain."""

    def forward(self, z):
        return super().forward(z).repeat(1, 3, 1, 1)


class NoLatentGen(nn.Module):
    proxy_kind = None

    def __init__(self, shape=(1, 4, 4)):
        super().__init__()
        self.shape = tuple(shape)
        self.mean = nn.Parameter(torch.zeros(math.prod(shape)))

    def forward(self, z):
        return self.mean.expand(len(z), -1).view(-1, *self.shape)


def helper(x):
    """Not a class."""
    return x
'''

# A plug-in of sources and metrics; only the cases that name it import it.
EXTRA_PLUGIN = '''"""Pressure sources and a metric of a user's (written by benchmarks/probe_bad_input.py)."""
import math

import torch

from optbench.domains import get_domain
from optbench.pressure import SOURCES, Level, Setting, Source, Trajectory
from optbench.metrics import METRICS, Metric


def _start(domain, n):
    x, _ = get_domain(domain).load_split("test")
    return x[torch.arange(n) % len(x)], torch.arange(n) % get_domain(domain).num_classes


def _all_nan(ctx, s):
    start, target = _start(ctx.domain, ctx.n)
    return Trajectory(start, target, (Level(k, torch.full_like(start, float("nan"))) for k in (1, 2, 4)))


def _raises(ctx, s):
    raise RuntimeError("the user's source is broken")


SOURCES.register("all_nan", Source(name="all_nan", knob="tries", pressure="tries", doc="NaN at every level",
                                   settings={"sigma": Setting(float, 0.1, minimum=0.0, doc="unused")},
                                   run=_all_nan))
SOURCES.register("raising", Source(name="raising", knob="tries", pressure="tries", doc="raises",
                                   settings={"sigma": Setting(float, 0.1, minimum=0.0, doc="unused")},
                                   run=_raises))
METRICS.register("nan_metric", Metric("nan_metric", "always NaN", panel="nan (plug-in)",
                                      compute=lambda b: math.nan, domains=("mnist",)))
METRICS.register("raising_metric", Metric("raising_metric", "raises", panel="raises (plug-in)",
                                          compute=lambda b: 1 / 0, domains=("digits8",)))
'''

# A plug-in of domains.
DOMAIN_PLUGIN = '''"""Domains of a user's (written by benchmarks/probe_bad_input.py)."""
import numpy as np

from optbench.domains import Domain


class NotADomain:
    pass


class _Base(Domain):
    num_classes, shape = 3, (1, 4, 4)
    splits = {"test": 8, "reference": 8}

    def load_pool(self):
        g = np.random.default_rng(0)
        return g.random((60, 1, 4, 4)).astype(np.float32), np.repeat(np.arange(3), 20)


class BadInit(_Base):
    name = "bad_init"

    def __init__(self):
        raise OSError("cannot reach the data server")


class OneClass(_Base):
    name, num_classes = "one_class", 1


class FlatShape(_Base):
    name, shape = "flat_shape", (4, 4)


class WrongPoolShape(_Base):
    name = "wrong_pool_shape"

    def load_pool(self):
        x, y = super().load_pool()
        return x[:, :, :3], y


class PoolRaises(_Base):
    name = "pool_raises"

    def load_pool(self):
        raise FileNotFoundError("/data/blobs.h5")


class NoTestSplit(_Base):
    name = "no_test_split"
    splits = {"reference": 8}
'''


def pickle_payload(marker: Path) -> bytes:
    """A pickle that creates `marker` when unpickled (it must never be)."""
    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))
    return pickle.dumps({"proj": Payload()})


def png_bytes(size=(4, 4), color=(200, 10, 10)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def save_image(path: Path, array: np.ndarray) -> None:
    """A file Pillow writes from `array` (its mode inferred: L, RGB, RGBA, LA, I;16, F, 1)."""
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _object_array(*items) -> np.ndarray:
    a = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        a[i] = item
    return a


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# -- the user's data: a 3-class domain of 1x4x4 images, 40 per class, all five splits --

SPLITS = {"proxy_train": 8, "judge_train": 8, "generator_train": 8, "test": 8, "reference": 8}
SHAPE = (1, 4, 4)


def make_data(classes=3, per_class=40, shape=SHAPE, seed=0):
    """Distinct images with pixels in [0.05, 0.9] (a pixel at 1 never occurs)."""
    g = np.random.default_rng(seed)
    centers = g.uniform(0.25, 0.7, (classes, *shape))
    y = np.repeat(np.arange(classes), per_class)
    x = np.clip(centers[y] + 0.08 * g.standard_normal((len(y), *shape)), 0.05, 0.9).astype(np.float32)
    return x, y


def _centroid_weights(x, y, classes, seed, dim=8):
    g = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1).astype(np.float32)
    proj = (g.standard_normal((flat.shape[1], dim)) / math.sqrt(flat.shape[1])).astype(np.float32)
    f = flat @ proj
    cent = np.stack([f[y == c].mean(0) if (y == c).any() else np.zeros(dim) for c in range(classes)])
    return {"proj": proj, "centroids": cent.astype(np.float32)}


def _stat_weights(x, y, classes):
    flat = x.reshape(len(x), -1).astype(np.float64)
    f = np.stack([flat.mean(1), flat.std(1, ddof=1), flat.min(1), flat.max(1)], 1)
    cent = np.stack([f[y == c].mean(0) if (y == c).any() else np.zeros(4) for c in range(classes)])
    return {"centroids": cent.astype(np.float32)}


def _gen_weights(x, latent_dim=4):
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    comps = vt[:latent_dim] * (s[:latent_dim, None] / math.sqrt(len(x) - 1))
    return {"mean": mean.astype(np.float32), "components": (comps * 3).astype(np.float32)}


def save_st(path: Path, tensors: dict) -> None:
    from safetensors.numpy import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


def write_models(folder: Path, x, y, classes=3, stat=False):
    """The user's weights in models/: my_proxy, judge_a, judge_b (CentroidNet, or StatNet
    for any shape), my_gen (LinearGen)."""
    write(folder, "myplug.py", PLUGIN)
    for name, seed in (("my_proxy", 1), ("judge_a", 2), ("judge_b", 3)):
        w = _stat_weights(x, y, classes) if stat else _centroid_weights(x, y, classes, seed)
        save_st(folder / "models" / f"{name}.safetensors", w)
    if not stat:
        save_st(folder / "models" / "my_gen.safetensors", _gen_weights(x))


def ud_domain(classes=3, in_dim=16, shape=SHAPE, stat=False, data="npz", path="data.npz") -> dict:
    """The [domains.ud] table of the user's domain and models."""
    if stat:
        net = {"arch": "myplug:StatNet", "arch_kwargs": {"classes": classes}}
    else:
        net = {"arch": "myplug:CentroidNet", "arch_kwargs": {"in_dim": in_dim, "classes": classes}}
    models = {"my_proxy": {**copy.deepcopy(net), "file": "my_proxy.safetensors", "kind": "classifier"},
              "judge_a": {**copy.deepcopy(net), "file": "judge_a.safetensors"},
              "judge_b": {**copy.deepcopy(net), "file": "judge_b.safetensors"}}
    if not stat:
        models["my_gen"] = {"arch": "myplug:LinearGen", "arch_kwargs": {"latent_dim": 4, "shape": list(shape)},
                            "file": "my_gen.safetensors"}
    return {"data": data, "path": path, "checkpoints": "models", "splits": dict(SPLITS),
            "default_proxy": "my_proxy", "judges": ["judge_a", "judge_b"], "ensemble": ["judge_a", "judge_b"],
            "feature_spaces": ["judge_a", "judge_b"], "models": models}


PIXEL = {"start": "real", "max_steps": 2, "lr": 0.05}


def cell(domain="ud", source="pixel_ascent", settings=None, n=16, label="probe", **extra) -> dict:
    return {"label": label, "domain": domain, "source": source, "n_samples": n,
            "settings": dict(PIXEL) if settings is None and source == "pixel_ascent" else (settings or {}),
            **extra}


def ud_suite(cells=None, **domain_kw) -> dict:
    return {"name": "probe", "seeds": [0], "pythonpath": ["."], "plugins": ["myplug"],
            "domains": {"ud": ud_domain(**domain_kw)}, "cell": cells or [cell()]}


def mnist_suite(settings=None, source="pixel_ascent", n=16, name="tiny", **extra) -> dict:
    return {"name": name, "seeds": [0], "cell": [cell("mnist", source, settings, n, label="tiny", **extra)]}


BEST_OF_N = {"generator": "my_gen", "pool_size": 32}


# ---------------------------------------------------------------------------------------
# Case helpers
# ---------------------------------------------------------------------------------------

def suite_case(id, category, description, suite: dict | str | Callable[[], dict],
               files: Callable[[Path], object] | None = None, **kw) -> Case:
    """A case whose folder holds suite.toml (a dict, raw text, or a function giving a
    dict) and whatever `files` writes."""
    def build(folder: Path):
        s = suite() if callable(suite) else suite
        if s is not None:   # None: `files` writes the suite file itself
            write(folder, "suite.toml", s if isinstance(s, str) else dump_suite(s))
        return files(folder) if files else None
    return Case(id, category, description, build, **kw)


def ud_case(id, category, description, *, data: Callable | None = None, edit: Callable[[dict], None] | None = None,
            after: Callable[[Path], object] | None = None, stat=False, classes=3, cells=None, raw_npz=None,
            **kw) -> Case:
    """A case on the user's .npz domain `ud`: `data(x, y)` returns the arrays to save
    (or a dict of arrays for np.savez), `raw_npz(folder)` writes data.npz itself,
    `edit(suite)` changes the suite dict, `after(folder)` damages files."""
    def build(folder: Path):
        x, y = make_data(classes=classes)
        write_models(folder, x, y, classes=classes, stat=stat)
        if raw_npz:
            raw_npz(folder)
        else:
            arrays = data(x, y) if data else (x, y)
            arrays = arrays if isinstance(arrays, dict) else {"x": arrays[0], "y": arrays[1]}
            np.savez(folder / "data.npz", **arrays)
        s = ud_suite(cells=cells, stat=stat, classes=classes)
        if edit:
            edit(s)
        write(folder, "suite.toml", dump_suite(s))
        return after(folder) if after else None
    return Case(id, category, description, build, **kw)


def dom(s: dict) -> dict:
    return s["domains"]["ud"]


def model(s: dict, name: str) -> dict:
    return s["domains"]["ud"]["models"][name]


def set_in(path: str, value) -> Callable[[dict], None]:
    """edit= for a dotted path into the suite dict: "domains.ud.splits.test"."""
    def edit(s):
        *parents, last = path.split(".")
        d = s
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        d[last] = value
    return edit


# -- checks of accepted results ----------------------------------------------------------

def suite_dirs(folder: Path) -> list[Path]:
    out = folder / "out"
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []


def cell_dirs(folder: Path) -> list[Path]:
    return [c for s in suite_dirs(folder) for c in s.iterdir()
            if c.is_dir() and re.fullmatch(r"[0-9a-f]{16}", c.name) and (c / "DONE").exists()]


def curves(folder: Path) -> list[dict]:
    return [json.loads((c / "curve.json").read_text()) for c in cell_dirs(folder)]


def needs_summary(folder: Path, o: Outcome) -> str | None:
    dirs = suite_dirs(folder)
    if not dirs:
        return "no results folder"
    for d in dirs:
        if not (d / "summary.md").is_file():
            return f"no {d.name}/summary.md"
    return None


def needs_report(folder: Path, o: Outcome) -> str | None:
    problem = needs_summary(folder, o)
    if problem:
        return problem
    d = suite_dirs(folder)[0]
    return None if (d / "report.html").is_file() else f"no {d.name}/report.html"


def needs_cells(folder: Path, o: Outcome) -> str | None:
    return None if cell_dirs(folder) else "exit 0 but no complete cell"


def all_of(*checks) -> Callable[[Path, Outcome], str | None]:
    def check(folder, o):
        for c in checks:
            problem = c(folder, o)
            if problem:
                return problem
        return None
    return check


def _diverged_chance(knob: str, N: int, D: int, level: float) -> float:
    """The chance that a selected sample diverged when diverged members rank lowest: for
    best-of-n, that all n candidates diverged, C(D, n) / C(N, n); for the quantilizer's
    top k = N q members, the diverged share of the top k, max(0, k - (N - D)) / k."""
    if knob == "n":
        n = int(round(level))
        return math.comb(D, n) / math.comb(N, n) if n <= N else 1.0
    k = max(1, math.ceil(N / level - 1e-9))
    return max(0, k - (N - D)) / k


def selection_never_prefers_diverged(folder: Path, o: Outcome) -> str | None:
    """A diverged pool member is selected only when every candidate diverged: at every
    level the share of diverged selections stays within sampling error (3 sigma plus
    one sample) of the chance that all candidates diverged, and the curve records how
    many pool members diverged (`pool_diverged`)."""
    cells_ = cell_dirs(folder)
    if not cells_:
        return "exit 0 but no complete cell"
    for c in cells_:
        curve = json.loads((c / "curve.json").read_text())
        spec = json.loads((c / "spec.json").read_text())
        spec = spec.get("spec", spec)
        N, n_samples, knob = spec["settings"]["pool_size"], spec["n_samples"], curve["knob"]
        for r in curve["rows"]:
            D = r.get("pool_diverged", curve.get("pool_diverged"))
            if not isinstance(D, int):
                return "the curve does not record how many pool members diverged (pool_diverged)"
            frac, p = r.get("diverged_frac"), _diverged_chance(knob, N, D, r[knob])
            bound = p + 3 * math.sqrt(p * (1 - p) / n_samples) + 1 / n_samples
            if frac is None or frac > bound + 1e-9:
                return (f"{knob} = {r[knob]:g}: diverged_frac {frac} where at most {p:.3f} of selections can "
                        f"diverge ({D} of {N} pool members diverged)")
        if not any(r["pool_diverged"] > 0 for r in curve["rows"] if "pool_diverged" in r):
            return "no pool member diverged: the case did not test what it should"
    return None


def pool_probe(folder: Path, domain="ud") -> dict:
    """What optbench read as the domain's pool (through its Python API, in the case's
    folder): shape and values, for checking that pixels were read right."""
    code = ("import json, numpy as np\n"
            "from optbench.suite import load_context\n"
            "load_context('suite.toml')\n"
            "from optbench.domains import get_domain\n"
            f"x, y = get_domain({domain!r}).load_pool()\n"
            "x, y = np.asarray(x, dtype=np.float64), np.asarray(y)\n"
            "print(json.dumps({'shape': list(x.shape), 'x': x.ravel().tolist(), 'y': y.tolist()}))\n")
    p = subprocess.run([PYTHON, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def pool_matches(expected_file="expected.npy") -> Callable[[Path, Outcome], str | None]:
    """The pool read is the expected array (saved by the builder, in file order) up to a
    positive affine scaling: same shape, correlation > 0.999, no clipping."""
    def check(folder, o):
        want = np.load(folder / expected_file)
        got = pool_probe(folder)
        if "error" in got:
            return f"reading the pool back failed: {got['error']}"
        if tuple(got["shape"]) != want.shape:
            return f"read as shape {tuple(got['shape'])}, the files hold {want.shape}"
        x = np.asarray(got["x"])
        w = want.ravel().astype(np.float64)
        if x.std() == 0:
            return "every pixel read as one value"
        r = np.corrcoef(x, w)[0, 1]
        if not r > 0.999:
            at_max = float((x == x.max()).mean())
            return f"pixels read wrong: correlation {r:.3f} with the files' values, {at_max:.0%} at the maximum"
        return None
    return check


def labels_match(expected_file="expected_y.npy") -> Callable[[Path, Outcome], str | None]:
    def check(folder, o):
        want = np.load(folder / expected_file)
        got = pool_probe(folder)
        if "error" in got:
            return f"reading the pool back failed: {got['error']}"
        if got["y"] != want.tolist():
            return f"labels read as {sorted(set(got['y']))[:6]}..., the file holds {sorted(set(want.tolist()))[:6]}"
        return None
    return check


# ---------------------------------------------------------------------------------------
# The cases, by category
# ---------------------------------------------------------------------------------------

def plugin_cases() -> list[Case]:
    cat = "plug-ins"
    cases = []

    def plug(id, desc, body, needles=("suite.toml", "myplug"), **kw):
        s = {**mnist_suite(), "pythonpath": ["."], "plugins": ["myplug"]}
        cases.append(suite_case(id, cat, desc, s, lambda f: write(f, "myplug.py", body), needles=needles, **kw))

    plug("plugin-sys-exit-0", "a plug-in calls sys.exit(0) at import", "import sys\nsys.exit(0)\n",
         needles=("suite.toml", "myplug", "exit"))
    plug("plugin-sys-exit-3", "a plug-in calls sys.exit(3) at import", "import sys\nsys.exit(3)\n",
         needles=("suite.toml", "myplug", "exit"))
    plug("plugin-systemexit-msg", "a plug-in raises SystemExit('bye')", "raise SystemExit('bye')\n",
         needles=("suite.toml", "myplug"))
    plug("plugin-zerodivision", "a plug-in divides by zero at import", "x = 1 / 0\n",
         needles=("suite.toml", "myplug", "ZeroDivisionError"))
    plug("plugin-runtimeerror", "a plug-in raises RuntimeError at import", "raise RuntimeError('boom at import')\n",
         needles=("suite.toml", "myplug", "boom at import"))
    plug("plugin-valueerror", "a plug-in raises ValueError at import", "raise ValueError('bad config')\n",
         needles=("suite.toml", "myplug", "bad config"))
    plug("plugin-keyerror", "a plug-in raises KeyError at import", "{}['HOME_DIR']\n",
         needles=("suite.toml", "myplug", "KeyError"))
    plug("plugin-oserror", "a plug-in opens a missing file at import", "open('/nonexistent/weights.txt')\n",
         needles=("suite.toml", "myplug", "weights.txt"))
    plug("plugin-syntax-error", "a plug-in with a syntax error", "def f(:\n    pass\n",
         needles=("suite.toml", "myplug", "syntax"))
    plug("plugin-imports-missing", "a plug-in imports a module that is not installed",
         "import not_installed_pkg_xyz\n", needles=("suite.toml", "myplug", "not_installed_pkg_xyz"))
    plug("plugin-importerror-msg", "a plug-in raises ImportError('needs CUDA')", "raise ImportError('needs CUDA')\n",
         needles=("suite.toml", "myplug", "needs CUDA"))
    plug("plugin-registers-taken-source", "a plug-in registers a source named pixel_ascent again",
         "from optbench.pressure import SOURCES\nSOURCES.register('pixel_ascent', object())\n",
         needles=("suite.toml", "myplug", "pixel_ascent"))
    plug("plugin-registers-taken-domain", "a plug-in registers a domain named mnist again",
         "from optbench.domains import DOMAINS\nDOMAINS.register('mnist', object())\n",
         needles=("suite.toml", "myplug", "mnist"))
    plug("plugin-recursion", "a plug-in recurses without end at import", "def f():\n    return f()\nf()\n",
         needles=("suite.toml", "myplug", "Recursion"))
    plug("plugin-ok-control", "a plug-in that imports fine (control)", "X = 1\n", expect="accepted",
         check=needs_cells)

    s = mnist_suite()
    cases += [
        suite_case("plugin-missing-module", cat, "plugins names a module that does not exist",
                   {**s, "plugins": ["nope_mod_xyz"]}, needles=("suite.toml", "nope_mod_xyz")),
        suite_case("plugin-not-a-list", cat, "plugins is a string, not a list",
                   {**s, "plugins": "myplug"}, needles=("suite.toml", "plugins")),
        suite_case("plugin-empty-name", cat, "plugins = [\"\"]", {**s, "plugins": [""]}, needles=("suite.toml", "plugins")),
        suite_case("plugin-int-name", cat, "plugins = [123]", {**s, "plugins": [123]}, needles=("suite.toml", "plugins")),
        suite_case("plugin-relative-name", cat, "plugins = [\".myplug\"] (a relative import)",
                   {**s, "pythonpath": ["."], "plugins": [".myplug"]}, lambda f: write(f, "myplug.py", "X = 1\n"),
                   needles=("suite.toml", ".myplug")),
        suite_case("pythonpath-missing-folder", cat, "pythonpath names a folder that does not exist",
                   {**s, "pythonpath": ["no_such_dir"]}, needles=("suite.toml", "pythonpath", "no_such_dir")),
        suite_case("pythonpath-a-file", cat, "pythonpath names a file",
                   {**s, "pythonpath": ["notes.txt"]}, lambda f: write(f, "notes.txt", "x"),
                   needles=("suite.toml", "pythonpath", "notes.txt")),
        suite_case("pythonpath-string", cat, "pythonpath is a string, not a list",
                   {**s, "pythonpath": "."}, needles=("suite.toml", "pythonpath")),
    ]

    def with_module(id, desc, cell_edit, module="myplug", body=PLUGIN, **kw):
        st = mnist_suite()
        st["pythonpath"] = ["."]
        cell_edit(st["cell"][0])
        cases.append(suite_case(id, cat, desc, st, lambda f: write(f, f"{module}.py", body), **kw))

    with_module("source-import-path-missing-attr", "source = \"myplug:NOT_THERE\"",
                lambda c: c.update(source="myplug:NOT_THERE"), needles=("suite.toml", "cell[0].source", "NOT_THERE"))
    with_module("source-import-path-function", "source names a function, not a Source",
                lambda c: c.update(source="myplug:helper"), needles=("suite.toml", "cell[0].source", "helper"))
    with_module("source-import-path-missing-module", "source = \"nomod_xyz:Search\"",
                lambda c: c.update(source="nomod_xyz:Search"), needles=("suite.toml", "cell[0].source", "nomod_xyz"))
    with_module("domain-not-a-domain", "domain names a class that is not a Domain",
                lambda c: c.update(domain="mydoms:NotADomain"), module="mydoms", body=DOMAIN_PLUGIN,
                needles=("suite.toml", "cell[0].domain", "NotADomain"))
    with_module("domain-init-raises", "a Domain whose __init__ raises", lambda c: c.update(domain="mydoms:BadInit"),
                module="mydoms", body=DOMAIN_PLUGIN, needles=("suite.toml", "BadInit", "data server"),
                forbid=("unknown domain",))
    with_module("domain-one-class", "a Domain with num_classes = 1", lambda c: c.update(domain="mydoms:OneClass"),
                module="mydoms", body=DOMAIN_PLUGIN, needles=("suite.toml", "num_classes"))
    with_module("domain-2d-shape", "a Domain with shape (4, 4)", lambda c: c.update(domain="mydoms:FlatShape"),
                module="mydoms", body=DOMAIN_PLUGIN, needles=("suite.toml", "shape"))
    with_module("domain-pool-wrong-shape", "a Domain whose load_pool returns the wrong shape",
                lambda c: c.update(domain="mydoms:WrongPoolShape"), module="mydoms", body=DOMAIN_PLUGIN,
                needles=("suite.toml", "shape"))
    with_module("domain-pool-raises", "a Domain whose load_pool raises", lambda c: c.update(domain="mydoms:PoolRaises"),
                module="mydoms", body=DOMAIN_PLUGIN, needles=("suite.toml", "blobs.h5"))
    with_module("domain-no-test-split", "a Domain without a test split", lambda c: c.update(domain="mydoms:NoTestSplit"),
                module="mydoms", body=DOMAIN_PLUGIN, needles=("suite.toml", "test"))

    # plug-in sources and metrics
    extra = {"name": "tiny", "seeds": [0], "pythonpath": ["."], "plugins": ["myextra"]}
    cases += [
        suite_case("plugin-source-all-nan", cat, "a plug-in source whose every level is NaN: the run and its summary complete",
                   {**extra, "cell": [cell("mnist", "all_nan", {})]}, lambda f: write(f, "myextra.py", EXTRA_PLUGIN),
                   expect="accepted", check=all_of(needs_cells, needs_summary)),
        suite_case("plugin-source-raises", cat, "a plug-in source that raises inside its trajectory: exit 1, a .failed.txt",
                   {**extra, "cell": [cell("mnist", "raising", {})]}, lambda f: write(f, "myextra.py", EXTRA_PLUGIN),
                   expect="exit1"),
        suite_case("plugin-metric-nan", cat, "a plug-in metric that returns NaN: recorded, the run completes",
                   {**extra, "cell": [cell("mnist")]}, lambda f: write(f, "myextra.py", EXTRA_PLUGIN),
                   expect="accepted", check=all_of(needs_cells, needs_summary)),
        suite_case("plugin-metric-raises", cat, "a plug-in metric that raises: exit 1, a .failed.txt",
                   {**extra, "cell": [cell("digits8")]}, lambda f: write(f, "myextra.py", EXTRA_PLUGIN),
                   expect="exit1"),
    ]

    # a typo in a model's import path
    cases += [
        ud_case("arch-typo-proxy", cat, "a typo in the proxy's arch import path",
                edit=lambda s: model(s, "my_proxy").update(arch="myplug:CentroidNett"),
                needles=("suite.toml", "my_proxy", "CentroidNett")),
        ud_case("arch-typo-judge", cat, "a typo in a judge's arch import path",
                edit=lambda s: model(s, "judge_a").update(arch="myplug:CentroidNett"),
                needles=("suite.toml", "judge_a", "CentroidNett")),
        ud_case("arch-missing-module", cat, "a model's arch names a module that does not exist",
                edit=lambda s: model(s, "judge_b").update(arch="nomod_xyz:Net"),
                needles=("suite.toml", "judge_b", "nomod_xyz")),
        ud_case("arch-module-raises", cat, "a model's arch module raises at import",
                edit=lambda s: model(s, "judge_b").update(arch="brokenmod:Net"),
                after=lambda f: write(f, "brokenmod.py", "raise RuntimeError('broken at import')\n"),
                needles=("suite.toml", "judge_b", "brokenmod", "broken at import")),
    ]
    return cases


def data_cases() -> list[Case]:
    cat = "user data"
    cases = [
        ud_case("npz-control", cat, "a valid .npz domain with the user's models (control)", stat=True,
                expect="accepted", check=all_of(needs_cells, needs_summary)),
        ud_case("npz-labels-fractional", cat, "fractional labels (0.9 is not class 0)",
                data=lambda x, y: (x, np.where(np.arange(len(y)) == 5, 0.9, y).astype(np.float64)),
                stat=True, needles=("data.npz", "label", "5")),
        ud_case("npz-labels-negative", cat, "a negative label",
                data=lambda x, y: (x, np.where(np.arange(len(y)) == 7, -1, y)), stat=True, needles=("data.npz", "-1")),
        ud_case("npz-labels-nan", cat, "a NaN label",
                data=lambda x, y: (x, np.where(np.arange(len(y)) == 3, np.nan, y)), stat=True, needles=("data.npz", "nan")),
        ud_case("npz-labels-strings", cat, "labels stored as strings",
                data=lambda x, y: (x, np.array([f"c{v}" for v in y])), stat=True, needles=("data.npz", "y")),
        ud_case("npz-labels-2d", cat, "labels of shape (N, 1)", data=lambda x, y: (x, y[:, None]), stat=True,
                needles=("data.npz", "y")),
        ud_case("npz-labels-integral-floats", cat, "labels stored as floats 0.0, 1.0, 2.0 (integral: fine either way)",
                data=lambda x, y: (x, y.astype(np.float32)), stat=True, expect="either",
                after=lambda f: np.save(f / "expected_y.npy", make_data()[1]),
                check=all_of(needs_cells, labels_match()), needles=("data.npz", "y")),
        ud_case("npz-labels-huge", cat, "one label is 10**9", data=lambda x, y: (x, np.where(np.arange(len(y)) == 0, 10**9, y)),
                stat=True, needles=("data.npz", "1000000000")),
        ud_case("npz-class-gap", cat, "labels 0, 2, 3 (class 1 has no example)",
                data=lambda x, y: (x, np.where(y == 0, 0, y + 1)), stat=True, needles=("data.npz", "class 1")),
        ud_case("npz-one-class", cat, "every label is 0", data=lambda x, y: (x, np.zeros_like(y)), stat=True,
                needles=("data.npz", "class")),
        ud_case("npz-nan-pixels", cat, "NaN pixels in x",
                data=lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 40, np.nan, x).astype(np.float32), y),
                stat=True, needles=("data.npz", "nan", "row")),
        ud_case("npz-inf-pixels", cat, "an infinite pixel in x",
                data=lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 100, np.inf, x).astype(np.float32), y),
                stat=True, needles=("data.npz", "inf", "row")),
        ud_case("npz-all-identical", cat, "every image identical", data=lambda x, y: (np.zeros_like(x) + 0.5, y),
                stat=True, needles=("data.npz", "identical")),
        ud_case("npz-empty-arrays", cat, "x and y with no rows",
                data=lambda x, y: (x[:0], y[:0]), stat=True, needles=("data.npz", "empty"),
                forbid=("zero-size array",)),
        ud_case("npz-zero-bytes", cat, "data.npz is a 0-byte file", raw_npz=lambda f: write(f, "data.npz", b""),
                stat=True, needles=("data.npz",)),
        ud_case("npz-is-npy", cat, "a .npy file named data.npz",
                raw_npz=lambda f: write(f, "data.npz", _npy_bytes(make_data()[0])), stat=True, needles=("data.npz",)),
        ud_case("npz-is-text", cat, "data.npz holds CSV text", raw_npz=lambda f: write(f, "data.npz", "x,y\n1,2\n"),
                stat=True, needles=("data.npz",)),
        ud_case("npz-object-array", cat, "x is an object array (needs pickle)",
                data=lambda x, y: {"x": _object_array(x[0], "a"), "y": y[:2]}, stat=True,
                needles=("data.npz", "object"), forbid=("allow_pickle",)),
        ud_case("npz-string-pixels", cat, "x stored as strings",
                data=lambda x, y: (x.astype(str), y), stat=True, needles=("data.npz", "x")),
        ud_case("npz-channels-last", cat, "a channels-last .npz (N, 4, 4, 3)",
                data=lambda x, y: (np.ascontiguousarray(np.repeat(x, 3, 1).transpose(0, 2, 3, 1)), y), stat=True,
                expect="either", needles=("data.npz", "channel"),
                after=lambda f: np.save(f / "expected.npy", np.repeat(make_data()[0], 3, 1)),
                check=pool_matches()),
        ud_case("npz-5d", cat, "x of 5 dimensions", data=lambda x, y: (x[:, None], y), stat=True,
                needles=("data.npz", "shape")),
        ud_case("npz-1d", cat, "x of 1 dimension (one number per example)", data=lambda x, y: (x[:, 0, 0, 0], y),
                stat=True, needles=("data.npz", "shape")),
        ud_case("npz-length-mismatch", cat, "x has one row more than y",
                data=lambda x, y: (np.concatenate([x, x[:1]]), y), stat=True, needles=("data.npz", "rows")),
        ud_case("npz-missing-y", cat, "no array y", data=lambda x, y: {"x": x, "labels": y}, stat=True,
                needles=("data.npz", "'y'")),
        ud_case("npz-complex", cat, "x of complex numbers", data=lambda x, y: (x.astype(np.complex64), y), stat=True,
                needles=("data.npz", "complex")),
        ud_case("npz-vectors-control", cat, "plain vectors (N, 5): a vector domain (control)",
                data=lambda x, y: (x.reshape(len(x), -1)[:, :5].copy(), y), stat=True,
                expect="accepted", check=needs_cells),
    ]

    def split_case(id, desc, splits, needles, **kw):
        cases.append(ud_case(id, cat, desc, stat=True, edit=set_in("domains.ud.splits", splits), needles=needles, **kw))

    split_case("split-unknown-name", "an unknown split name 'validation'", {**SPLITS, "validation": 4},
               ("suite.toml", "validation"))
    split_case("split-typo", "a split named 'refrence'", {**{k: v for k, v in SPLITS.items() if k != "reference"},
                                                          "refrence": 8}, ("suite.toml", "refrence", "reference"))
    split_case("split-no-test", "no test split", {k: v for k, v in SPLITS.items() if k != "test"}, ("suite.toml", "test"))
    split_case("split-shares-over-1", "split shares adding up to 1.5",
               {"proxy_train": 0.5, "judge_train": 0.5, "test": 0.25, "reference": 0.25}, ("suite.toml", "shares"))
    split_case("split-zero", "a split of 0", {**SPLITS, "judge_train": 0}, ("suite.toml", "judge_train"))
    split_case("split-negative", "a split of -3", {**SPLITS, "judge_train": -3}, ("suite.toml", "judge_train"))
    split_case("split-share-1.5", "a split share of 1.5", {**SPLITS, "test": 1.5}, ("suite.toml", "test"))
    split_case("split-string", "a split given as \"ten\"", {**SPLITS, "test": "ten"}, ("suite.toml", "test"))
    split_case("split-too-large", "splits larger than a class", {**SPLITS, "test": 100}, ("suite.toml", "class"))
    split_case("split-bool", "a split given as true", {**SPLITS, "test": True}, ("suite.toml", "test"))
    cases.append(ud_case("split-only-test-reference", cat,
                         "only the test and reference splits: the null and baseline still hold, or a refusal",
                         stat=True, edit=set_in("domains.ud.splits", {"test": 16, "reference": 16}),
                         expect="either", needles=("suite.toml", "split"),
                         check=lambda f, o: needs_cells(f, o) or next(
                             (f"cell {c['cell_id']}: empty null or baseline" for c in curves(f)
                              if not c.get("null") or not c.get("baseline")), None)))
    cases.append(ud_case("splits-a-list", cat, "splits given as a list", stat=True,
                         edit=set_in("domains.ud.splits", ["test", "reference"]), needles=("suite.toml", "splits")))

    def field_case(id, desc, key, value, needles, **kw):
        cases.append(ud_case(id, cat, desc, stat=True, edit=set_in(f"domains.ud.{key}", value), needles=needles, **kw))

    field_case("domain-data-unknown", "data = \"jpeg_folder\"", "data", "jpeg_folder", ("suite.toml", "data", "jpeg_folder"))
    field_case("domain-path-missing", "path names a file that does not exist", "path", "nope.npz",
               ("suite.toml", "nope.npz"))
    field_case("domain-path-folder-for-npz", "path of an npz domain is a folder", "path", "models",
               ("suite.toml", "models"))
    field_case("domain-unknown-field", "an unknown field 'pathh'", "pathh", "data.npz", ("suite.toml", "pathh"))
    field_case("domain-bounds-reversed", "bounds = [1, 0]", "bounds", [1, 0], ("suite.toml", "bounds"))
    field_case("domain-bounds-strings", "bounds = [\"a\", \"b\"]", "bounds", ["a", "b"], ("suite.toml", "bounds"))
    field_case("domain-bounds-nan", "bounds = [nan, 1]", "bounds", [math.nan, 1.0], ("suite.toml", "bounds"))
    field_case("domain-bounds-one", "bounds = [0]", "bounds", [0], ("suite.toml", "bounds"))
    field_case("domain-split-seed-string", "split_seed = \"x\"", "split_seed", "x", ("suite.toml", "split_seed"))
    field_case("domain-split-seed-negative", "split_seed = -1", "split_seed", -1, ("suite.toml", "split_seed"))
    field_case("domain-judges-string", "judges = \"judge_a\" (a string, not a list)", "judges", "judge_a",
               ("suite.toml", "judges"))
    field_case("domain-feature-spaces-empty", "feature_spaces = []", "feature_spaces", [], ("suite.toml", "feature_spaces"))
    field_case("domain-judge-unknown", "judges names a model that does not exist", "judges", ["judge_zz"],
               ("suite.toml", "judge_zz"))
    field_case("domain-default-proxy-unknown", "default_proxy names a model that does not exist", "default_proxy",
               "proxy_zz", ("suite.toml", "proxy_zz"))
    field_case("domain-checkpoints-missing", "checkpoints names a folder that does not exist", "checkpoints", "nowhere",
               ("suite.toml", "nowhere"))
    field_case("domain-mean-wrong-length", "mean with 3 values on a 1-channel domain", "mean", [0.5, 0.5, 0.5],
               ("suite.toml", "mean"))
    cases.append(ud_case("domain-name-taken", cat, "[domains.mnist] (the name of a shipped domain)", stat=True,
                         edit=lambda s: (s["domains"].update(mnist=s["domains"].pop("ud")),
                                         s["cell"][0].update(domain="mnist")),
                         needles=("suite.toml", "mnist")))
    cases.append(ud_case("domain-no-models-no-manifest", cat, "no models declared and no manifest: train first",
                         stat=True, edit=lambda s: dom(s).pop("models"), needles=("suite.toml", "optbench train")))

    # torchvision roots
    def idx(path: Path, array, magic):
        import struct
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
            f.write(array.astype(np.uint8).tobytes())

    def mnist_raw(folder, truncate=False):
        raw = folder / "tv" / "MNIST" / "raw"
        g = np.random.default_rng(0)
        for part, n in (("train", 60), ("t10k", 30)):
            idx(raw / f"{part}-images-idx3-ubyte", g.integers(0, 256, (n, 28, 28)), 2051)
            idx(raw / f"{part}-labels-idx1-ubyte", np.arange(n) % 3, 2049)
        if truncate:
            p = raw / "train-images-idx3-ubyte"
            p.write_bytes(p.read_bytes()[:1000])

    cases += [
        ud_case("tv-unknown-dataset", cat, "torchvision dataset = \"CIFAR100\"", stat=True,
                edit=lambda s: dom(s).update(data="torchvision", path=".", dataset="CIFAR100"),
                needles=("suite.toml", "dataset", "CIFAR100")),
        ud_case("tv-mnist-missing-raw", cat, "a torchvision MNIST root without its raw files", stat=True,
                edit=lambda s: dom(s).update(data="torchvision", path=".", dataset="MNIST"),
                needles=("suite.toml", "raw")),
        ud_case("tv-mnist-truncated", cat, "a torchvision MNIST root with a truncated images file", stat=True,
                edit=lambda s: dom(s).update(data="torchvision", path="tv", dataset="MNIST"),
                after=lambda f: mnist_raw(f, truncate=True), needles=("suite.toml", "train-images-idx3-ubyte")),
        ud_case("tv-cifar-bad-size", cat, "a CIFAR-10 binary batch whose size is not a multiple of 3073", stat=True,
                edit=lambda s: dom(s).update(data="torchvision", path="tv", dataset="CIFAR10"),
                after=lambda f: [write(f, f"tv/cifar-10-batches-bin/{n}", b"\0" * 5000)
                                 for n in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]],
                needles=("suite.toml", "data_batch_1.bin")),
    ]

    # image folders
    cases += image_folder_cases(cat)
    return cases


def image_folder_cases(cat: str) -> list[Case]:
    """Image-folder domains of 4x4 PNGs (and a TIFF), 3 classes of 40; models of any shape."""
    from PIL import Image   # noqa: F401 (fail early if Pillow is missing)

    def pngs(folder: Path, arrays: np.ndarray, y: np.ndarray, fmt="png", each=save_image):
        """arrays (N, H, W[, C]) in file order, class folders c0, c1, c2."""
        for i, (a, c) in enumerate(zip(arrays, y)):
            each(folder / "data" / f"c{c}" / f"{i:03d}.{fmt}", a)

    def unique_uint8(shape, n=120, seed=0, high=256):
        g = np.random.default_rng(seed)
        out, seen = [], set()
        while len(out) < n:
            a = g.integers(0, high, shape, dtype=np.int64)
            if a.tobytes() not in seen:
                seen.add(a.tobytes())
                out.append(a)
        return np.stack(out)

    y = np.repeat(np.arange(3), 40)

    def img_case(id, desc, writer, expected=None, expect="refused", needles=(), edit=None, **kw):
        """writer(folder) writes data/; expected(folder) -> the true pool (N, C, H, W)."""
        def after(folder):
            writer(folder)
            if expected is not None:
                np.save(folder / "expected.npy", expected)

        def edit_all(s):
            dom(s).update(data="image_folder", path="data")
            if edit:
                edit(s)
        return ud_case(id, cat, desc, stat=True, raw_npz=lambda f: None, edit=edit_all, after=after,
                       expect=expect, needles=needles,
                       check=kw.pop("check", pool_matches() if expected is not None else None), **kw)

    rgb = unique_uint8((4, 4, 3)).astype(np.uint8)
    gray = unique_uint8((4, 4)).astype(np.uint8)
    low16 = unique_uint8((4, 4), high=4000).astype(np.uint16)
    high16 = (60000 + unique_uint8((4, 4), high=5000)).astype(np.uint16)
    rgba = np.concatenate([rgb, unique_uint8((4, 4, 1), seed=1).astype(np.uint8)], 3)
    la = np.stack([gray, unique_uint8((4, 4), seed=2).astype(np.uint8)], 3)
    bits = unique_uint8((4, 4), high=2).astype(bool)
    floats = np.random.default_rng(3).random((120, 4, 4)).astype(np.float32)

    def palette(p, a):
        """Mode P: the pixel values index a palette of colours (index g -> (g, 255 - g, 3g))."""
        from PIL import Image
        p.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(a)
        im.putpalette([v for g in range(256) for v in (g, 255 - g, (3 * g) % 256)])
        im.save(p)

    def truncate(p: Path, keep=30):
        p.write_bytes(p.read_bytes()[:keep])

    def palette_rgb(a):
        return np.stack([a, 255 - a.astype(np.int64), (3 * a.astype(np.int64)) % 256], 0).astype(np.float32) / 255

    cases = [
        img_case("png-rgb-control", "an image folder of RGB PNGs (control)", lambda f: pngs(f, rgb, y),
                 expected=rgb.transpose(0, 3, 1, 2) / 255.0, expect="accepted",
                 check=all_of(needs_cells, pool_matches())),
        img_case("png-16bit-low", "16-bit grayscale PNGs with values below 4000",
                 lambda f: pngs(f, low16, y), expected=low16[:, None] / 65535.0,
                 expect="either", needles=("png", "16")),
        img_case("png-16bit-high", "16-bit grayscale PNGs with values above 60000",
                 lambda f: pngs(f, high16, y), expected=high16[:, None] / 65535.0,
                 expect="either", needles=("png", "16")),
        img_case("png-palette", "palette (mode P) PNGs with a colour palette",
                 lambda f: pngs(f, gray, y, each=palette), expected=np.stack([palette_rgb(a) for a in gray]),
                 expect="either", needles=("png", "P")),
        img_case("png-rgba", "RGBA PNGs whose alpha varies", lambda f: pngs(f, rgba, y),
                 expected=rgba.transpose(0, 3, 1, 2) / 255.0, expect="either", needles=("png", "RGBA")),
        img_case("png-la", "grey + alpha (LA) PNGs whose alpha varies", lambda f: pngs(f, la, y),
                 expected=la.transpose(0, 3, 1, 2) / 255.0, expect="either", needles=("png", "LA")),
        img_case("png-1bit", "1-bit PNGs", lambda f: pngs(f, bits, y),
                 expected=bits[:, None].astype(np.float32), expect="either", needles=("png", "1")),
        img_case("tiff-float", "32-bit float TIFFs (mode F) with values in [0, 1]",
                 lambda f: pngs(f, floats, y, fmt="tif"), expected=floats[:, None],
                 expect="either", needles=("tif", "F")),
        img_case("png-truncated", "a truncated PNG among good ones",
                 lambda f: (pngs(f, rgb, y), truncate(f / "data/c1/050.png")),
                 needles=("050.png",)),
        img_case("png-not-an-image", "a text file named .png", lambda f: (pngs(f, rgb, y), write(f, "data/c2/999.png", "hello")),
                 needles=("999.png",)),
        img_case("png-mixed-sizes", "one 6x6 image among 4x4 ones",
                 lambda f: (pngs(f, rgb, y), save_image(f / "data/c0/odd.png", np.zeros((6, 6, 3), np.uint8))),
                 needles=("odd.png", "6x6")),
        img_case("png-mixed-modes", "one greyscale image among RGB ones: read as RGB (its channel repeated), "
                 "or refused naming it",
                 lambda f: (pngs(f, rgb, y), save_image(f / "data/c0/grey.png", gray[0])),
                 needles=("grey.png",), expect="either", check=needs_cells),
        img_case("png-duplicates", "two identical PNGs (in different splits)",
                 lambda f: (pngs(f, rgb, y), shutil.copy(f / "data/c0/000.png", f / "data/c0/dup.png")),
                 needles=(".png", "identical")),
        img_case("imgdir-one-class", "an image folder with one class folder",
                 lambda f: pngs(f, rgb[:40], y[:40]), needles=("data", "class")),
        img_case("imgdir-empty-class", "a class folder with no images",
                 lambda f: (pngs(f, rgb, y), (f / "data" / "c3").mkdir()), needles=("c3",)),
        img_case("imgdir-dir-named-png", "a folder named x.png inside a class folder: skipped, or a refusal",
                 lambda f: (pngs(f, rgb, y), (f / "data/c0/x.png").mkdir()), needles=("x.png",), expect="either",
                 check=needs_cells),
        img_case("imgdir-path-is-file", "an image_folder path that is a file", lambda f: write(f, "data", "x"),
                 needles=("data",)),
        img_case("imgdir-split-too-large", "splits need more images than a class has",
                 lambda f: pngs(f, rgb[::2], y[::2]), needles=("class",)),
    ]
    return cases


def write_unet(folder: Path, classes_plus=1, damage=None) -> None:
    """A diffusers UNet2DModel folder (models/unet, with its scheduler) for the 3-class
    1x4x4 domain: classes + `classes_plus` class embeddings (the last one the null label);
    `damage(unet_folder)` then breaks it."""
    code = ("import torch\nfrom diffusers import DDPMScheduler, UNet2DModel\ntorch.manual_seed(0)\n"
            "u = UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(8, 16), "
            "layers_per_block=1, norm_num_groups=4, down_block_types=('DownBlock2D', 'DownBlock2D'), "
            f"up_block_types=('UpBlock2D', 'UpBlock2D'), num_class_embeds={3 + classes_plus})\n"
            "u.save_pretrained('models/unet', safe_serialization=True)\n"
            "DDPMScheduler(num_train_timesteps=100).save_pretrained('models/unet/scheduler')\n")
    subprocess.run([PYTHON, "-c", code], cwd=folder, check=True, capture_output=True, timeout=120,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    if damage:
        damage(folder / "models" / "unet")


def guidance_suite(s: dict) -> None:
    """edit=: declare the UNet as my_unet and make the one cell a short guidance run."""
    s["domains"]["ud"]["models"]["my_unet"] = {"diffusers": "unet"}
    s["cell"] = [cell(source="guidance", settings={"generator": "my_unet", "scales": [0.0, 1.0], "ddim_steps": 2})]


def edit_config(fn):
    def damage(unet: Path):
        c = json.loads((unet / "config.json").read_text())
        fn(c)
        (unet / "config.json").write_text(json.dumps(c))
    return damage


def pickle_only(unet: Path) -> None:
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    (unet / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": [0.0]}))


def model_cases() -> list[Case]:
    cat = "user models"
    M = "models/my_proxy.safetensors"

    def damage(rel, fn):
        def after(folder):
            p = folder / rel
            p.write_bytes(fn(p.read_bytes()))
        return after

    def swap_weights(name, tensors_fn):
        def after(folder):
            x, y = make_data()
            save_st(folder / "models" / f"{name}.safetensors", tensors_fn(_centroid_weights(x, y, 3, 1)))
        return after

    def case(id, desc, needles=("suite.toml", "my_proxy"), **kw):
        return ud_case(id, cat, desc, needles=needles, **kw)

    cases = [
        case("models-control", "the user's classifier, judges and generator: pixel ascent and best-of-n (control)",
             cells=[cell(), cell(source="best_of_n", settings=dict(BEST_OF_N), label="bon")],
             expect="accepted", check=all_of(needs_cells, needs_summary)),
        case("st-wrong-shape", "a tensor of the wrong shape in the proxy's safetensors",
             after=swap_weights("my_proxy", lambda w: {**w, "proj": np.zeros((16, 5), np.float32)}),
             needles=("suite.toml", "my_proxy", "proj")),
        case("st-missing-key", "a key missing from the proxy's safetensors",
             after=swap_weights("my_proxy", lambda w: {"proj": w["proj"]}), needles=("suite.toml", "my_proxy", "centroids")),
        case("st-unexpected-key", "an extra key in the proxy's safetensors",
             after=swap_weights("my_proxy", lambda w: {**w, "bias": np.zeros(3, np.float32)}),
             needles=("suite.toml", "my_proxy", "bias")),
        case("st-judge-wrong-shape", "a judge's safetensors of another model",
             after=swap_weights("judge_a", lambda w: {**w, "centroids": np.zeros((3, 5), np.float32)}),
             needles=("suite.toml", "judge_a")),
        case("st-truncated", "the proxy's safetensors cut in half", after=damage(M, lambda b: b[:len(b) // 2]),
             needles=("suite.toml", "my_proxy.safetensors")),
        case("st-empty", "the proxy's safetensors is 0 bytes", after=damage(M, lambda b: b""),
             needles=("suite.toml", "my_proxy.safetensors")),
        case("st-huge-header", "a safetensors whose header claims 2**40 bytes",
             after=damage(M, lambda b: (2**40).to_bytes(8, "little") + b[8:]), needles=("suite.toml", "my_proxy.safetensors")),
        case("st-is-pickle", "a torch pickle renamed .safetensors",
             after=damage(M, lambda b: pickle.dumps({"proj": [0.0] * 4})), needles=("suite.toml", "my_proxy.safetensors")),
        case("st-bad-sha256", "a declared sha256 that does not match the file",
             edit=lambda s: model(s, "my_proxy").update(sha256="0" * 64), needles=("suite.toml", "my_proxy", "sha256")),
        case("st-malformed-sha256", "sha256 = \"xyz\"", edit=lambda s: model(s, "my_proxy").update(sha256="xyz"),
             needles=("suite.toml", "my_proxy", "sha256")),
        case("st-file-is-folder", "the proxy's file is a folder",
             edit=lambda s: model(s, "my_proxy").update(file="adir.safetensors"),
             after=lambda f: (f / "models/adir.safetensors").mkdir(), needles=("suite.toml", "adir.safetensors")),
        case("st-file-missing", "the proxy's file does not exist",
             edit=lambda s: model(s, "my_proxy").update(file="gone.safetensors"), needles=("suite.toml", "gone.safetensors")),
        case("st-pickle-suffix", "the proxy's file is a .pt", edit=lambda s: model(s, "my_proxy").update(file="my_proxy.pt"),
             after=lambda f: write(f, "models/my_proxy.pt", b"x"), needles=("suite.toml", "my_proxy.pt", "safetensors")),
        case("st-other-suffix", "the proxy's file is a .npz", edit=lambda s: model(s, "my_proxy").update(file="w.npz"),
             after=lambda f: np.savez(f / "models/w.npz", a=np.zeros(2)), needles=("suite.toml", "w.npz")),
        case("arch-kwargs-unknown", "an unknown arch_kwargs key",
             edit=lambda s: model(s, "my_proxy")["arch_kwargs"].update(bogus=1), needles=("suite.toml", "my_proxy", "bogus")),
        case("arch-kwargs-wrong-type", "arch_kwargs in_dim = \"16\"",
             edit=lambda s: model(s, "my_proxy")["arch_kwargs"].update(in_dim="16"), needles=("suite.toml", "my_proxy", "in_dim")),
        case("arch-kwargs-not-table", "arch_kwargs = \"x\"", edit=lambda s: model(s, "my_proxy").update(arch_kwargs="x"),
             needles=("suite.toml", "my_proxy", "arch_kwargs")),
        case("arch-missing", "a model table without arch", edit=lambda s: model(s, "my_proxy").pop("arch"),
             needles=("suite.toml", "my_proxy", "arch")),
        case("arch-not-import-path", "arch = \"nn.Linear\"", edit=lambda s: model(s, "my_proxy").update(arch="nn.Linear"),
             needles=("suite.toml", "my_proxy", "nn.Linear")),
        case("arch-a-function", "arch names a function", edit=lambda s: model(s, "my_proxy").update(arch="myplug:helper"),
             needles=("suite.toml", "my_proxy", "helper")),
        case("arch-init-raises", "arch's __init__ raises", edit=lambda s: model(s, "my_proxy").update(arch="myplug:InitRaises"),
             needles=("suite.toml", "my_proxy", "InitRaises")),
        case("model-unknown-key", "an unknown key 'fiel' in a model table",
             edit=lambda s: model(s, "my_proxy").update(fiel="x"), needles=("suite.toml", "my_proxy", "fiel")),
        case("model-kind-unknown", "kind = \"regressor\"", edit=lambda s: model(s, "my_proxy").update(kind="regressor"),
             needles=("suite.toml", "my_proxy", "kind", "regressor")),
        case("model-kind-realness", "a 3-class classifier declared kind = \"realness\" (a discriminator's kind)",
             edit=lambda s: model(s, "my_proxy").update(kind="realness"),
             cells=[cell(source="best_of_n", settings=dict(BEST_OF_N))],
             needles=("suite.toml", "my_proxy", "realness")),
        case("proxy-10-classes", "a 10-class proxy on a 3-class domain",
             edit=lambda s: model(s, "my_proxy")["arch_kwargs"].update(classes=10),
             after=swap_weights("my_proxy", lambda w: {**w, "centroids": np.zeros((10, 8), np.float32)}),
             needles=("suite.toml", "my_proxy", "10", "3")),
        case("proxy-2-classes", "a 2-class proxy on a 3-class domain",
             edit=lambda s: model(s, "my_proxy")["arch_kwargs"].update(classes=2),
             after=swap_weights("my_proxy", lambda w: {**w, "centroids": w["centroids"][:2].copy()}),
             needles=("suite.toml", "my_proxy", "2", "3")),
        case("judge-10-classes", "a 10-class judge on a 3-class domain",
             edit=lambda s: model(s, "judge_a")["arch_kwargs"].update(classes=10),
             after=swap_weights("judge_a", lambda w: {**w, "centroids": np.zeros((10, 8), np.float32)}),
             needles=("suite.toml", "judge_a", "10", "3")),
        case("proxy-forward-raises", "a proxy whose forward raises",
             edit=lambda s: model(s, "my_proxy").update(arch="myplug:RaisingNet"), needles=("suite.toml", "my_proxy", "broken")),
        case("proxy-wrong-input", "a proxy that expects 20 inputs on a 16-pixel domain",
             edit=lambda s: model(s, "my_proxy").update(arch="myplug:WideInput"),
             after=swap_weights("my_proxy", lambda w: {**w, "pre": np.zeros((20, 16), np.float32)}),
             needles=("suite.toml", "my_proxy")),
        case("proxy-returns-tuple", "a proxy whose forward returns a tuple",
             edit=lambda s: model(s, "my_proxy").update(arch="myplug:TupleNet"), needles=("suite.toml", "my_proxy", "tuple")),
        case("feature-no-features", "a feature space without features()",
             edit=lambda s: model(s, "judge_a").update(arch="myplug:NoFeatures"), needles=("suite.toml", "judge_a", "features")),
        case("feature-scalar-features", "a feature space whose features() returns a scalar",
             edit=lambda s: model(s, "judge_b").update(arch="myplug:ScalarFeatures"), needles=("suite.toml", "judge_b", "features")),
        case("generator-as-proxy", "a generator without proxy_kind = None named as the proxy",
             edit=lambda s: (model(s, "my_gen").update(arch="myplug:PlainGen"), s["cell"][0].update(proxy="my_gen")),
             needles=("suite.toml", "my_gen")),
        case("classifier-as-latent-generator", "a classifier named as latent_ascent's generator",
             cells=[cell(source="latent_ascent", settings={"generator": "my_proxy", "max_steps": 2})],
             needles=("suite.toml", "generator", "my_proxy")),
        case("classifier-as-bon-generator", "a classifier named as best_of_n's generator",
             cells=[cell(source="best_of_n", settings={"generator": "judge_b", "pool_size": 32})],
             needles=("suite.toml", "generator", "judge_b")),
        case("generator-no-latent-dim", "a generator without latent_dim",
             edit=lambda s: model(s, "my_gen").update(arch="myplug:NoLatentGen", arch_kwargs={"shape": [1, 4, 4]}),
             after=lambda f: save_st(f / "models/my_gen.safetensors", {"mean": np.zeros(16, np.float32)}),
             cells=[cell(source="best_of_n", settings=dict(BEST_OF_N))], needles=("suite.toml", "my_gen", "latent_dim")),
        case("generator-wrong-shape", "a generator of 3x4x4 images on a 1x4x4 domain",
             edit=lambda s: model(s, "my_gen").update(arch="myplug:WrongShapeGen"),
             cells=[cell(source="best_of_n", settings=dict(BEST_OF_N))], needles=("suite.toml", "my_gen", "shape")),
        case("generator-unknown", "best_of_n's generator names no model",
             cells=[cell(source="best_of_n", settings={"generator": "gen_zz", "pool_size": 32})],
             needles=("suite.toml", "gen_zz")),
        case("proxy-per-seed", "proxy_training = \"per_seed\" for a user's proxy",
             cells=[cell(proxy_training="per_seed")], needles=("suite.toml", "per_seed")),
        case("features-not-a-space", "features = [\"judge_zz\"]", cells=[cell(features=["judge_zz"])],
             needles=("suite.toml", "features", "judge_zz")),
        case("manifest-garbage", "a garbage manifest.json beside the declared models",
             after=lambda f: write(f, "models/manifest.json", "{not json"), needles=("suite.toml", "manifest.json")),
        case("proxy-all-nan", "a proxy that returns NaN for every input", expect="either",
             edit=lambda s: model(s, "my_proxy").update(arch="myplug:AllNaNNet"), needles=("suite.toml", "my_proxy", "nan"),
             check=all_of(needs_cells, needs_summary)),
    ]

    # TorchScript
    def ts_script(folder: Path, fake=False, garbage=False):
        p = folder / "models" / "proxy.ts"
        if garbage:
            p.write_bytes(b"PK\x03\x04garbage")
            return
        code = ("import sys, torch; sys.path.insert(0, '.'); from myplug import CentroidNet\n"
                "from safetensors.torch import load_file\n"
                "net = CentroidNet(); net.load_state_dict(load_file('models/my_proxy.safetensors'))\n"
                + ("torch.save(net.state_dict(), 'models/proxy.ts')\n" if fake else
                   "torch.jit.script(net).save('models/proxy.ts')\n"))
        subprocess.run([PYTHON, "-c", code], cwd=folder, check=True, capture_output=True, timeout=120)

    def ts_model(s):
        s["domains"]["ud"]["models"]["my_proxy"] = {"torchscript": "proxy.ts", "kind": "classifier"}

    cases += [
        case("ts-control", "a TorchScript proxy (control)", edit=ts_model, after=ts_script, expect="accepted",
             check=needs_cells),
        case("ts-is-torch-save", "torch.save output named .ts", edit=ts_model, after=lambda f: ts_script(f, fake=True),
             needles=("suite.toml", "proxy.ts", "TorchScript")),
        case("ts-garbage", "a .ts file of garbage", edit=ts_model, after=lambda f: ts_script(f, garbage=True),
             needles=("suite.toml", "proxy.ts")),
    ]

    # diffusers folders
    cases += [
        case("unet-control", "a diffusers UNet folder with classes + 1 embeddings, guidance (control)",
             edit=guidance_suite, after=write_unet, expect="accepted", check=needs_cells, timeout=180),
        case("unet-no-config", "a diffusers folder without config.json", edit=guidance_suite,
             after=lambda f: write_unet(f, damage=lambda u: (u / "config.json").unlink()), needles=("suite.toml", "unet", "config.json")),
        case("unet-no-weights", "a diffusers folder without weights", edit=guidance_suite,
             after=lambda f: write_unet(f, damage=lambda u: (u / "diffusion_pytorch_model.safetensors").unlink()),
             needles=("suite.toml", "unet", "diffusion_pytorch_model.safetensors"), forbid=(".bin",)),
        case("unet-bin-only", "a diffusers folder with only diffusion_pytorch_model.bin", edit=guidance_suite,
             after=lambda f: write_unet(f, damage=pickle_only), needles=("suite.toml", "diffusion_pytorch_model.bin", "safetensors")),
        case("unet-garbage-config", "a diffusers folder whose config.json is not JSON", edit=guidance_suite,
             after=lambda f: write_unet(f, damage=lambda u: (u / "config.json").write_text("{oops")),
             needles=("suite.toml", "config.json")),
        case("unet-config-disagrees", "a config whose block_out_channels disagree with the weights", edit=guidance_suite,
             after=lambda f: write_unet(f, damage=edit_config(lambda c: c.update(block_out_channels=[16, 32], norm_num_groups=8))),
             needles=("suite.toml", "unet")),
        case("unet-no-null-class", "a UNet with as many class embeddings as classes (no null class)", edit=guidance_suite,
             after=lambda f: write_unet(f, classes_plus=0), needles=("suite.toml", "my_unet", "null")),
        case("unet-folder-missing", "a diffusers entry naming a missing folder", edit=guidance_suite,
             needles=("suite.toml", "unet")),
        case("unet-wrong-channels", "a 3-channel UNet on a 1-channel domain", edit=guidance_suite,
             after=lambda f: write_unet(f, damage=edit_config(lambda c: c.update(in_channels=3, out_channels=3))),
             needles=("suite.toml", "my_unet")),
    ]
    return cases


def numeric_cases() -> list[Case]:
    cat = "numeric"

    def sel(id, desc, source, proxy_arch=None, gen_arch=None, **kw):
        def edit(s):
            if proxy_arch:
                model(s, "my_proxy")["arch"] = proxy_arch
            if gen_arch:
                model(s, "my_gen")["arch"] = gen_arch
        return ud_case(id, cat, desc, edit=edit, cells=[cell(source=source, settings=dict(BEST_OF_N))],
                       expect="either", needles=("suite.toml",), check=selection_never_prefers_diverged, **kw)

    cases = [
        sel("nan-proxy-best-of-n", "a proxy that is NaN on about 31% of the pool, best-of-n", "best_of_n",
            "myplug:NaNProxy", "myplug:MarkedGen"),
        sel("nan-proxy-quantilizer", "a proxy that is NaN on about 31% of the pool, quantilizer", "quantilizer",
            "myplug:NaNProxy", "myplug:MarkedGen"),
        sel("inf-proxy-best-of-n", "a proxy that is +inf on about 31% of the pool, best-of-n", "best_of_n",
            "myplug:InfProxy", "myplug:MarkedGen"),
        sel("inf-generator-best-of-n", "a generator that emits inf for about 31% of latents, best-of-n", "best_of_n",
            None, "myplug:InfGen"),
        sel("inf-generator-quantilizer", "a generator that emits inf for about 31% of latents, quantilizer", "quantilizer",
            None, "myplug:InfGen"),
        ud_case("nan-generator-all", cat, "a generator that emits NaN always: every level diverged, the summary is written",
                edit=lambda s: model(s, "my_gen").update(arch="myplug:NaNGen"),
                cells=[cell(source="best_of_n", settings=dict(BEST_OF_N))], expect="either",
                needles=("suite.toml", "my_gen"), check=all_of(needs_cells, needs_summary)),
        ud_case("n-beyond-null-pool", cat, "n_samples 40 with a null pool of 48 (at most half may be drawn)",
                stat=True, cells=[cell(n=40)], needles=("suite.toml", "n_samples")),
        suite_case("mnist-n-beyond-null-pool", cat, "mnist n_samples 1001 (the null pool holds 2000)",
                   mnist_suite(n=1001), needles=("suite.toml", "n_samples")),
    ]
    for value in ("abc", "0", "-5", "1.5"):
        cases.append(suite_case(f"null-draws-{value}", cat, f"OPTBENCH_NULL_DRAWS={value}", mnist_suite(n=18),
                                env={"OPTBENCH_NULL_DRAWS": value}, needles=("OPTBENCH_NULL_DRAWS",)))

    def knob(id, desc, source, settings, needles, n=16, **kw):
        cases.append(suite_case(id, cat, desc, mnist_suite(settings, source, n), needles=("suite.toml", *needles), **kw))

    knob("max-steps-2-63", "max_steps = 2**63 - 1", "pixel_ascent", {**PIXEL, "max_steps": 2**63 - 1}, ("max_steps",))
    knob("max-steps-1e9", "max_steps = 10**9", "pixel_ascent", {**PIXEL, "max_steps": 10**9}, ("max_steps",))
    knob("max-steps-0", "max_steps = 0", "pixel_ascent", {**PIXEL, "max_steps": 0}, ("max_steps",))
    knob("max-generations-1e9", "random_search max_generations = 10**9", "random_search",
         {"max_generations": 10**9}, ("max_generations",))
    knob("population-1e8", "random_search population = 10**8", "random_search", {"population": 10**8, "max_generations": 2},
         ("population",))
    knob("ddim-steps-1e9", "guidance ddim_steps = 10**9", "guidance", {"ddim_steps": 10**9, "scales": [0.0, 1.0]}, ("ddim_steps",))
    knob("interval-hi-5000", "guidance interval_hi = 5000 (timesteps stop at 999)", "guidance",
         {"interval_hi": 5000, "scales": [0.0, 1.0], "ddim_steps": 2}, ("interval_hi",))
    knob("interval-lo-above-hi", "guidance interval_lo = 900 > interval_hi = 100", "guidance",
         {"interval_lo": 900, "interval_hi": 100, "scales": [0.0, 1.0], "ddim_steps": 2}, ("interval",))
    knob("retrain-steps-1e9", "online retrain_steps = 10**9", "online_pixel_ascent",
         {**PIXEL, "retrain_steps": 10**9}, ("retrain_steps",))
    knob("finetune-batch-1e9", "generator_finetune batch_size = 10**9", "generator_finetune",
         {"batch_size": 10**9, "max_steps": 2}, ("batch_size",))
    knob("finetune-max-steps-2-62", "diffusion_finetune max_steps = 2**62", "diffusion_finetune",
         {"max_steps": 2**62}, ("max_steps",))
    knob("lr-1e308-sgd", "lr = 1e308 with SGD (overflows float32)", "pixel_ascent",
         {**PIXEL, "lr": 1e308, "optimizer": "sgd"}, ("lr",))
    knob("lr-zero", "lr = 0", "pixel_ascent", {**PIXEL, "lr": 0.0}, ("lr",))
    knob("eps-negative", "eps = -0.1 under an linf budget", "pixel_ascent", {**PIXEL, "norm": "linf", "eps": -0.1}, ("eps",))
    knob("pool-below-n", "pool_size 8 < n_samples 16", "best_of_n", {"pool_size": 8}, ("pool_size",))
    knob("pool-size-1", "pool_size = 1", "best_of_n", {"pool_size": 1}, ("pool_size",))
    knob("seed-2-64", "seeds = [2**64]: runs, or a refusal", "pixel_ascent", PIXEL, ("seed",), expect="either",
         check=needs_cells)
    cases[-1].build = _raw_text_build(dump_suite(mnist_suite()).replace("seeds = [0]", f"seeds = [{2**64}]"))
    knob("mnist-nan-lr-list", "lr = [0.05, nan] (a grid axis with NaN)", "pixel_ascent", {**PIXEL, "lr": [0.05, math.nan]},
         ("lr",))
    return cases


def _raw_text_build(text: str):
    def build(folder: Path):
        write(folder, "suite.toml", text)
    return build


def cli_cases() -> list[Case]:
    cat = "CLI, paths, damaged results"
    tiny = mnist_suite()
    cases = []

    def c(id, desc, argv, needles=(), suite=tiny, files=None, **kw):
        cases.append(suite_case(id, cat, desc, suite, files, argv=tuple(argv), needles=needles, **kw))

    # flags and the suite file
    c("no-args", "optbench with no arguments", [], ("cmd",))
    c("run-no-suite", "optbench run with no suite", ["run"], ("suite",))
    c("run-missing-suite", "a suite file that does not exist", ["run", "nope.toml"], ("nope.toml",))
    c("run-folder-as-suite", "a folder given as the suite file", ["run", "."], ("folder",))
    c("run-dev-null", "/dev/null as the suite file", ["run", "/dev/null", "--out", "out"], ("/dev/null",))
    c("run-latin1", "a suite file in Latin-1", RUN, ("suite.toml", "UTF-8"),
      suite=None, files=lambda f: write(f, "suite.toml", dump_suite({**tiny, "description": "café"}).encode("latin-1")))
    c("run-toml-syntax", "a TOML syntax error", RUN, ("suite.toml", "TOML"), suite="name = \"x\n[[cell]\n")
    c("run-empty-file", "an empty suite file", RUN, ("suite.toml", "name"), suite="")
    c("run-binary-file", "a PNG given as the suite file", ["run", "img.png", "--out", "out"], ("img.png",),
      files=lambda f: write(f, "img.png", png_bytes()))
    c("workers-0", "--workers 0", [*RUN, "--workers", "0"], ("--workers",))
    c("workers-huge", "--workers 100000: runs (as many workers as cells), or a refusal", [*RUN, "--workers", "100000"],
      ("--workers",), expect="either", check=needs_cells)
    c("threads-abc", "--threads abc", ["--threads", "abc", *RUN], ("--threads",))
    c("device-tpu", "--device tpu", [*RUN, "--device", "tpu"], ("--device", "tpu"))
    c("device-cuda-absent", "--device cuda on a machine without CUDA", [*RUN, "--device", "cuda"], ("--device", "cuda"))
    c("executor-dask", "--executor dask", [*RUN, "--executor", "dask"], ("--executor",))
    c("gpus-nan", "--gpus-per-cell nan", [*RUN, "--gpus-per-cell", "nan"], ("--gpus-per-cell",))
    c("list-bogus", "optbench list bogus", ["list", "bogus"], ("bogus",))
    c("unknown-command", "optbench lst", ["lst"], ("lst",))
    c("train-unknown-domain", "optbench train nodomain", ["train", "nodomain"], ("nodomain",))
    c("train-unknown-model", "optbench train mnist --only nope", ["train", "mnist", "--only", "nope"], ("nope",))
    c("train-missing-suite", "optbench train x --suite missing.toml", ["train", "x", "--suite", "missing.toml"],
      ("missing.toml",))
    # suite fields
    c("description-int", "description = 123", RUN, ("suite.toml", "description"), suite={**tiny, "description": 123})
    c("name-slash", "name = \"a/b\"", RUN, ("suite.toml", "name"), suite={**tiny, "name": "a/b"})
    c("name-empty", "name = \"\"", RUN, ("suite.toml", "name"), suite={**tiny, "name": ""})
    c("name-300", "a 300-character suite name", RUN, ("suite.toml", "name"), suite={**tiny, "name": "n" * 300})
    c("unknown-top-field", "an unknown top-level field 'seed'", RUN, ("suite.toml", "seed"), suite={**tiny, "seed": [0]})
    c("cell-a-table", "[cell] as a table, not an array", RUN, ("suite.toml", "cell"),
      suite=dump_suite({**tiny, "cell": []}).replace("cell = []", "[cell]\ndomain = \"mnist\""))
    c("no-cells", "no [[cell]]", RUN, ("suite.toml", "cell"), suite={"name": "tiny"})
    c("settings-string", "settings = \"fast\"", RUN, ("suite.toml", "settings"),
      suite=mnist_suite(settings="fast"))
    c("seeds-empty", "seeds = []", RUN, ("suite.toml", "seeds"), suite={**tiny, "seeds": []})
    c("seeds-negative", "seeds = [-1]", RUN, ("suite.toml", "seeds"), suite={**tiny, "seeds": [-1]})
    c("seeds-float", "seeds = [0.5]", RUN, ("suite.toml", "seeds"), suite={**tiny, "seeds": [0.5]})
    c("n-samples-float", "n_samples = 16.5", RUN, ("suite.toml", "n_samples"), suite=mnist_suite(n=16.5))
    c("domain-int", "domain = 5", RUN, ("suite.toml", "domain"),
      suite={**tiny, "cell": [{**tiny["cell"][0], "domain": 5}]})
    c("domain-typo", "domain = \"mnsit\"", RUN, ("suite.toml", "mnsit", "mnist"),
      suite={**tiny, "cell": [{**tiny["cell"][0], "domain": "mnsit"}]})
    c("label-int", "label = 7", RUN, ("suite.toml", "label"), suite={**tiny, "cell": [{**tiny["cell"][0], "label": 7}]})
    c("cache-is-file", "OPTBENCH_CACHE points at a file", RUN, ("OPTBENCH_CACHE",),
      files=lambda f: write(f, "cachefile", "x"), env={"OPTBENCH_CACHE": "cachefile"})
    c("out-is-file", "--out names a file", ["run", "suite.toml", "--out", "outfile"], ("outfile",),
      files=lambda f: write(f, "outfile", "keep"), sentinels=("outfile",))
    c("out-in-proc", "--out under /proc", ["run", "suite.toml", "--out", "/proc/optbench-probe"],
      ("/proc/optbench-probe",), expect="exit3")
    c("out-dev-null", "--out /dev/null", ["run", "suite.toml", "--out", "/dev/null"], ("/dev/null",))
    c("run-help-says-trust", "optbench run --help says suite files run code", ["run", "--help"], expect="accepted",
      check=lambda f, o: None if re.search(r"trust", o.stdout, re.I) else "run --help does not say to run only trusted suite files")

    # labels that make file names
    def label_suite(label):
        return {**tiny, "cell": [{**tiny["cell"][0], "label": label}]}
    c("label-300", "a 300-character label: run completes with plots, or a refusal", RUN, ("suite.toml", "label"),
      suite=label_suite("L" * 300), expect="either", check=all_of(needs_cells, needs_summary))
    c("label-slash", "a label with a slash", RUN, ("suite.toml", "label"), suite=label_suite("a/b"), expect="either",
      check=all_of(needs_cells, needs_summary))
    c("label-nul", "a label with a NUL character", RUN, ("suite.toml", "label"), suite=label_suite("a\u0000b"),
      expect="either", check=all_of(needs_cells, needs_summary))
    c("label-newline", "a label with a newline", RUN, ("suite.toml", "label"), suite=label_suite("two\nlines"),
      expect="either", check=all_of(needs_cells, needs_summary))

    # results folders: plot and report
    c("plot-missing", "plot on a folder that does not exist", ["plot", "nope"], ("nope",))
    c("plot-file", "plot on a file", ["plot", "suite.toml"], ("suite.toml",))
    c("plot-empty-folder", "plot on an empty folder", ["plot", "empty"], ("empty",), files=lambda f: (f / "empty").mkdir())
    c("compare-out-file", "compare --out names a file", ["compare", "out/tiny", "--out", "suite.toml"], ("--out",),
      fixture="mnist", sentinels=("suite.toml",))

    def damaged(id, desc, damage, argv=("plot", "out/tiny"), expect="either", needles=(), check=None, **kw):
        """A case on a copy of a two-cell results folder (fixture mnist2), one cell damaged:
        a refusal naming the damaged file, or the rest plotted with a warning."""
        def build(folder):
            damage(folder)
        cases.append(Case(id, cat, desc, build, argv=tuple(argv), expect=expect,
                          needles=needles, check=check or damage_reported, fixture="mnist2", **kw))

    def damage_reported(folder: Path, o: Outcome) -> str | None:
        problem = needs_summary(folder, o)
        if problem:
            return problem
        summary = (suite_dirs(folder)[0] / "summary.md").read_text(errors="replace")
        if "optbench: warning" in o.stderr or re.search(r"left out|missing|corrupt", summary, re.I):
            return None
        return "exit 0 without a warning that a cell was damaged and left out"

    def cell_file(f: Path, name: str) -> Path:
        return sorted((f / "out" / "tiny").glob(f"*/{name}"))[0]

    def redo_done(cell: Path):
        """Rewrite DONE to match the files as they are now (a damage that looks complete)."""
        import hashlib
        done = json.loads((cell / "DONE").read_text())
        files = done.get("files", done) if isinstance(done, dict) else {}
        for name in list(files):
            p = cell / name
            if p.is_file() and isinstance(files[name], str):
                files[name] = hashlib.sha256(p.read_bytes()).hexdigest()
        (cell / "DONE").write_text(json.dumps(done, indent=1))

    damaged("plot-control", "plot on a complete results folder (control)", lambda f: None, expect="accepted",
            check=needs_summary)
    damaged("report-control", "report on a complete results folder (control)", lambda f: None,
            argv=("report", "out/tiny"), expect="accepted", check=needs_report)
    damaged("plot-suite-json-garbage", "plot with a garbage suite.json", lambda f: write(f, "out/tiny/suite.json", "{garbage"),
            needles=("suite.json",), check=needs_summary)
    damaged("plot-suite-json-missing", "plot with suite.json removed (the cells are there)",
            lambda f: (f / "out/tiny/suite.json").unlink(), needles=("suite.json",), check=needs_summary)
    damaged("plot-suite-json-list", "plot with a suite.json that is a JSON list",
            lambda f: write(f, "out/tiny/suite.json", "[1, 2]"), needles=("suite.json",), check=needs_summary)
    damaged("plot-suite-json-unknown-cell", "plot with suite.json listing a third cell that does not exist",
            lambda f: write(f, "out/tiny/suite.json", json.dumps({**(j := json.loads((f / "out/tiny/suite.json").read_text())),
                                                                  "cells": [*j["cells"], "0123456789abcdef"]})),
            needles=("0123456789abcdef",))
    damaged("plot-curve-truncated", "plot with a truncated curve.json (DONE not updated)",
            lambda f: cell_file(f, "curve.json").write_text('{"rows": ['), needles=("curve.json",))
    damaged("plot-curve-no-rows-done-updated", "plot with a curve.json without rows and DONE updated to match",
            lambda f: (cell_file(f, "curve.json").write_text('{"schema": 1}'), redo_done(cell_file(f, "curve.json").parent)),
            needles=("curve.json",))
    damaged("plot-curve-rows-garbage-done-updated", "plot with curve.json rows of strings and DONE updated",
            lambda f: (cell_file(f, "curve.json").write_text('{"schema": 1, "knob": "steps", "rows": ["a", "b"]}'),
                       redo_done(cell_file(f, "curve.json").parent)), needles=("curve.json",))
    damaged("plot-spec-garbage-done-updated", "plot with a garbage spec.json and DONE updated",
            lambda f: (cell_file(f, "spec.json").write_text("[]"), redo_done(cell_file(f, "spec.json").parent)),
            needles=("spec.json",))
    damaged("plot-done-garbage", "plot with a garbage DONE", lambda f: cell_file(f, "DONE").write_text("xx"),
            needles=("DONE",))
    damaged("plot-snapshots-garbage-done-updated", "plot with garbage snapshots.safetensors and DONE updated",
            lambda f: (cell_file(f, "snapshots.safetensors").write_bytes(b"\0" * 64),
                       redo_done(cell_file(f, "snapshots.safetensors").parent)), needles=("snapshots.safetensors",))
    damaged("report-summary-json-garbage", "report with a garbage summary.json",
            lambda f: write(f, "out/tiny/summary.json", "{bad"), argv=("report", "out/tiny"), needles=("summary.json",),
            check=needs_report)

    # the lock: busy folders
    def hold_lock(folder: Path):
        lock = folder / "out" / "tiny" / ".lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        code = ("import fcntl, os, sys, time\nf = open(sys.argv[1], 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
                "f.seek(0); f.truncate(); f.write(f'pid {os.getpid()}'); f.flush()\n"
                "open(sys.argv[2], 'w').close()\ntime.sleep(600)\n")
        ready = folder / "holder.ready"
        holder = subprocess.Popen([sys.executable, "-c", code, str(lock), str(ready)], start_new_session=True)
        t0 = time.time()
        while not ready.exists() and time.time() - t0 < 30:
            time.sleep(0.05)

        def release():
            holder.kill()
            holder.wait()
        return release

    cases += [
        Case("run-busy", cat, "run on a folder whose lock another process holds", hold_lock, expect="exit4",
             needles=("in use",), fixture="mnist"),
        Case("plot-busy", cat, "plot on a folder whose lock another process holds", hold_lock,
             argv=("plot", "out/tiny"), expect="exit4", needles=("in use",), fixture="mnist"),
        Case("report-busy", cat, "report on a folder whose lock another process holds", hold_lock,
             argv=("report", "out/tiny"), expect="exit4", needles=("in use",), fixture="mnist"),
        Case("lock-is-folder", cat, "out/tiny/.lock is a folder", _lock_is_folder,
             argv=("plot", "out/tiny"), needles=(".lock",), fixture="mnist"),
    ]

    # suite-declared domains: plot and report from the folder alone
    def declared(s):
        s["cell"] = [cell(source="best_of_n", settings=dict(BEST_OF_N), label="bon")]
    cases += [
        ud_case("plot-declared-domain", cat, "plot on the results of a suite-declared domain with a best-of-n cell",
                edit=declared, argv=("plot", "out/probe"), pre=(RUN,), expect="accepted", check=needs_summary),
        ud_case("report-declared-domain", cat, "report on the results of a suite-declared domain with a best-of-n cell",
                edit=declared, argv=("report", "out/probe"), pre=(RUN,), expect="accepted", check=needs_report),
        ud_case("plot-declared-domain-guidance", cat, "plot on the results of a suite-declared domain's guidance cell",
                edit=guidance_suite, after=write_unet, argv=("plot", "out/probe"), pre=(RUN,), expect="accepted",
                check=needs_summary, timeout=180),
    ]

    # outputs readable by others
    def readable(folder: Path, o: Outcome) -> str | None:
        bad = [p for d in suite_dirs(folder) for p in [d, *d.rglob("*")]
               if p.is_dir() and (p.stat().st_mode & 0o055) != 0o055]
        return f"{len(bad)} folders not readable by others, e.g. {bad[0].relative_to(folder)} " \
               f"({oct(bad[0].stat().st_mode & 0o777)})" if bad else None
    c("outputs-readable", "a run's cell folders and plots/ are readable by others (umask 022)", RUN,
      expect="accepted", check=all_of(needs_cells, readable))

    # train for a suite-declared domain without a checkpoints folder: never into the package
    name = f"probe_train_{os.getpid()}"

    def train_build(folder):
        x, y = make_data()
        np.savez(folder / "data.npz", x=x, y=y)
        s = {"name": "t", "domains": {name: {"data": "npz", "path": "data.npz", "splits": dict(SPLITS)}},
             "cell": [cell(domain=name)]}
        write(folder, "suite.toml", dump_suite(s))
        existed = (PACKAGE_CHECKPOINTS / name).exists()

        def cleanup():   # the probe removes only what this case made inside the package
            if not existed and (PACKAGE_CHECKPOINTS / name).exists():
                shutil.rmtree(PACKAGE_CHECKPOINTS / name)
        return cleanup

    def not_in_package(folder, o):
        p = PACKAGE_CHECKPOINTS / name
        return f"wrote into the installed package: {p.relative_to(ROOT)}" if p.exists() else None
    cases.append(Case("train-declared-domain-not-into-package", cat,
                      "train a suite-declared domain without checkpoints: nothing written into the package",
                      train_build, argv=("train", name, "--suite", "suite.toml", "--only", "judge_mlp"),
                      expect="either", needles=("checkpoints",), check=not_in_package, timeout=300))
    return cases


def security_cases() -> list[Case]:
    cat = "security"
    secret_png = png_bytes(color=(1, 2, 3))
    secret_b64 = base64.b64encode(secret_png).decode()[:40]
    tiny = mnist_suite()

    def labels_suite(labels):
        cells_ = [{**tiny["cell"][0], "label": lab, "settings": {**PIXEL, "lr": 0.01 * (i + 1)}}
                  for i, lab in enumerate(labels)]
        return {**tiny, "cell": cells_}

    def no_secret(folder, o):
        problem = needs_report(folder, o)
        if problem:
            return problem
        html = (suite_dirs(folder)[0] / "report.html").read_text(errors="replace")
        return "report.html embeds the secret PNG from outside the suite folder" if secret_b64 in html else None

    def secret_files(folder):
        write(folder, "private/secret.png", secret_png)

    def img_labels(folder_placeholder):
        return [f"![x]({folder_placeholder}/private/secret.png)"]

    def label_case(id, desc, make_labels, check, **kw):
        def build(folder):
            secret_files(folder)
            write(folder, "suite.toml", dump_suite(labels_suite(make_labels(folder))))
        return Case(id, cat, desc, build, expect="either", needles=("suite.toml", "label"), check=check, **kw)

    def csv_safe(folder, o):
        problem = needs_summary(folder, o)
        if problem:
            return problem
        with open(suite_dirs(folder)[0] / "curves.csv", newline="") as f:
            for row in csv.DictReader(f):
                lab = row.get("label", "")
                if lab[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    return f"curves.csv holds the label {lab!r} verbatim (a spreadsheet formula)"
        return None

    cases = [
        label_case("label-md-image-abs", "a label ![x](/abs/path/secret.png): report.html must not embed it",
                   lambda f: [f"![x]({f}/private/secret.png)"], no_secret),
        label_case("label-md-image-rel", "a label ![x](../../private/secret.png): report.html must not embed it",
                   lambda f: ["![x](../../private/secret.png)"], no_secret),
        label_case("label-img-tag", "a label <img src=\"/abs/secret.png\">: report.html must not embed it",
                   lambda f: [f'<img src="{f}/private/secret.png">'], no_secret),
        label_case("label-formulas", "labels =1+1, +cmd, -2+3, @SUM(A1): curves.csv must neutralize them",
                   lambda f: ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"], csv_safe),
        label_case("label-script", "a label <script>: report.html shows it as text",
                   lambda f: ["<script>alert(1)</script>"],
                   lambda f, o: needs_report(f, o) or ("report.html holds a live <script> tag"
                                                       if "<script>alert" in (suite_dirs(f)[0] / "report.html").read_text()
                                                       else None)),
    ]

    # the lock file and other symlinks in a results folder
    def link(rel_link, target_rel, target_content=b"precious\n", is_dir=False):
        def build(folder):
            target = folder / target_rel
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                (target / "keep.txt").write_bytes(target_content)
            elif target_content is not None:
                write(folder, target_rel, target_content)
            p = folder / rel_link
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to(target)
        return build

    cases += [
        Case("lock-symlink-to-file", cat, "out/tiny/.lock is a symlink to the user's file (run)",
             link("out/tiny/.lock", "precious.txt"), expect="either", needles=(".lock",), check=None,
             sentinels=("precious.txt",), fixture="mnist"),
        Case("lock-symlink-plot", cat, "out/tiny/.lock is a symlink to the user's file (plot)",
             link("out/tiny/.lock", "precious.txt"), argv=("plot", "out/tiny"), expect="either", needles=(".lock",),
             sentinels=("precious.txt",), fixture="mnist"),
        Case("lock-symlink-dangling", cat, "out/tiny/.lock is a dangling symlink: nothing created at its target",
             link("out/tiny/.lock", "created_by_optbench.txt", target_content=None), expect="either",
             needles=(".lock",), absent=("created_by_optbench.txt",), fixture="mnist"),
        Case("lock-hardlink", cat, "out/tiny/.lock is a hard link to the user's file", _lock_hardlink,
             expect="either", needles=(".lock",), sentinels=("precious.txt",), fixture="mnist"),
        Case("summary-symlink", cat, "summary.md is a symlink to the user's file (plot)",
             link("out/tiny/summary.md", "precious.md"), argv=("plot", "out/tiny"), expect="either",
             needles=("summary.md",), sentinels=("precious.md",), fixture="mnist"),
        Case("curves-csv-symlink", cat, "curves.csv is a symlink to the user's file (plot)",
             link("out/tiny/curves.csv", "precious.csv"), argv=("plot", "out/tiny"), expect="either",
             needles=("curves.csv",), sentinels=("precious.csv",), fixture="mnist"),
        Case("plots-symlink", cat, "plots/ is a symlink to the user's folder (plot)",
             link("out/tiny/plots", "mine", is_dir=True), argv=("plot", "out/tiny"), expect="either",
             needles=("plots",), sentinels=("mine/keep.txt",), fixture="mnist"),
        Case("cell-symlink-force", cat, "a cell folder is a symlink to the user's folder (run --force)",
             lambda f: _cell_to_symlink(f), argv=(*RUN, "--force"), expect="either", needles=("out/tiny",),
             sentinels=("mine/keep.txt",), fixture="mnist"),
        Case("hidden-user-folder", cat, "a user's hidden folder .backup.2024 in the results folder survives a run",
             lambda f: write(f, "out/tiny/.backup.2024/notes.txt", "mine"), expect="accepted", check=None,
             sentinels=("out/tiny/.backup.2024/notes.txt",), fixture="mnist"),
        Case("stale-temp-symlink", cat, "a stale-looking temporary cell folder that is a symlink to the user's folder",
             lambda f: _stale_symlink(f), expect="accepted", check=None, sentinels=("mine/keep.txt",), fixture="mnist"),
    ]

    # pickles: never unpickled
    marker = "PWNED_BY_PICKLE"

    def pickled(rel, edit=None, **kw):
        def after(folder):
            write(folder, rel, pickle_payload(folder / marker))
        return ud_case(f"pickle-{Path(rel).name.replace('.', '-')}", cat, f"a pickle with a payload as {rel}: never unpickled",
                       edit=edit, after=after, absent=(marker,), **kw)

    cases += [
        pickled("models/my_proxy.safetensors", needles=("suite.toml", "my_proxy.safetensors")),
        pickled("models/proxy.ts", edit=lambda s: s["domains"]["ud"]["models"].update(
            my_proxy={"torchscript": "proxy.ts", "kind": "classifier"}), needles=("suite.toml", "proxy.ts")),
        ud_case("pickle-npz-object", cat, "an .npz whose x is a pickled object array with a payload: never unpickled",
                stat=True, raw_npz=lambda f: _npz_with_payload(f, f / marker), absent=(marker,),
                needles=("data.npz",), forbid=("allow_pickle",)),
        ud_case("pickle-npy-as-npz", cat, "a pickled .npy (payload) named data.npz: never unpickled", stat=True,
                raw_npz=lambda f: write(f, "data.npz", b"\x93NUMPY" + b"\x01\x00" + pickle_payload(f / marker)),
                absent=(marker,), needles=("data.npz",)),
        ud_case("domain-name-traversal", cat, "[domains.\"../../evil\"] with its models: a domain name that is a "
                "path (it names cache files)", stat=True,
                edit=lambda s: (s["domains"].update({"../../evil": s["domains"].pop("ud")}),
                                s["cell"][0].update(domain="../../evil")),
                needles=("suite.toml", "../../evil", "name"), env={"OPTBENCH_CACHE": "cache"},
                absent=("evil_*",)),
        suite_case("suite-name-dotdot", cat, "name = \"..\"", {**tiny, "name": ".."}, needles=("suite.toml", "name")),
    ]
    return cases


def _lock_is_folder(folder: Path):
    lock = folder / "out" / "tiny" / ".lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()


def _lock_hardlink(folder: Path):
    write(folder, "precious.txt", b"precious\n")
    lock = folder / "out" / "tiny" / ".lock"
    lock.unlink(missing_ok=True)
    os.link(folder / "precious.txt", lock)


def _cell_to_symlink(folder: Path):
    cell = next(p for p in (folder / "out" / "tiny").iterdir() if re.fullmatch(r"[0-9a-f]{16}", p.name))
    mine = folder / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    shutil.rmtree(cell)
    cell.symlink_to(mine)


def _stale_symlink(folder: Path):
    cell = next(p for p in (folder / "out" / "tiny").iterdir() if re.fullmatch(r"[0-9a-f]{16}", p.name))
    mine = folder / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    (cell.parent / f".{cell.name}.abc123").symlink_to(mine)


def _npz_with_payload(folder: Path, marker: Path):
    """An .npz whose x.npy is an object array holding a payload pickle."""
    import zipfile
    buf = io.BytesIO()
    arr = np.empty(1, dtype=object)
    arr[0] = 0
    np.save(buf, arr, allow_pickle=True)   # header for an object array
    raw = buf.getvalue()
    header_end = raw.index(b"\n") + 1
    with zipfile.ZipFile(folder / "data.npz", "w") as z:
        z.writestr("x.npy", raw[:header_end] + pickle_payload(marker))
        ybuf = io.BytesIO()
        np.save(ybuf, np.zeros(1, np.int64))
        z.writestr("y.npy", ybuf.getvalue())


def all_cases() -> list[Case]:
    cases = plugin_cases() + data_cases() + model_cases() + numeric_cases() + cli_cases() + security_cases()
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate case ids: {dup}"
    return cases


# ---------------------------------------------------------------------------------------
# Fixtures: folders prepared once (a results folder) and copied into cases
# ---------------------------------------------------------------------------------------

def fixture_mnist(folder: Path, env: dict) -> None:
    write(folder, "suite.toml", dump_suite(mnist_suite()))
    p = subprocess.run([*OPTBENCH, *RUN], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"fixture 'mnist' failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")


def fixture_mnist2(folder: Path, env: dict) -> None:
    """Two cells (seeds 0 and 1) of one curve: the damaged-results cases break one."""
    write(folder, "suite.toml", dump_suite({**mnist_suite(), "seeds": [0, 1]}))
    p = subprocess.run([*OPTBENCH, *RUN], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"fixture 'mnist2' failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")


FIXTURES = {"mnist": fixture_mnist, "mnist2": fixture_mnist2}


# ---------------------------------------------------------------------------------------
# One runner, one classifier
# ---------------------------------------------------------------------------------------

def base_env(workroot: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTBENCH_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPTBENCH_NULL_DRAWS="60",
               OPTBENCH_CACHE=str(workroot / "cache"), PYTHONDONTWRITEBYTECODE="1",
               MPLCONFIGDIR=str(workroot / "mpl"))
    return env


def _run(argv, cwd, env, timeout) -> Outcome:
    t0 = time.time()
    p = subprocess.Popen([*OPTBENCH, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, errors="replace", start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return Outcome(p.returncode, out, err, time.time() - t0, Path(cwd))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)   # the case's own process group (its workers too)
        out, err = p.communicate()
        return Outcome(None, out, err, time.time() - t0, Path(cwd), timed_out=True)


def _snapshot(folder: Path, paths) -> dict:
    out = {}
    for rel in paths:
        p = Path(rel) if os.path.isabs(rel) else folder / rel
        try:
            out[rel] = p.read_bytes()
        except OSError:
            out[rel] = None
    return out


def run_case(case: Case, workroot: Path) -> dict:
    folder = workroot / case.id
    if folder.exists():
        shutil.rmtree(folder)
    if case.fixture:
        shutil.copytree(workroot / "_fixtures" / case.fixture, folder, symlinks=True)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**base_env(workroot), **case.env}
    record = {"id": case.id, "category": case.category, "description": case.description,
              "command": "optbench " + " ".join(case.argv), "expected": case.expect,
              "needles": list(case.needles), "env": case.env}
    cleanup = None
    try:
        cleanup = case.build(folder)
        pre = [_run(argv, folder, env, case.timeout) for argv in case.pre]
        record["pre"] = [{"command": "optbench " + " ".join(a), "exit": o.code} for a, o in zip(case.pre, pre)]
        if case.between:
            case.between(folder)
        before = _snapshot(folder, case.sentinels)
        o = _run(case.argv, folder, env, case.timeout)
        after = _snapshot(folder, case.sentinels)
        changed = [rel for rel in case.sentinels if before[rel] is not None and after[rel] != before[rel]]
        changed += [str(p.relative_to(folder)) for pattern in case.absent for p in folder.glob(pattern)]
        cls, note = classify(case, o, changed)
        failed_pre = [f"optbench {' '.join(a)}: exit {q.code}" for a, q in zip(case.pre, pre) if q.code != 0]
        if failed_pre and cls not in GOOD:
            note = f"{note} (before it: {'; '.join(failed_pre)})"
    except Exception as e:   # the probe's own failure: reported, never hidden
        import traceback
        o = Outcome(None, "", "", 0.0, folder)
        cls, note = "probe error", f"{type(e).__name__}: {e} | {traceback.format_exc().splitlines()[-3:]}"
    finally:
        if callable(cleanup):
            try:
                cleanup()
            except Exception:   # noqa: BLE001
                pass
    lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    record.update({"exit": o.code, "seconds": round(o.seconds, 1), "stderr_lines": len(lines),
                   "stderr_first": lines[0][:600] if lines else "", "class": cls, "good": cls in GOOD,
                   "note": note})
    return record


def printable(text: str) -> str:
    """Control characters (a NUL from a label, ...) shown as '?'."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", text)


def cells_written(folder: Path) -> list[str]:
    out = folder / "out"
    if not out.is_dir():
        return []
    return [str(p.relative_to(folder)) for p in out.glob("*/*")
            if p.is_dir() and not p.is_symlink() and re.fullmatch(r"[0-9a-f]{16}", p.name) and (p / "DONE").exists()]


def failed_cells(folder: Path) -> list[Path]:
    out = folder / "out"
    return sorted(out.glob("*/*.failed.txt")) if out.is_dir() else []


def _last_exception(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


EXPECTED_CODE = {"refused": 2, "either": 2, "exit1": 1, "exit3": 3, "exit4": 4, "accepted": 0}


def classify(case: Case, o: Outcome, changed: list[str]) -> tuple[str, str]:
    """One class per outcome, worst first: data lost, hung, traceback, then by exit code."""
    if changed:
        return "data lost", f"changed, gone or created: {', '.join(changed)}"
    if o.timed_out:
        return "hung", f"still running after {case.timeout:.0f} s"
    lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    if "Traceback (most recent call last)" in o.stderr or (o.code is not None and o.code < 0):
        where = next((ln for ln in reversed(lines) if not ln.startswith(" ")), "")
        return "traceback", f"exit {o.code}: {where[:300]}"
    failed = failed_cells(o.folder)
    if o.code == 0:
        if case.expect in ("accepted", "either"):
            problem = case.check(o.folder, o) if case.check else None
            return ("silently wrong", problem) if problem else ("ok", "")
        return "accepted", f"exit 0 where {case.expect} was due"
    if o.code == 1 and failed:
        if case.expect == "exit1":
            return "clear", f"{len(failed)} failed cell(s): {_last_exception(failed[0])}"
        return "fails in a cell", _last_exception(failed[0])
    # a non-zero exit: judge the error line
    if len(lines) != 1 or not lines[0].startswith("optbench: error: "):
        return "unclear", f"exit {o.code}, {len(lines)} stderr line(s)"
    line = lines[0]
    if case.expect == "accepted":
        return "wrongly refused", f"exit {o.code}"
    want = EXPECTED_CODE[case.expect]
    if o.code != want:
        return "unclear", f"exit {o.code}, expected {want}"
    missing = [n for n in case.needles if not any(alt.lower() in line.lower() for alt in n.split("|"))]
    present = [n for n in case.forbid if n.lower() in line.lower()]
    if missing or present:
        return "unclear", "; ".join(filter(None, [missing and f"missing {missing}", present and f"says {present}"]))
    written = cells_written(o.folder) if case.expect in ("refused", "either") and not case.fixture else []
    if written:
        return "unclear", f"refused after writing {len(written)} cell(s)"
    return "clear", ""


# ---------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------

def git_state() -> dict:
    def git(*args):
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    changed = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "modified": changed}


def table(records: list[dict]) -> list[str]:
    cols = [c for c in CLASSES]
    if any(r["class"] == "probe error" for r in records):
        cols.append("probe error")
    lines = ["| category | tried | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for cat in [*CATEGORIES, "all"]:
        rs = [r for r in records if cat == "all" or r["category"] == cat]
        if not rs:
            continue
        counts = [sum(r["class"] == c for r in rs) for c in cols]
        name = f"**{cat}**" if cat == "all" else cat
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(str(n) for n in counts) + " |")
    return lines


def write_reports(records: list[dict], out: Path, runs: list[dict]) -> None:
    """probe.json (schema 1: the runs that made the records, then one record per case)
    and probe.md (the table by category, then every case not in a good class)."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "commit": runs[0]["commit"], "runs": runs,
           "environment": {"OMP_NUM_THREADS": "1", "OPTBENCH_NULL_DRAWS": "60", "default_timeout_s": 120},
           "cases": records}
    (out / "probe.json").write_text(json.dumps(doc, indent=1) + "\n")
    bad = [r for r in records if not r["good"]]
    md = [f"# Bad-input probe ({len(records)} cases)", ""]
    for i, run in enumerate(runs):
        changes = (f" plus uncommitted changes to {len(run['modified'])} file(s)" if isinstance(run["modified"], list)
                   else f" ({run['modified']})") if run["modified"] else ""
        end = (f", `{run['commit_at_end'][:10]}` at its end" if run.get("commit_at_end", run["commit"]) != run["commit"]
               else "")
        md.append(f"- run {i} ({run['started']}, {run['cases']} cases, {run['seconds']:.0f} s with {run['jobs']} "
                  f"job(s)): optbench commit `{run['commit'][:10]}`{changes} at its start{end}; `{run['command']}`")
    md += ["- good: `clear` (refused, or exit 1/3/4, as declared, with one clear line) and `ok` (accepted, "
           "results checked); every other class is bad", "", *table(records), "",
           f"## Cases not good ({len(bad)})", ""]
    for cat in CATEGORIES:
        rs = [r for r in bad if r["category"] == cat]
        if not rs:
            continue
        md += [f"### {cat}", "", "| case | expected | exit | class | first stderr line / note |", "|---|---|---|---|---|"]
        for r in rs:
            first = printable(r["stderr_first"]).replace("|", "\\|").replace("`", "'")[:240]
            note = printable(r["note"]).replace("|", "\\|")[:240] if r["note"] else ""
            text = " / ".join(filter(None, [f"`{first}`" if first else "", note]))
            again = f" (run {r['run']})" if len(runs) > 1 and r.get("run") else ""
            md.append(f"| `{r['id']}`{again}: {r['description']} | {r['expected']} | {r['exit']} | {r['class']} | {text} |")
        md.append("")
    (out / "probe.md").write_text("\n".join(md) + "\n")


# ---------------------------------------------------------------------------------------

_CASES: dict[str, Case] = {}
_WORKROOT: Path | None = None


def _worker(case_id: str) -> dict:
    return run_case(_CASES[case_id], _WORKROOT)


def main(argv=None) -> int:
    global _WORKROOT
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    p.add_argument("-k", action="append", default=[], help="run only cases whose id or category contains this (repeatable)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "probe", help="where probe.json and probe.md go")
    p.add_argument("--keep", action="store_true", help="keep the cases' folders (printed) for inspection")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--update", action="store_true",
                   help="merge the results of these cases into the existing probe.json and probe.md (the other "
                        "cases' records are kept, each marked with the run that made it)")
    a = p.parse_args(argv)
    cases = all_cases()
    if a.k:
        cases = [c for c in cases if any(k in c.id or k in c.category for k in a.k)]
    if a.list:
        for c in cases:
            print(f"{c.category:28s} {c.id:40s} {c.expect:8s} {c.description}")
        print(f"{len(cases)} cases")
        return 0
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2
    _CASES.update({c.id: c for c in cases})
    _WORKROOT = Path(tempfile.mkdtemp(prefix="optbench-probe-"))
    t0, started, git_at_start = time.time(), time.strftime("%Y-%m-%d %H:%M:%S"), git_state()
    for name in sorted({c.fixture for c in cases if c.fixture}):
        print(f"fixture {name} ...", flush=True)
        FIXTURES[name](_WORKROOT / "_fixtures" / name, base_env(_WORKROOT))
    records = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futures = {pool.submit(_worker, c.id): c.id for c in cases}
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            r = fut.result()
            records.append(r)
            mark = "  " if r["good"] else "!!"
            print(f"{mark} [{i}/{len(cases)}] {r['id']}: {r['class']} (exit {r['exit']}, {r['seconds']} s) "
                  + printable(r["stderr_first"][:150] or r["note"][:150]), flush=True)
    seconds = round(time.time() - t0, 1)
    run = {"started": started, **git_at_start, "commit_at_end": git_state()["commit"], "cases": len(records),
           "seconds": seconds, "jobs": a.jobs,
           "command": " ".join(["benchmarks/probe_bad_input.py", *(argv if argv is not None else sys.argv[1:])])}
    runs = [run]
    if a.update and (a.out / "probe.json").exists():
        old = json.loads((a.out / "probe.json").read_text())
        runs = [*old["runs"], run]
        ours = {r["id"] for r in records}
        records += [r for r in old["cases"] if r["id"] not in ours]
    for r in records:
        r.setdefault("run", len(runs) - 1)
    order = {c.id: i for i, c in enumerate(all_cases())}
    records = [r for r in records if r["id"] in order]   # cases no longer in the table go
    records.sort(key=lambda r: order.get(r["id"], len(order)))
    write_reports(records, a.out, runs)
    print("\n".join(table(records)))
    bad = [r for r in records if not r["good"]]
    print(f"{len(records)} cases, {len(bad)} bad, {seconds:.0f} s; wrote {a.out}/probe.json and probe.md")
    if a.keep:
        print(f"case folders kept in {_WORKROOT}")
    else:
        shutil.rmtree(_WORKROOT, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
