"""The `optbench` command: a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_train(a) -> int:
    from optbench.models.train import RECIPES, train_domain
    if a.domain not in RECIPES:
        raise ValueError(f"domain: unknown value {a.domain!r}; allowed: {', '.join(RECIPES)}")
    train_domain(a.domain, only=a.only, root=a.out)
    return 0


def _cmd_run(a) -> int:
    from optbench.report import write_suite_outputs
    from optbench.runner import run_suite
    from optbench.suite import load_suite
    suite = load_suite(a.suite)
    counts = run_suite(suite, Path(a.out), force=a.force, device=a.device, command=a.command,
                       workers=a.workers, executor=a.executor, address=a.address,
                       gpus_per_cell=a.gpus_per_cell)
    print(f"{suite.name}: {counts['computed']} computed, {counts['skipped']} skipped, "
          f"{counts['failed']} failed in {counts['seconds']}s")
    if counts["computed"] + counts["skipped"]:
        write_suite_outputs(Path(a.out) / suite.name)
        print(f"wrote {Path(a.out) / suite.name}/summary.md, curves.csv and plots/")
    return 1 if counts["failed"] else 0


def _cmd_plot(a) -> int:
    from optbench.report import write_suite_outputs
    info = write_suite_outputs(Path(a.results))
    print(f"{a.results}: {info['cells']} cells, {info['curves']} curves; "
          "wrote summary.md, curves.csv, plots/, report.md, report.html")
    return 0


def _cmd_report(a) -> int:
    from optbench.report import write_suite_outputs
    write_suite_outputs(Path(a.results))
    print(f"wrote {a.results}/report.md and {a.results}/report.html")
    return 0


def _cmd_compare(a) -> int:
    from optbench.report import write_comparison
    out = write_comparison([Path(r) for r in a.results], Path(a.out))
    print(f"wrote {out}/equal_proxy.md and equal_proxy.png")
    return 0


def _cmd_list(a) -> int:
    from optbench.domains import DOMAINS
    from optbench.models.checkpoints import CheckpointError, read_manifest
    from optbench.pressure import SOURCES
    from optbench.referees import METRICS
    if a.what in ("domains", "all"):
        print("domains:")
        for name, mod in DOMAINS.items():
            print(f"  {name}: splits " + ", ".join(f"{k} {v * mod.NUM_CLASSES}" for k, v in
                                                   mod.SPLITS_PER_CLASS.items()))
            try:
                for m, e in read_manifest(name)["models"].items():
                    quality = (f"test accuracy {e['test_accuracy']}" if "test_accuracy" in e else
                               f"KID {e['sample_quality_1000']['kid']}" if "sample_quality_1000" in e else
                               f"final loss {e['final_loss']}" if "final_loss" in e else "")
                    print(f"    model {m}: {e['arch']}, {quality + ', ' if quality else ''}"
                          f"trained on {e['recipe']['split']}")
            except CheckpointError as e:
                print(f"    ({e})")
    if a.what in ("sources", "all"):
        print("pressure sources:")
        for s in SOURCES.values():
            print(f"  {s.name} (knob: {s.knob}; pressure: {s.pressure}): {s.doc}")
            for k, st in s.settings.items():
                allowed = f" one of {', '.join(st.allowed)}" if st.allowed else ""
                print(f"    {k} = {st.default!r}  {st.kind.__name__}{allowed}  {st.doc}")
    if a.what in ("metrics", "all"):
        print("metrics:")
        for k, v in METRICS.items():
            print(f"  {k}: {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="optbench", description=__doc__)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a domain's proxy, judges and feature net")
    t.add_argument("domain")
    t.add_argument("--only", nargs="+", help="train only these models")
    t.add_argument("--out", type=Path, default=None, help="checkpoint root (default: the package's)")
    t.set_defaults(fn=_cmd_train)
    r = sub.add_parser("run", help="run a suite file; skips complete cells")
    r.add_argument("suite")
    r.add_argument("--out", default="results", help="results root (default: results)")
    r.add_argument("--force", action="store_true", help="recompute complete cells too")
    r.add_argument("--workers", type=int, default=1,
                   help="run cells in a local process pool of N workers (threads are divided among them)")
    r.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (in-process or --workers pool) or ray")
    r.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. auto); default: start a local Ray")
    r.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs each Ray task asks for")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
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
    a = p.parse_args(argv)
    a.command = " ".join(["optbench", *argv])
    from optbench.runner import setup_torch
    setup_torch(a.threads)
    from optbench.models.checkpoints import CheckpointError
    from optbench.suite import SuiteError
    try:
        return a.fn(a)
    except (SuiteError, CheckpointError, ValueError, RuntimeError) as e:
        print(f"optbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
