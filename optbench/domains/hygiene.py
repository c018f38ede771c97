"""Data hygiene: a user's training data must not hold the examples optbench's referees
read. `test` gives the starting points and the real-against-real baselines, and every
distribution metric compares outputs with `reference`; a proxy or judge trained on
either would be scored against its own training data.

The check is by content, not by row number or file name: every row is converted to the
domain's float32 representation (uint8 scaled to [0, 1], as the readers in
domains/files.py do; any other number type cast to float32, so a float64 copy of a row
matches) and its bytes hashed. A row counts once per split it equals. Rows equal to
`proxy_train`, `judge_train` or `generator_train` are what users should train on, and are
not counted.

    from optbench.domains.hygiene import check_training_data, overlap_error
    found = check_training_data("mnist", x)           # {"overlap": {"test": 37, "reference": 0}, ...}
    problem = overlap_error(found, "my_train.npz")    # the one-line refusal, or None
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from optbench.domains import get_domain
from optbench.domains.base import Domain, DomainError, count_of

CHECKED_SPLITS = ("test", "reference")   # what the referees read; never train on them
WHY = {"test": "the split optbench starts from and compares with",
       "reference": "the split every distribution metric compares with"}
# What reads each split (`optbench splits DOMAIN` prints it).
SPLIT_USES = {"proxy_train": "the shipped proxies; train your proxy here",
              "judge_train": "the judges and feature nets; train your judge here",
              "generator_train": "the generators; half of the null pool",
              "test": "starting points and real baselines; half of the null pool; never train on it",
              "reference": "what every distribution metric compares with; never train on it"}
SHOWN_ROWS = 20   # rows of each overlap kept in the result (the count is always whole)


def _digest(row: np.ndarray) -> bytes:
    return hashlib.blake2b(row.tobytes(), digest_size=16).digest()


def as_domain_rows(dom: Domain, x, where: str = "x") -> np.ndarray:
    """x as (N, d) float32 rows of the domain's representation: uint8 scaled to [0, 1];
    shape (N, *shape), (N, d) with d the domain's size, or (N, H, W) for a one-channel
    image domain. -0.0 becomes 0.0, so a sign bit never hides an equal row."""
    if hasattr(x, "detach"):   # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DomainError(f"{where}: dtype {x.dtype}, not numbers; expected float or uint8 values")
    shape, size = tuple(dom.shape), int(np.prod(dom.shape))
    ok = (x.ndim >= 1 and (tuple(x.shape[1:]) in (shape, (size,))
          or (len(shape) == 3 and shape[0] == 1 and tuple(x.shape[1:]) == shape[1:])))
    if not ok:
        full = ", ".join(map(str, shape))
        raise DomainError(f"{where}: shape {tuple(x.shape)}; expected (N, {full}), {dom.name}'s shape "
                          f"(channels first), or (N, {size}) flattened")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return np.ascontiguousarray(x.reshape(len(x), size)) + np.float32(0.0)


def check_training_data(domain: str | Domain, x, splits: tuple[str, ...] = CHECKED_SPLITS,
                        where: str = "x") -> dict:
    """Which rows of `x` equal an example of the domain's `test` or `reference` split, by
    content. Returns {"domain", "n" (rows checked), "overlap": {split: rows counted},
    "rows": {split: the first SHOWN_ROWS such rows of x}, "split_sizes", "clean"}.
    `where` names x in errors (a file name)."""
    dom = get_domain(domain)
    rows = as_domain_rows(dom, x, where)
    digests = [_digest(r) for r in rows]
    overlap, shown, sizes = {}, {}, {}
    for split in splits:
        if split not in dom.splits:
            continue
        ref, _ = dom.load_split(split)
        ref_rows = as_domain_rows(dom, ref.numpy(), f"{dom.name} {split}")
        known = {_digest(r) for r in ref_rows}
        hits = [i for i, d in enumerate(digests) if d in known]
        overlap[split], shown[split], sizes[split] = len(hits), hits[:SHOWN_ROWS], len(ref_rows)
    return {"domain": dom.name, "n": len(rows), "overlap": overlap, "rows": shown,
            "split_sizes": sizes, "clean": not any(overlap.values())}


def overlap_error(found: dict, name: str = "x") -> str | None:
    """The one-line refusal of training data that overlaps the referees' splits (None if
    it does not): how many rows equal rows of which split, why that split is off limits,
    and the command that writes the split to train on."""
    bad = [(s, k) for s, k in found["overlap"].items() if k]
    if not bad:
        return None
    dom = found["domain"]
    parts = [f"{count_of(k, 'row')} {'equals a row' if k == 1 else 'equal rows'} of {dom}'s {s} split"
             + (f" ({WHY[s]})" if s in WHY else "") for s, k in bad]
    first = found["rows"][bad[0][0]]
    shown = ", ".join(map(str, first[:5])) + (", ..." if bad[0][1] > 5 else "")
    return (f"{name}: {' and '.join(parts)}, e.g. row{'s' if len(first) > 1 else ''} {shown}; train on "
            f"`proxy_train` only: optbench splits {dom} --export DIR")


def check_training_file(domain: str | Domain, path: str | Path) -> dict:
    """check_training_data on the array `x` of an .npz file (read without unpickling; `y`
    is not needed), errors naming the file."""
    from optbench.domains.files import _check_npz_file, _npz_array
    path = Path(path)
    if not path.exists():
        raise DomainError(f"{path}: no such file; expected an .npz with an array x (N, ...)")
    try:
        _check_npz_file(path)
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data.files:
                raise DomainError(f"{path}: no array 'x'; it has {', '.join(data.files) or 'none'}; "
                                  "save the training examples as np.savez(path, x=x, y=y)")
            x = _npz_array(data, "x", path)
    except DomainError as e:   # the readers' messages name the suite field `path`; here it is a file
        raise DomainError(str(e).removeprefix("path: ")) from None
    except Exception as e:   # a damaged archive
        raise DomainError(f"{path}: cannot be read as an .npz archive ({type(e).__name__}: {e}); "
                          "save it again with np.savez(path, x=x, y=y)") from None
    return check_training_data(domain, x, where=f"{path}: x")
