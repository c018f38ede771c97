"""Scoring outputs made elsewhere: a user's optimized outputs, read by the domain's own
referees exactly as a cell's pressure level is (Referee.evaluate), with the same
"departure reading" against the real-against-real null at the same sample size
(referees/null.py `departed`: beyond q99 for a metric that departs high, below q01 for one
that departs low; a binomial null's quantiles for a flagged share).

    from optbench import score
    result = score(x, targets, domain="mnist")          # x: (N, 1, 28, 28) in [0, 1]
    result["departed"]                                  # metrics by which the set is off the data

`optbench score OUTPUTS --domain D` reads an .npz (`x`; `y` the target classes the
outputs were pushed toward; optionally `start`, the starting points) or an image folder
(class subfolders, or a flat folder with --targets), checks it before any work, and
writes score.json and score.md (`write_score`).

Without a proxy, the values that read the proxy (its probability of the target, the
judges' agreement with it, the gap) are left out: the outputs are scored by the referees
alone. With one (`proxy`), its read-outs join them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from optbench.domains import Domain, get_domain, referee_as_proxy_error
from optbench.domains.base import DomainError, count_of
from optbench.metrics import METRICS, base_name, departure_side
from optbench.text import md_code, md_text

SCHEMA = "optbench.score/1"
MIN_OUTPUTS = 6   # PRDC needs k + 1 = 6 points, FID a covariance
# The read-outs that read the proxy; reported only when a proxy is named.
PROXY_READOUTS = frozenset({"proxy_prob", "proxy_logit", "proxy_hit", "<judge>_agree", "judge_agree", "gap"})


class ScoreInputError(DomainError):
    """Outputs, targets or starting points that cannot be scored; the message names the
    file, the field and the fix."""


# -- checking inputs ------------------------------------------------------------------------

def _numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _shape_text(dom: Domain) -> str:
    return f"(N, {', '.join(map(str, dom.shape))})"


def _shape_hint(dom: Domain, shape: tuple[int, ...], field: str) -> str:
    want = tuple(dom.shape)
    if len(want) == 3 and want[0] == 1 and shape[1:] == want[1:]:
        return f": one-channel images need their channel axis, save {field}[:, None]"
    if len(want) == 3 and len(shape) == 4 and shape[1:] == (want[1], want[2], want[0]):
        return f": this looks channels-last (N, H, W, C); save {field}.transpose(0, 3, 1, 2)"
    if len(shape) == 2 and shape[1] == int(np.prod(want)) and len(want) > 1:
        return f": flattened rows; save {field}.reshape(-1, {', '.join(map(str, want))})"
    return f" ({dom.name}'s examples, channels first)"


def _check_values(dom: Domain, a, name: str, field: str) -> np.ndarray:
    """An array of outputs or starting points as float32 in the domain's representation
    (uint8 scaled to [0, 1], as the readers do): the domain's shape, finite, in bounds."""
    a = _numpy(a)
    if a.dtype.kind not in "biuf":
        raise ScoreInputError(f"{name}: dtype {a.dtype}, not numbers; save it as float32 values in "
                              f"[{dom.bounds[0]:g}, {dom.bounds[1]:g}] (or uint8 0..255)")
    if a.ndim != len(dom.shape) + 1 or tuple(a.shape[1:]) != tuple(dom.shape):
        raise ScoreInputError(f"{name}: shape {tuple(a.shape)}; expected {_shape_text(dom)}, {dom.name}'s shape"
                              + _shape_hint(dom, tuple(a.shape), field))
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(len(a), -1).any(1))[0])
        raise ScoreInputError(f"{name}: {count_of(int(bad.sum()), 'non-finite value')} (NaN or inf), the first in "
                              f"row {row}; replace or drop those rows (a diverged output has no place in the data)")
    lo, hi = dom.bounds
    tol = 1e-6 * (hi - lo)   # float rounding of a value clamped to the bounds
    out = (a < lo - tol) | (a > hi + tol)
    if out.any():
        row = int(np.flatnonzero(out.reshape(len(a), -1).any(1))[0])
        fix = (f"clip them with np.clip({field}, {lo:g}, {hi:g}) (optbench's sources clamp their outputs to the bounds)")
        if (lo, hi) == (0.0, 1.0) and float(a.max()) > 1.5 and float(a.min()) >= 0 and float(a.max()) <= 255:
            fix = f"they look like 0..255 pixel values: divide by 255 (or save {field} as uint8)"
        raise ScoreInputError(f"{name}: {count_of(int(out.sum()), 'value')} outside {dom.name}'s bounds "
                              f"[{lo:g}, {hi:g}] (min {float(a.min()):.4g}, max {float(a.max()):.4g}), the first in "
                              f"row {row}; {fix}")
    return a


def _check_targets(dom: Domain, y, n: int, name: str, field: str) -> np.ndarray:
    """One whole-number target class per output, 0..C-1 (a single number: every output's)."""
    y = _numpy(y)
    expected = f"expected one target class per output, integers 0..{dom.num_classes - 1}"
    if y.dtype.kind not in "biuf":
        raise ScoreInputError(f"{name}: dtype {y.dtype}; {expected} ({field}.astype(np.int64))")
    if y.ndim == 0:
        y = np.full(n, y[()])
    if y.ndim != 1:
        fix = (f"save {field}.reshape(-1)" if y.ndim == 2 and y.shape[1] == 1 else
               f"for one-hot targets save {field}.argmax(1)" if y.ndim == 2 else f"save {field} of shape ({n},)")
        raise ScoreInputError(f"{name}: shape {tuple(y.shape)}; {expected}, shape ({n},): {fix}")
    if len(y) != n:
        raise ScoreInputError(f"{name}: {count_of(len(y), 'target')} for {count_of(n, 'output')}; {expected}, "
                              f"in the outputs' order")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(np.nan_to_num(y))))
        if len(bad):
            r = int(bad[0])
            raise ScoreInputError(f"{name}: {field}[{r}] = {y[r]:g} is not a whole number ({len(bad)} of {n} "
                                  f"targets); {expected}")
    bad = np.flatnonzero((y < 0) | (y >= dom.num_classes))
    if len(bad):
        r = int(bad[0])
        raise ScoreInputError(f"{name}: {field}[{r}] = {y[r]:g} is outside {dom.name}'s classes "
                              f"0..{dom.num_classes - 1} ({len(bad)} of {n} targets); {expected}")
    return y.astype(np.int64)


def check_outputs(domain, x, targets, start=None, names: dict[str, str] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """x, targets and start checked and converted (float32, int64); `names` says how
    errors name each ({"x": "out.npz: x", "targets": "out.npz: y", "start": ...})."""
    dom = get_domain(domain)
    names = {"x": "x", "targets": "targets", "start": "start", **(names or {})}
    fields = {k: v.rsplit(": ", 1)[-1] for k, v in names.items()}
    xa = _check_values(dom, x, names["x"], fields["x"])
    n = len(xa)
    if n < MIN_OUTPUTS:
        raise ScoreInputError(f"{names['x']}: {count_of(n, 'output')}; at least {MIN_OUTPUTS} are needed "
                              "(FID, KID and precision/recall are statistics of a set)")
    if targets is None:
        raise ScoreInputError(f"{names['targets']}: no targets; give the class each output was optimized "
                              f"toward, one per output (0..{dom.num_classes - 1})")
    ya = _check_targets(dom, targets, n, names["targets"], fields["targets"])
    sa = None
    if start is not None:
        sa = _check_values(dom, start, names["start"], fields["start"])
        if sa.shape != xa.shape:
            raise ScoreInputError(f"{names['start']}: {count_of(len(sa), 'starting point')} for "
                                  f"{count_of(n, 'output')}; expected one per output, shape {xa.shape}")
    return (torch.from_numpy(xa), torch.from_numpy(ya),
            None if sa is None else torch.from_numpy(sa))


# -- reading files --------------------------------------------------------------------------

def _without_path(e: Exception) -> str:
    """The file readers' messages name the suite field `path`; here the file is named."""
    return str(e).removeprefix("path: ")


def read_targets_file(path: str | Path) -> np.ndarray:
    """Targets from a .npy array or a .txt of numbers (whitespace, newlines or commas)."""
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"--targets: no such file {path}; expected a .npy or .txt of target classes")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as e:   # an object array, a damaged or foreign file
            raise ScoreInputError(f"{path}: cannot be read as a numeric .npy array ({type(e).__name__}: "
                                  f"{e}); save it with np.save(path, np.asarray(y, dtype=np.int64))") from None
    if path.suffix.lower() == ".txt":
        tokens = path.read_text(errors="replace").replace(",", " ").split()
        values = []
        for i, tok in enumerate(tokens):
            try:
                values.append(float(tok))
            except ValueError:
                raise ScoreInputError(f"{path}: entry {i} is {tok!r}, not a number; expected one target "
                                      "class per output, separated by spaces, commas or newlines") from None
        return np.asarray(values)
    raise ScoreInputError(f"--targets: {path} is neither .npy nor .txt; save the targets with "
                          "np.save(path, y) or one number per line")


def _class_of_folders(folders: list[Path], dom: Domain) -> list[int]:
    """Each class folder's class: its name if it is a class number, else (for a domain
    read from an image folder) the index of the domain's own class folder of that name."""
    names = [f.name for f in folders]
    if all(n.isdigit() for n in names):
        classes = [int(n) for n in names]
        bad = [f for f, c in zip(folders, classes) if c >= dom.num_classes]
        if bad:
            raise ScoreInputError(f"{bad[0]}: class folder {bad[0].name!r} is outside {dom.name}'s classes "
                                  f"0..{dom.num_classes - 1}; name each folder by the target class of its images")
        return classes
    own = []
    if getattr(dom, "data", None) == "image_folder":   # a FileDomain: its classes are its folders' names
        own = sorted(p.name for p in dom.path.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [f for f in folders if f.name not in own]
    if unknown:
        allowed = f"0..{dom.num_classes - 1}" + (f" or {', '.join(own)}" if own else "")
        raise ScoreInputError(f"{unknown[0]}: class folder {unknown[0].name!r} is not a class of {dom.name}; "
                              f"name each folder by the target class of its images ({allowed})")
    return [own.index(f.name) for f in folders]


def read_output_folder(root: Path, dom: Domain, targets_file=None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(x, targets or None, how errors name the targets) from an image folder: one
    subfolder per target class (named by its number, or by the domain's own class
    folder names), or a flat folder of images with --targets in sorted file-name order."""
    from optbench.domains.files import IMAGE_SUFFIXES, read_image

    def images(folder: Path) -> list[Path]:
        return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
                      and f.suffix.lower() in IMAGE_SUFFIXES)

    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = images(root)
    if subfolders and loose:
        raise ScoreInputError(f"{root}: holds both images ({loose[0].name}, ...) and class folders "
                              f"({subfolders[0].name}, ...); put every image in the folder of its target "
                              "class, or use a flat folder of images with --targets")
    if subfolders:
        if targets_file is not None:
            raise ScoreInputError(f"--targets: {root} has class folders, which give the targets; give them once "
                                  "(drop --targets, or use a flat folder of images)")
        classes = _class_of_folders(subfolders, dom)
        files, labels = [], []
        for folder, c in zip(subfolders, classes):
            found = images(folder)
            files += found
            labels += [c] * len(found)
        y, targets_name = np.asarray(labels, dtype=np.int64), f"{root}: class folders"
    else:
        files, y, targets_name = loose, None, str(targets_file) if targets_file else f"{root}: targets"
    if not files:
        raise ScoreInputError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}); expected the outputs as "
                              "images, one subfolder per target class")
    xs = []
    for f in files:
        try:
            a = read_image(f)
        except DomainError as e:
            raise ScoreInputError(_without_path(e)) from None
        if dom.is_image and dom.shape[0] == 3 and a.shape[0] == 1:   # gray among colour: Pillow's RGB
            a = np.repeat(a, 3, axis=0)
        if tuple(a.shape) != tuple(dom.shape):
            c, h, w = a.shape
            want = dom.shape
            raise ScoreInputError(f"{f}: a {h}x{w} image with {count_of(c, 'channel')}; {dom.name}'s examples are "
                                  + (f"{want[1]}x{want[2]} with {count_of(want[0], 'channel')}" if dom.is_image
                                     else f"vectors of shape {want}, not images")
                                  + "; resize or convert the outputs to the domain's shape")
        xs.append(a)
    return np.stack(xs), y, targets_name


def read_outputs(path: str | Path, domain, targets_file: str | Path | None = None) -> dict:
    """The outputs in `path` (an .npz with x, y and optionally start; or an image folder)
    as {"x", "targets", "start", "names"}: arrays not yet checked, and how errors name
    each field."""
    from optbench.domains.files import _check_npz_file, _npz_array
    dom = get_domain(domain)
    path = Path(path)
    if not path.exists():
        raise ScoreInputError(f"OUTPUTS: no such file or folder {path}; expected an .npz (x, y) or an image folder")
    targets = read_targets_file(targets_file) if targets_file is not None else None
    if path.is_dir():
        x, y, targets_name = read_output_folder(path, dom, targets_file)
        return {"x": x, "targets": y if y is not None else targets, "start": None,
                "names": {"x": f"{path}: images", "targets": targets_name}}
    try:
        _check_npz_file(path)
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data.files:
                raise ScoreInputError(f"{path}: no array 'x'; it has {', '.join(data.files) or 'none'}; save the "
                                      "outputs as np.savez(path, x=x, y=targets)")
            arrays = {k: _npz_array(data, k, path) for k in ("x", "y", "start") if k in data.files}
    except DomainError as e:
        raise ScoreInputError(_without_path(e)) from None
    except Exception as e:   # zipfile's and numpy's errors of a damaged archive
        raise ScoreInputError(f"{path}: cannot be read as an .npz archive ({type(e).__name__}: {e}); save it "
                              "again with np.savez(path, x=x, y=targets)") from None
    if "y" in arrays and targets is not None:
        raise ScoreInputError(f"--targets: {path} already holds the targets (array y); give them once "
                              "(drop --targets, or save the .npz without y)")
    if "y" not in arrays and targets is None:
        raise ScoreInputError(f"{path}: no array 'y' and no --targets; give the class each output was "
                              f"optimized toward: save np.savez(path, x=x, y=targets) or pass --targets FILE")
    names = {"x": f"{path}: x", "targets": f"{path}: y" if "y" in arrays else f"{targets_file}: targets",
             "start": f"{path}: start"}
    return {"x": arrays["x"], "targets": arrays.get("y", targets), "start": arrays.get("start"), "names": names}


# -- scoring --------------------------------------------------------------------------------

def reads_proxy(key: str) -> bool:
    """Whether a value is the proxy's read-out (or compares with it, or is a detector
    reading only the proxy's side)."""
    name = base_name(key)
    m = METRICS[name] if name in METRICS else None
    if m is None and key.endswith("_agree"):
        return True   # a judge's agreement with the proxy ("<judge>_agree")
    return m is not None and (m.name in PROXY_READOUTS or m.role == "detector")


def _proxy_for(dom: Domain, proxy, device, referee=None):
    """(Proxy, its name or None). Without one, the first judge stands in, so the referee
    can run; every value that reads the proxy is then left out."""
    from optbench.models.checkpoints import load_model
    from optbench.proxies import as_proxy
    from optbench.referees import load_proxy
    if proxy is None:
        if referee is not None:
            return referee.proxy, None
        return as_proxy(load_model(dom, dom.judges[0], device), "classifier"), None
    if isinstance(proxy, str):
        if referee is not None and getattr(referee.proxy, "name", "") == proxy:
            return referee.proxy, proxy
        return load_proxy(dom, proxy, device), proxy
    p = as_proxy(proxy)
    return p, getattr(p, "name", "") or type(getattr(p, "model", p)).__name__


def _check_proxy_name(dom: Domain, proxy) -> None:
    """A named proxy must be in the domain's catalog and must not be one of its referees."""
    if not isinstance(proxy, str):
        return
    refereeing = referee_as_proxy_error(dom, proxy)
    if refereeing:
        raise ScoreInputError(f"--proxy: {refereeing}")
    from optbench.errors import CheckpointError
    from optbench.models.checkpoints import model_entry
    try:
        model_entry(dom, proxy)   # an unknown name fails here, naming the allowed ones
    except CheckpointError as e:
        raise ScoreInputError(f"--proxy: {e}") from None


def reading(key: str, value: float, null: dict) -> dict:
    """The departure reading of one value: its side, its null's threshold (q99 or q01 at
    this n), the null's mean and std, and whether the value lies beyond the threshold."""
    from optbench.referees.null import departed
    side, entry = departure_side(key), null[key]
    m = METRICS[base_name(key)]
    out = {"side": side, "null": m.null, "threshold": entry["q99"] if side == "high" else entry["q01"],
           "null_mean": entry["mean"], "null_std": entry["std"], "draws": entry.get("draws"),
           "departed": None if not math.isfinite(value) else bool(departed(null, key, value))}
    if "law" in entry:
        out["law"] = entry["law"]
    return out


def score(x, targets, domain, proxy=None, start=None, *, referee=None, device=None,
          names: dict[str, str] | None = None) -> dict:
    """Every referee metric of the domain on the outputs `x` (the domain's shape, in its
    bounds; uint8 scaled to [0, 1]) optimized toward `targets` (one class per output, or
    one for all), with `start` (their starting points, same shape) for the distances,
    and each metric's departure reading against its real-against-real null at n =
    len(x). `proxy`: a model name of the domain (or a Proxy) whose read-outs are added.
    `referee`: a built Referee of the domain to reuse. Returns the dict score.json holds
    (NaN where a value is undefined)."""
    import optbench
    from optbench.referees import Referee
    from optbench.referees.null import max_null_n, null_splits
    dom = get_domain(domain)
    xt, yt, st = check_outputs(dom, x, targets, start, names)
    _check_proxy_name(dom, proxy)
    if referee is not None and referee.domain != dom.name:
        raise ValueError(f"referee: built for domain {referee.domain!r}, not {dom.name!r}")
    n = len(xt)
    # Checked before any model is loaded: a null needs n at most half the null pool.
    most = max_null_n(dom)
    if device in (None, "auto"):
        device = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    p, proxy_name = _proxy_for(dom, proxy, device, referee)
    if referee is None:
        referee = Referee(dom, p, device)
    values = referee.evaluate(xt, yt, st, p)   # as a cell's level: CPU tensors, models on their device
    if proxy_name is None:
        values = {k: v for k, v in values.items() if not reads_proxy(k)}
    if n > most:
        null, null_info = {}, {"n": n, "available": False,
                               "why": f"n = {n} is more than {most}, half of {dom.name}'s null pool "
                                      f"({' + '.join(null_splits(dom))}); score at most {most} outputs for a "
                                      "departure reading"}
    else:
        null = referee.null(n, p)
        first = next(iter(null.values()), {})
        null_info = {"n": n, "available": True, "draws": first.get("draws"), "pool": list(null_splits(dom)),
                     "reference": "reference"}
    readings = {k: reading(k, v, null) for k, v in values.items() if departure_side(k) and k in null}
    departed_keys = [k for k, r in readings.items() if r["departed"]]
    classes = np.bincount(yt.numpy(), minlength=dom.num_classes)
    return {"schema": SCHEMA, "optbench": optbench.__version__, "domain": dom.name, "n": n, "source": None,
            "proxy": proxy_name, "start": st is not None, "feature_spaces": list(referee.spaces),
            "targets": {str(c): int(k) for c, k in enumerate(classes) if k},
            "metrics": values, "departure": readings, "departed": departed_keys,
            "verdict": {"departed": len(departed_keys), "read": sum(r["departed"] is not None for r in readings.values())},
            "null": null_info}


# -- writing --------------------------------------------------------------------------------

def _jsonable(v):
    """Strict JSON, as results.json writes it (report/results.py): NaN -> null, an
    infinity -> "inf" / "-inf", so a reader in any language parses the file."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def score_markdown(result: dict) -> str:
    """score.md: the verdict, every departure reading, then the other values."""
    v, info = result["verdict"], result["null"]
    lines = [f"# optbench score: {md_text(result.get('source') or 'outputs', in_table=False)}", "",
             f"Domain {md_code(result['domain'])}, {result['n']} outputs, proxy "
             f"{md_code(result['proxy']) if result['proxy'] else 'none (referees only)'}, starting points "
             f"{'given' if result['start'] else 'not given (distances n/a)'}.", ""]
    if info["available"]:
        lines += [f"**Off the data by {v['departed']} of {v['read']} metrics** with a real-against-real null: "
                  f"beyond the null's 99th percentile (1st for metrics where low means departed), from "
                  f"{info['draws']} sets of {result['n']} real examples of {' + '.join(info['pool'])} scored "
                  "against the reference split, the same reading a cell's pressure level gets.", "",
                  "| metric | value | departs | threshold | null mean | off the data |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for k, r in result["departure"].items():
            op = ">" if r["side"] == "high" else "<"
            off = "n/a" if r["departed"] is None else ("**yes**" if r["departed"] else "no")
            lines.append(f"| {md_text(k)} | {_num(result['metrics'][k])} | {r['side']} | {op} {_num(r['threshold'])} "
                         f"| {_num(r['null_mean'])} | {off} |")
    else:
        lines.append(f"No departure reading: {md_text(info['why'], in_table=False)}.")
    rest = [k for k in result["metrics"] if k not in result["departure"]]
    lines += ["", "Other values (read-outs, diagnostics, distances):", "", "| value | |", "| --- | --- |"]
    lines += [f"| {md_text(k)} | {_num(result['metrics'][k])} |" for k in rest]
    return "\n".join(lines) + "\n"


def write_score(result: dict, out: str | Path) -> tuple[Path, Path]:
    """score.json and score.md in the folder `out` (created), each written whole."""
    from optbench.storage import write_atomic
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a folder (created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "score.json", out / "score.md"
    write_atomic(js, json.dumps(_jsonable(result), indent=1, allow_nan=False) + "\n")
    write_atomic(md, score_markdown(result))
    return js, md


def score_file(path: str | Path, domain, targets_file=None, proxy=None, device=None) -> dict:
    """score() of the outputs in a file or folder (read_outputs), with `source` set."""
    dom = get_domain(domain)
    found = read_outputs(path, dom, targets_file)
    result = score(found["x"], found["targets"], dom, proxy, found["start"], device=device, names=found["names"])
    return {**result, "source": str(path)}
