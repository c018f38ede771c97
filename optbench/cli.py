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


def _cmd_run(a) -> int:
    from optbench.report import write_suite_outputs
    from optbench.runner import run_suite
    from optbench.storage import suite_lock
    from optbench.suite import load_suite
    if a.executor == "local":   # Ray tasks pick their own device (--gpus-per-cell)
        _check_device(a.device)
    suite = load_suite(a.suite)
    suite_dir = Path(a.out) / suite.name
    for folder in (Path(a.out), suite_dir):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out: {folder} is not a folder; give a folder for the results "
                             "(created if missing)")
    with _writing(suite_dir):
        suite_dir.mkdir(parents=True, exist_ok=True)
    with suite_lock(suite_dir):   # one lock over the cells and the outputs made from them
        counts = run_suite(suite, Path(a.out), force=a.force, device=a.device, command=a.command,
                           workers=a.workers, executor=a.executor, address=a.address,
                           gpus_per_cell=a.gpus_per_cell, threads=a.threads)
        print(f"{suite.name}: {counts['computed']} computed, {counts['skipped']} skipped, "
              f"{counts['failed']} failed in {counts['seconds']}s")
        if counts["computed"] + counts["skipped"]:
            with _writing(suite_dir):
                info = write_suite_outputs(suite_dir)
            _warn_left_out(info)
            print(f"wrote {suite_dir}/summary.md, curves.csv and plots/")
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
          "wrote summary.md, curves.csv, plots/, report.md, report.html")
    return 0


def _cmd_report(a) -> int:
    from optbench.report import write_suite_outputs
    results = _results_folder(a.results)
    with _writing(results):
        _warn_left_out(write_suite_outputs(results))
    print(f"wrote {a.results}/report.md and {a.results}/report.html")
    return 0


def _cmd_compare(a) -> int:
    from optbench.report import write_comparison
    results = [_results_folder(r) for r in a.results]
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a folder (created if missing)")
    with _writing(out):
        out = write_comparison(results, out)
    print(f"wrote {out}/equal_proxy.md and equal_proxy.png")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="optbench", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    e = sub.add_parser("export", help="write a domain's splits as .npz (x, y) to train your own models on")
    e.add_argument("domain")
    e.add_argument("--out", required=True, help="folder for <domain>_<split>.npz")
    e.add_argument("--splits", nargs="+", default=None,
                   help="which splits (default: the *_train splits; train a proxy on proxy_train, a "
                        "judge on judge_train; test and reference, which the referees read, only by name)")
    e.add_argument("--suite", default=None, help="a suite file whose plugins and [domains] declare the domain")
    e.set_defaults(fn=_cmd_export)
    r = sub.add_parser("run", help="run a suite file; skips complete cells",
                       description="Run a suite file; complete cells are skipped. A suite file "
                                   "runs code: its `plugins`, `pythonpath` and 'module:attr' names "
                                   "are imported while it is read, before anything is checked. "
                                   "Run only suite files you trust.")
    r.add_argument("suite")
    r.add_argument("--out", default="results", help="results root (default: results)")
    r.add_argument("--force", action="store_true", help="recompute complete cells too")
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
    pl = sub.add_parser("plot", help="summary, plots and grids of a results folder")
    pl.add_argument("results")
    pl.set_defaults(fn=_cmd_plot)
    rp = sub.add_parser("report", help="Markdown and standalone HTML report of a results folder")
    rp.add_argument("results")
    rp.set_defaults(fn=_cmd_report)
    c = sub.add_parser("compare", help="compare suites at equal proxy score")
    c.add_argument("results", nargs="+", help="results folders (results/<suite>)")
    c.add_argument("--out", required=True, help="folder for equal_proxy.md and equal_proxy.png")
    c.set_defaults(fn=_cmd_compare)
    ls = sub.add_parser("list", help="list domains, pressure sources and metrics")
    ls.add_argument("what", nargs="?", default="all", choices=["all", "domains", "sources", "metrics"])
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
