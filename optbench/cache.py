"""A per-user cache for things optbench computes deterministically and reuses across
runs: proxy replicates trained on the fly, null distributions. Entries are keyed by a
hash of everything that changes them, so a stale entry is never read, only unused.

Location: $OPTBENCH_CACHE, else ~/.cache/optbench."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

# Bump when a code change alters the numbers a given spec produces: ids change with it,
# so stale results are recomputed rather than silently reused. It enters every cell id
# (suite.py) and every null's cache key (referees/null.py).
NUMBERS_VERSION = 2   # 2: four feature spaces, LDA two-sample test, starts without replacement, diversity by judge class

def cache_root() -> Path:
    """$OPTBENCH_CACHE or ~/.cache/optbench; a ValueError naming the variable when it
    points at something that is not a folder."""
    root = Path(os.environ.get("OPTBENCH_CACHE") or Path.home() / ".cache" / "optbench").expanduser()
    if root.exists() and not root.is_dir():
        where = "environment variable OPTBENCH_CACHE" if os.environ.get("OPTBENCH_CACHE") else "the cache folder"
        raise ValueError(f"{where}: {root} is not a folder; point OPTBENCH_CACHE at a folder "
                         "(created if missing)")
    return root


def cache_dir(kind: str) -> Path:
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def entry_lock(path: Path):
    """Exclusive lock on one cache entry, so two workers that need it compute it once:
    the second waits, then finds it written. flock dies with its process."""
    import fcntl
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
