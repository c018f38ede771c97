"""Export a domain's splits as .npz files, so a user trains their own proxy or judge on
exactly the examples optbench uses (proxy_train for a proxy, judge_train for a judge)
and never on the test or reference examples its referees read."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from optbench.domains import get_domain


def export_splits(domain: str, out: str | Path, splits: list[str] | None = None) -> list[Path]:
    """Write <out>/<domain>_<split>.npz with x (float32, the domain's shape, channels
    first) and y (int64) for each split (default: the declared training splits; test and
    reference only when asked for by name); returns the files. Each file is written
    whole or not at all."""
    dom = get_domain(domain)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a folder (created if missing)")
    names = list(splits or [s for s in dom.splits if s.endswith("_train")])
    for s in names:
        dom.split_indices(s)   # an unknown or undeclared split fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for s in names:
        x, y = dom.load_split(s)
        path = out / f"{dom.name}_{s}.npz"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        try:
            np.savez(tmp, x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        files.append(path)
    return files
