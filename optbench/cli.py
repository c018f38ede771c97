"""The `optbench` command: a thin wrapper over the Python API.

Every error is one line on stderr, `optbench: error: ...`, naming the file, field or flag
and what is allowed. Exit codes:
  0    success
  1    one or more cells failed (the others are kept; rerun to retry the failed ones)
  2    bad input: a suite file, checkpoint manifest, flag or path
  3    cannot write results (read-only folder, full disk, ...)
  4    the results folder is in use by another optbench process
  130  interrupted; complete cells are kept, rerun to resume

A suite file runs code: its plug-ins and 'module:attr' names are imported while it is
read. Run only suite files you trust.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import re
import sys
from pathlib import Path

EXIT_FAILED_CELLS, EXIT_BAD_INPUT, EXIT_CANNOT_WRITE, EXIT_BUSY, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
# Errors that can only come from writing, wherever they are raised.
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


class _UsageError(Exception):
    """A bad command line; main prints it as the one error line."""


class _Parser(argparse.ArgumentParser):
    """argparse prints a usage block and exits; we want one line and an exit code from
    main (the message already names the argument and, for choices, the allowed values)."""

    def error(self, message):
        raise _UsageError(message)


def _int_at_least_1(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _finite_at_least_0(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


@contextlib.contextmanager
def _writing(what: Path):
    """OSErrors while writing outputs mean "cannot write" (exit 3), not bad input."""
    from optbench.storage import StorageError
    try:
        yield
    except OSError as e:
        raise StorageError(f"cannot write {e.filename or what}: {e.strerror or e}") from None


def _check_device(device: str | None) -> None:
    """Refuse a device this machine lacks now, not as every cell failing in 0.0s."""
    import torch
    here = ["auto", "cpu"]
    if torch.cuda.is_available():
        here += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        here.append("mps")
    if device is None or device in here:
        return
    allowed = f"allowed here: {', '.join(here)}"
    if not re.fullmatch(r"cuda(:\d+)?|mps", device):
        raise ValueError(f"--device: unknown value {device!r}; {allowed} "
                         "(in general: auto, cpu, cuda, cuda:N, mps)")
    why = ("torch.backends.mps.is_available() is False" if device == "mps" else
           "torch.cuda.is_available() is False" if not torch.cuda.is_available() else
           f"torch.cuda.device_count() is {torch.cuda.device_count()}")
    raise ValueError(f"--device: {device!r} is not available on this machine ({why}); {allowed}")


def _results_folder(path: str) -> Path:
    """A results/<suite> folder, checked before the report code reads it."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"results: no such folder: {p}")
    if not p.is_dir():
        raise ValueError(f"results: {p} is a file; expected a results/<suite> folder")
    if not (p / "suite.json").is_file() and not any((c / "spec.json").is_file()
                                                     for c in p.iterdir() if c.is_dir()):
        raise ValueError(f"results: {p} holds no optbench results; expected a results/<suite> "
                         "folder written by `optbench run`")
    return p


def _cmd_train(a) -> int:
    from optbench.training import train_domain
    if a.suite:
        from optbench.suite import load_context
        load_context(a.suite)
    train_domain(a.domain, only=a.only, root=a.out)
    return 0


def _cmd_export(a) -> int:
    from optbench.domains.export import export_splits
    if a.suite:
        from optbench.suite import load_context
        load_context(a.suite)
    with _writing(Path(a.out)):
        files = export_splits(a.domain, a.out, a.splits)
    for f in files:
        print(f)
    return 0


def _cmd_splits(a) -> int:
    """A domain's splits: what reads each (no flag), --check FILE (training data must not
    hold a test or reference example), --export DIR (`export` is its older name)."""
    from optbench.domains import get_domain
    from optbench.domains.hygiene import SPLIT_USES, check_training_file, overlap_error
    if a.suite:
        from optbench.suite import load_context
        load_context(a.suite)
    if a.splits and not a.export:
        raise ValueError("--splits: chooses what --export writes; add --export DIR")
    dom = get_domain(a.domain)
    if not a.check and not a.export:
        sizes = dom.split_sizes()
        print(f"{dom.name}: {dom.num_classes} classes, shape {dom.shape}")
        for s, k in sizes.items():
            print(f"  {s}: {k} examples; {SPLIT_USES.get(s, '')}")
    if a.check:
        found = check_training_file(dom, a.check)
        problem = overlap_error(found, a.check)
        if problem:
            raise ValueError(problem)
        print(f"{a.check}: {found['n']} rows, none equal to an example of {dom.name}'s "
              + " or ".join(f"{s} split ({k})" for s, k in found["split_sizes"].items()))
    if a.export:
        from optbench.domains.export import export_splits
        with _writing(Path(a.export)):
            files = export_splits(dom.name, a.export, a.splits)
        for f in files:
            print(f)
    return 0


def _score_out(outputs: str, out: str | None) -> Path:
    """--out, or `<outputs>.score/` beside the outputs file or folder."""
    if out:
        return Path(out)
    p = Path(outputs)
    return p.parent / f"{p.stem if p.is_file() else p.name}.score"


def _cmd_score(a) -> int:
    from optbench.scoring import score_file, write_score
    if a.suite:
        from optbench.suite import load_context
        load_context(a.suite)
    _check_device(a.device)
    result = score_file(a.outputs, a.domain, a.targets, a.proxy, a.device)
    out = _score_out(a.outputs, a.out)
    with _writing(out):
        js, md = write_score(result, out)
    v, reads = result["verdict"], result["departure"]
    shown = [f"{k} {result['metrics'][k]:.4g}, {'beyond' if reads[k]['departed'] else 'within'} "
             f"{'q99' if reads[k]['side'] == 'high' else 'q01'} {reads[k]['threshold']:.4g}"
             for k in ("kid", "c2st", "precision") if k in reads]
    verdict = (f"off the data by {v['departed']} of {v['read']} metrics with a null ({'; '.join(shown)})"
               if result["null"]["available"] else f"no departure reading: {result['null']['why']}")
    print(f"{a.outputs}: {result['domain']}, {result['n']} outputs: {verdict}")
    print(f"wrote {js} and {md}")
    return 0


def _say(line: str) -> None:
    """A progress line on stdout, flushed at once: a CI log (stdout not a terminal, so
    block-buffered) shows it when it happens, not when the run ends."""
    print(line, flush=True)


def _cmd_run(a) -> int:
    from optbench.storage import suite_lock
    from optbench.suite import Overrides, load_suite
    if a.executor == "local":   # Ray tasks pick their own device (--gpus-per-cell)
        _check_device(a.device)
    _say(f"reading {a.suite} (every cell and model is checked before any runs) ...")
    overrides = Overrides(seeds=tuple(a.seeds) if a.seeds is not None else None, n_samples=a.n_samples,
                          max_level=a.max_level)
    suite = load_suite(a.suite, overrides)
    out = Path(a.out or "results")
    suite_dir = out / suite.name
    for folder in (out, suite_dir):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out: {folder} is not a folder; give a folder for the results "
                             "(created if missing)")
    if suite.overrides:
        _say(f"overrides: {suite.overrides}; results go to {suite_dir}/"
             + ("" if a.out else ", beside the suite file's own cells, and its summary and plots then "
                                 "cover this run's cells (--out DIR keeps them apart)"))
    if a.dry_run:   # reads only: no folder, lock, model load, training or null
        from optbench.plan import dry_run_lines, plan_run
        for line in dry_run_lines(plan_run(suite, suite_dir, a.force), a.workers):
            _say(line)
        return 0
    from optbench.report import write_suite_outputs   # matplotlib and friends: not for a dry run
    from optbench.runner import run_suite
    with _writing(suite_dir):
        suite_dir.mkdir(parents=True, exist_ok=True)
    with suite_lock(suite_dir):   # one lock over the cells and the outputs made from them
        counts = run_suite(suite, out, force=a.force, device=a.device, command=a.command,
                           workers=a.workers, executor=a.executor, address=a.address,
                           gpus_per_cell=a.gpus_per_cell, threads=a.threads, log=_say)
        print(f"{suite.name}: {counts['computed']} computed, {counts['skipped']} skipped, "
              f"{counts['failed']} failed in {counts['seconds']}s")
        if counts["computed"] + counts["skipped"]:
            _say(f"writing {suite_dir}/summary.md, results.json, curves.csv, plots/ and the report ...")
            with _writing(suite_dir):
                info = write_suite_outputs(suite_dir)
            _warn_left_out(info)
            print(f"wrote {suite_dir}/summary.md, results.json, curves.csv and plots/")
    return EXIT_FAILED_CELLS if counts["failed"] else 0


def _warn_left_out(info: dict) -> None:
    for warning in info.get("warnings", []):
        print(f"optbench: warning: {warning}", file=sys.stderr)
    if info.get("left_out"):
        why = info.get("why_left_out", {})
        cells = ", ".join(f"{c} ({why[c]})" if why.get(c) else c for c in info["left_out"])
        print(f"optbench: warning: {len(info['left_out'])} cell(s) missing, partial or corrupted "
              f"were left out of the summary: {cells}; rerun the suite to recompute them",
              file=sys.stderr)


def _cmd_plot(a) -> int:
    from optbench.report import write_suite_outputs
    results = _results_folder(a.results)
    with _writing(results):
        info = write_suite_outputs(results)
    _warn_left_out(info)
    print(f"{a.results}: {info['cells']} cells, {info['curves']} curves; "
          "wrote summary.md, results.json, curves.csv, plots/, report.md, report.html")
    return 0


def _cmd_report(a) -> int:
    from optbench.report import render_report
    results = _results_folder(a.results)
    with _writing(results):
        info = render_report(results)
    _warn_left_out(info)
    print(f"wrote {info['report']} and {info['html']} (from summary.md and plots/ as they are)")
    return 0


def _cmd_compare(a) -> int:
    from optbench.report import write_comparison
    results = [_results_folder(r) for r in a.results]
    seen = [r.resolve() for r in results]
    twice = next((r for r, p in zip(a.results, seen) if seen.count(p) > 1), None)
    if twice:
        raise ValueError(f"results: {twice} is given twice; give each results folder once")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a folder (created if missing)")
    with _writing(out):
        out = write_comparison(results, out)
    print(f"wrote {out}/equal_proxy.md and equal_proxy.png")
    return 0


# What a model that can never be a proxy is, from its architecture's name (the manifest
# says only how to build it); checked in order.
_MODEL_KINDS = (("noisy", "noise-aware classifier"), ("noisyposterior", "noise-aware classifier"),
                ("unet", "diffusion model"), ("denoiser", "diffusion model"), ("diffusion", "diffusion model"),
                ("generator", "generator"), ("sampler", "generator"), ("ae", "autoencoder"))


def _model_rows(domain: str) -> list[tuple[str, str, str, str, str, str]]:
    """(name, kind, role, arch, sha256 prefix, accuracy) of each model of a domain, for
    `optbench list models`. kind: classifier, realness (a discriminator's one logit),
    generator, diffusion model, noise-aware classifier, autoencoder, feature map. role:
    what the domain and the sources use it as (default proxy, proxy, control, judge,
    judge ensemble member, feature net or space, a source's default model)."""
    from optbench.domains import get_domain, referee_roles
    from optbench.models.checkpoints import catalog, entry_kind
    from optbench.pressure import SOURCES
    from optbench.registry import PluginError
    dom = get_domain(domain)
    referees = referee_roles(dom)
    used_by: dict[str, list[str]] = {}   # model -> "source.setting" whose default names it
    for src in SOURCES.values():
        for k, st in src.settings.items():
            if st.kind is str and isinstance(st.default, str):
                used_by.setdefault(st.default, []).append(f"{src.name}.{k}")
    rows = []
    for m, e in catalog(domain).items():
        arch = e.get("arch") or ("diffusers folder" if "diffusers" in e else "TorchScript")
        try:
            proxy_kind = kind = entry_kind(e)
        except PluginError:   # an architecture from a plug-in this process has not imported
            proxy_kind = kind = None
        recipe = e.get("recipe") if isinstance(e.get("recipe"), dict) else {}
        if kind == "realness":
            kind = "realness (discriminator)"
        elif kind is None:
            low = arch.lower().replace("_", "")
            kind = next((k for key, k in _MODEL_KINDS if key in low), "feature map"
                        if recipe.get("role") == "feature net" else "model")
        if recipe.get("role") == "exact model":
            kind = f"exact {kind}"
        roles = [*referees.get(m, [])]
        if m == dom.default_proxy:
            roles.insert(0, "default proxy")
        elif recipe.get("role") == "control":
            roles.append("control (the proxy's recipe, untrained)")
        elif not roles and proxy_kind in ("classifier", "realness"):
            roles.append("proxy")
        if m in used_by:
            roles.append("default model of " + ", ".join(used_by[m]))
        sha = str(e.get("sha256") or "")[:12] or "-"
        quality = (f"test accuracy {e['test_accuracy']}" if isinstance(e.get("test_accuracy"), (int, float)) else
                   f"KID {e['sample_quality_1000']['kid']}" if isinstance(e.get("sample_quality_1000"), dict)
                   and "kid" in e["sample_quality_1000"] else "")
        rows.append((m, kind, ", ".join(roles) or "not used by default", arch, sha, quality))
    return rows


def _cmd_list(a) -> int:
    from optbench.domains import DOMAINS
    from optbench.errors import message_line
    from optbench.models.checkpoints import catalog
    from optbench.errors import CheckpointError
    from optbench.pressure import SOURCES
    from optbench.referees import METRICS
    if a.what in ("domains", "all"):
        print("domains:")
        for name in DOMAINS:
            try:   # one broken plug-in domain must not hide the others
                dom = DOMAINS[name]
                sizes = dom.split_sizes()
            except (ValueError, RuntimeError) as e:
                print(f"  {name}: cannot be loaded: {message_line(e)}")
                continue
            print(f"  {name}: {dom.num_classes} classes, shape {dom.shape}, splits "
                  + ", ".join(f"{k} {v}" for k, v in sizes.items()))
            try:
                for m, e in catalog(name).items():
                    quality = (f"test accuracy {e['test_accuracy']}" if "test_accuracy" in e else
                               f"KID {e['sample_quality_1000']['kid']}" if "sample_quality_1000" in e else
                               f"final loss {e['final_loss']}" if "final_loss" in e else "")
                    recipe = e.get("recipe", {})
                    trained = (f"trained on {recipe['split']}" if "split" in recipe else
                               recipe.get("notes") or e.get("file", e.get("torchscript", "")))
                    print(f"    model {m}: {e.get('arch', 'TorchScript')}, {quality + ', ' if quality else ''}{trained}")
            except (CheckpointError, ValueError) as e:   # a declared model that cannot be read
                print(f"    ({e})")
    if a.domain and a.what != "models":
        raise ValueError(f"list {a.what}: takes no domain ({a.domain!r}); `optbench list models "
                         f"{a.domain}` lists one domain's models")
    if a.what == "models":
        if a.domain:
            from optbench.domains import get_domain
            get_domain(a.domain)   # an unknown name fails before anything is printed
        names = [a.domain] if a.domain else list(DOMAINS)
        print("models (domain:name  kind; role in the domain; arch; sha256; accuracy):")
        for name in names:
            try:
                rows = _model_rows(name)
            except (CheckpointError, ValueError, RuntimeError) as e:   # a declared model that cannot be read
                if a.domain:
                    raise
                print(f"  {name}: cannot be loaded: {message_line(e)}")
                continue
            width = max((len(r[0]) for r in rows), default=0)
            for m, kind, role, arch, sha, quality in rows:
                print(f"  {name}:{m.ljust(width)}  {kind}; {role}; {arch}; sha256 {sha}"
                      + (f"; {quality}" if quality else ""))
    if a.what in ("sources", "all"):
        print("pressure sources:")
        for s in SOURCES.values():
            print(f"  {s.name} (knob: {s.knob}; pressure: {s.pressure}): {s.doc}")
            for k, st in s.settings.items():
                allowed = f" one of {', '.join(st.allowed)}" if st.allowed else ""
                print(f"    {k} = {st.default!r}  {st.kind.__name__}{allowed}  {st.doc}")
            for k, doc in s.values.items():
                print(f"    value {k}: {doc}")
    if a.what in ("metrics", "all"):
        from optbench.metrics import PACKAGE
        loaded = "det_energy" in METRICS   # a suite's plugins switched them on
        import optbench.detector_metrics as detectors   # the package's opt-in detectors, listed too
        detectors.register()
        print("metrics (kind, role, departure side and null; plug-in: a suite's plugins register it):")
        for k, m in METRICS.items():
            tags = [m.kind, m.role, *([f"departs {m.departs}", f"null {m.null}"] if m.departs else []),
                    *(["every feature space"] if m.every_space else []), *(["per judge"] if m.per_judge else []),
                    *([f"plug-in, version {m.version}"] if k not in PACKAGE else [])]
            print(f"  {k} ({', '.join(tags)}): {m.doc}")
        if not loaded:   # listed, not switched on: cell ids read the registry (optbench/metrics.py)
            detectors.unregister()
    return 0


def _cmd_card(a) -> int:
    from optbench.card import evaluate
    try:
        kwargs = json.loads(a.arch_kwargs)
    except json.JSONDecodeError as e:
        raise ValueError(f"--arch-kwargs: not JSON ({e.msg} at column {e.colno}); give a JSON object, "
                         "e.g. '{\"width\": 32}'") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--arch-kwargs: expected a JSON object of keyword arguments, got {a.arch_kwargs}")
    print(f"optbench card: {a.name} on {a.domain}: checking the model, reading the battery"
          f"{' (quick)' if a.quick else ''} ...", flush=True)
    card = evaluate(domain=a.domain, name=a.name, arch=a.model, weights=a.weights, arch_kwargs=kwargs,
                    torchscript=a.torchscript, kind=a.kind, replicates=tuple(a.replicates),
                    train_data=a.train_data, quick=a.quick, seeds=a.seeds, n_samples=a.n_samples,
                    out=a.out, workers=a.workers, device=a.device, command=a.command,
                    pythonpath=tuple(a.pythonpath), battery=a.battery)
    folder = Path(a.out) / card["suite"]
    print(card["headline"])
    print(f"wrote {folder}/card.json, card.md and card.html")
    return 0


def _cmd_leaderboard(a) -> int:
    from optbench.card.leaderboard import markdown, read_card, with_card
    from optbench.domains import get_domain
    domain = get_domain(a.domain).name
    path = Path(a.board) / f"{domain}.json"
    if not path.is_file():
        raise ValueError(f"--board: no leaderboard {path}; the committed ones are under results/leaderboard/ "
                         "(run from the repository's root, or give --board)")
    board = json.loads(path.read_text())
    if a.add:
        _, md = with_card(board, read_card(a.add))
    else:
        md = markdown(board)
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="optbench", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    from optbench import __version__
    p.add_argument("--version", action="version", version=f"optbench {__version__}")
    p.add_argument("--threads", type=_int_at_least_1, default=None,
                   help="torch threads, per pool worker with --workers (default: torch's; with "
                        "--workers, the cores this process may use divided among the workers)")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a domain's proxy, judges and feature net")
    t.add_argument("domain")
    t.add_argument("--only", nargs="+", help="train only these models")
    t.add_argument("--out", type=Path, default=None, help="checkpoint root (default: the domain's own folder)")
    t.add_argument("--suite", default=None, help="a suite file whose plugins and [domains] declare the domain")
    t.set_defaults(fn=_cmd_train)
    e = sub.add_parser("export", help="the older name of `optbench splits DOMAIN --export DIR`")
    e.add_argument("domain")
    e.add_argument("--out", required=True, help="folder for <domain>_<split>.npz")
    e.add_argument("--splits", nargs="+", default=None,
                   help="which splits (default: the *_train splits; train a proxy on proxy_train, a "
                        "judge on judge_train; test and reference, which the referees read, only by name)")
    e.add_argument("--suite", default=None, help="a suite file whose plugins and [domains] declare the domain")
    e.set_defaults(fn=_cmd_export)
    sp = sub.add_parser("splits", help="a domain's splits: what reads each, --check your training data "
                                       "against test and reference, --export them as .npz (x, y)")
    sp.add_argument("domain")
    sp.add_argument("--export", default=None, metavar="DIR", help="write <DIR>/<domain>_<split>.npz")
    sp.add_argument("--splits", nargs="+", default=None,
                    help="with --export: which splits (default: the *_train splits; train a proxy on "
                         "proxy_train, a judge on judge_train; test and reference, which the referees "
                         "read, only by name)")
    sp.add_argument("--check", default=None, metavar="FILE.npz",
                    help="refuse training data (array x) that holds an example of the test or reference "
                         "split, compared by content")
    sp.add_argument("--suite", default=None, help="a suite file whose plugins and [domains] declare the domain")
    sp.set_defaults(fn=_cmd_splits)
    sc = sub.add_parser("score", help="score outputs made elsewhere with a domain's referees: score.json, score.md",
                        description="Score outputs optimized elsewhere with the domain's referees, as a "
                                    "cell's pressure level is scored, and read each metric against its "
                                    "real-against-real null at the same n.")
    sc.add_argument("outputs", help="an .npz (x; y the target classes; optional start) or an image folder "
                                    "(one subfolder per target class, or flat with --targets)")
    sc.add_argument("--domain", required=True, help="the domain the outputs belong to (optbench list domains)")
    sc.add_argument("--targets", default=None, metavar="FILE",
                    help="target classes (.npy or .txt), one per output in order; for an .npz without y "
                         "or a flat image folder (sorted file names)")
    sc.add_argument("--proxy", default=None, help="a model of the domain: add its read-outs (its probability "
                                                 "of the target, the judges' agreement with it, the gap)")
    sc.add_argument("--out", default=None, metavar="DIR",
                    help="folder for score.json and score.md (default: <outputs>.score beside the outputs)")
    sc.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    sc.add_argument("--suite", default=None, help="a suite file whose plugins and [domains] declare the domain")
    sc.set_defaults(fn=_cmd_score)
    r = sub.add_parser("run", help="run a suite file; skips complete cells",
                       description="Run a suite file; complete cells are skipped. A suite file "
                                   "runs code: its `plugins`, `pythonpath` and 'module:attr' names "
                                   "are imported while it is read, before anything is checked. "
                                   "Run only suite files you trust.")
    r.add_argument("suite")
    r.add_argument("--out", default=None, help="results root (default: results); the suite's cells go "
                                               "to <out>/<suite name>/")
    r.add_argument("--force", action="store_true", help="recompute complete cells too")
    r.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="replace every cell's seeds (e.g. --seeds 0 1 2)")
    r.add_argument("--n-samples", type=int, default=None, metavar="N",
                   help="replace every cell's n_samples (checked as the suite file's: 6.. and what "
                        "the domain's held-out data allows)")
    r.add_argument("--max-level", type=_finite_at_least_0, default=None, metavar="K",
                   help="cap every cell's pressure at K, in its source's own knob: max_steps (ascents, "
                        "fine-tunes), max_generations (searches), pool_size (best_of_n's n, the "
                        "quantilizer's 1/q), guidance scales above K dropped; refused for a source with "
                        "none of these. A cell whose spec changes gets a new id and its label says how")
    r.add_argument("--dry-run", action="store_true",
                   help="print the cells it would compute and those complete (skipped), what it "
                        "would train or compute first, and an estimated time; computes and writes "
                        "nothing")
    r.add_argument("--workers", type=_int_at_least_1, default=1,
                   help="run cells in a local process pool of N workers (threads are divided among them)")
    r.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (in-process or --workers pool) or ray")
    r.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. auto); default: start a local Ray")
    r.add_argument("--gpus-per-cell", type=_finite_at_least_0, default=0.0,
                   help="GPUs each Ray task asks for")
    r.add_argument("--device", default=None,
                   help="auto, cpu, cuda, cuda:N or mps (default: auto, cuda if available)")
    r.set_defaults(fn=_cmd_run)
    pl = sub.add_parser("plot", help="write everything a results folder's cells give: summary.md, "
                                     "results.json, curves.csv, plots/ with the grids, report.md and report.html",
                        description="Recompute a results folder's outputs from its cells: summary.md, "
                                    "results.json, curves.csv, plots/ (with a grid per curve), report.md and "
                                    "the standalone report.html. `optbench run` does this at its end.")
    pl.add_argument("results")
    pl.set_defaults(fn=_cmd_plot)
    rp = sub.add_parser("report", help="render report.md and report.html again from the summary and "
                                       "plots already there (fast; recomputes nothing)",
                        description="Render report.md and the standalone report.html again from the "
                                    "summary.md and plots/ that `optbench plot` (or run) wrote, without "
                                    "recomputing them: after editing the report code, or to rebuild a "
                                    "deleted report. New cells need `optbench plot`.")
    rp.add_argument("results")
    rp.set_defaults(fn=_cmd_report)
    c = sub.add_parser("compare", help="compare suites at equal proxy score: equal_proxy.md (a suite "
                                       "column; each suite's curves apart) and equal_proxy.png")
    c.add_argument("results", nargs="+", help="results folders (results/<suite>)")
    c.add_argument("--out", required=True, help="folder for equal_proxy.md and equal_proxy.png")
    c.set_defaults(fn=_cmd_compare)
    cd = sub.add_parser("card", help="put your classifier or discriminator through a domain's standard "
                                     "battery and write its card (card.json, card.md, card.html)",
                        description="Run the standard battery of a shipped domain (optbench/card/batteries/) "
                                    "against one model and write its card. The model's class is imported "
                                    "(from --pythonpath): run only code you trust.")
    cd.add_argument("--domain", required=True, help="mnist, digits8, gmm2, gmm64 or faces")
    cd.add_argument("--model", default=None, help="the model's class, module:Class (or a registered name)")
    cd.add_argument("--weights", default=None, help="its state_dict() as a .safetensors file")
    cd.add_argument("--arch-kwargs", default="{}", help="the class's keyword arguments, a JSON object")
    cd.add_argument("--torchscript", default=None, help="a torch.jit.save file instead of --model/--weights")
    cd.add_argument("--kind", default=None, choices=["classifier", "realness"],
                    help="classifier (logits) or realness (a discriminator's one logit); default: the "
                         "class's proxy_kind, else classifier")
    cd.add_argument("--name", default="model", help="the model's name in the card (default: model)")
    cd.add_argument("--replicates", nargs="+", default=[],
                    help="more weight files of the same class, trained with other seeds: seed s pushes "
                         "against replicate s, so intervals include training variance")
    cd.add_argument("--train-data", default=None,
                    help="the .npz the model was trained on: refused if it shares rows with the domain's "
                         "test or reference split")
    cd.add_argument("--quick", action="store_true", help="the battery's quick variant (fewer seeds, "
                                                          "lower pressure caps)")
    cd.add_argument("--seeds", nargs="+", type=int, default=None, help="replace the battery's seeds")
    cd.add_argument("--n-samples", type=_int_at_least_1, default=None, help="replace the samples per level")
    cd.add_argument("--out", default="cards", help="cards root (default: cards); the card goes to "
                                                   "<out>/<name>_<domain>[_quick]/")
    cd.add_argument("--workers", type=_int_at_least_1, default=1, help="cells in parallel processes")
    cd.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps")
    cd.add_argument("--battery", default=None,
                    help="another battery file (default: the package's battery for the domain's kind of "
                         "samples, optbench/card/batteries/)")
    cd.add_argument("--pythonpath", nargs="+", default=["."],
                    help="folders to import --model from (default: the current folder)")
    cd.set_defaults(fn=_cmd_card)
    lb = sub.add_parser("leaderboard", help="print a domain's leaderboard, optionally with your card's row")
    lb.add_argument("domain")
    lb.add_argument("--add", default=None, help="a card.json (or its folder) written by `optbench card`")
    lb.add_argument("--board", default="results/leaderboard",
                    help="folder of <domain>.json leaderboards (default: results/leaderboard)")
    lb.set_defaults(fn=_cmd_leaderboard)
    ls = sub.add_parser("list", help="list domains (with their models), models, pressure sources and metrics")
    ls.add_argument("what", nargs="?", default="all", choices=["all", "domains", "models", "sources", "metrics"],
                    help="all (default): domains with their models, sources and metrics; models: one "
                         "line per model with its kind, role, arch, sha256 and accuracy")
    ls.add_argument("domain", nargs="?", default=None, help="with `models`: only this domain's")
    ls.set_defaults(fn=_cmd_list)
    argv = sys.argv[1:] if argv is None else argv
    try:
        a = p.parse_args(argv)
    except _UsageError as e:
        return _fail(EXIT_BAD_INPUT, e)
    a.command = " ".join(["optbench", *argv])
    from optbench.storage import StorageError, SuiteBusyError
    from optbench.workers import setup_torch
    setup_torch(a.threads)
    from optbench.errors import CheckpointError
    from optbench.suite import SuiteError
    try:
        return a.fn(a)
    except KeyboardInterrupt:
        print("optbench: interrupted; complete cells are kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    # Both are RuntimeErrors: they must come before the generic clause below.
    except SuiteBusyError as e:
        return _fail(EXIT_BUSY, e)
    except StorageError as e:
        return _fail(EXIT_CANNOT_WRITE, e)
    except (SuiteError, CheckpointError, ValueError, RuntimeError) as e:
        return _fail(EXIT_BAD_INPUT, e)
    except OSError as e:   # not raised inside _writing: an input that cannot be read, or a full disk
        if e.errno in WRITE_ERRNOS:
            return _fail(EXIT_CANNOT_WRITE, f"cannot write {e.filename or 'results'}: {e.strerror}")
        return _fail(EXIT_BAD_INPUT, f"{e.filename}: {e.strerror}" if e.filename else e)


def _fail(code: int, message) -> int:
    # One line even if a message from deeper code spans several.
    print("optbench: error: " + str(message).replace("\n", " "), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
