"""optbench: how fast optimized outputs leave the data distribution as optimization
pressure rises against a learned model.

The Python API (the `optbench` command only wraps it):

    from optbench import load_suite, run_suite, write_suite_outputs
    suite = load_suite("benchmarks/quick.toml")
    run_suite(suite, "results")                 # resumable; skips complete cells
    write_suite_outputs("results/quick")        # summary.md, curves.csv, plots/
"""
__version__ = "0.3.0"   # the one place: pyproject.toml reads it (dynamic version)

# Names load on first use (PEP 562): `import optbench.cli` or a spawned pool worker then
# starts without importing torch, and a worker can arm its parent-death guard at once.
_API = {"load_model": "optbench.models.checkpoints", "pixel_ascent": "optbench.pressure.pixel_ascent",
        "Referee": "optbench.referees", "write_suite_outputs": "optbench.report",
        "compute_cell": "optbench.runner", "run_suite": "optbench.runner",
        "CellSpec": "optbench.suite", "SuiteError": "optbench.suite", "load_suite": "optbench.suite",
        "parse_suite": "optbench.suite", "evaluate": "optbench.card",
        "score": "optbench.scoring",   # outputs made elsewhere, read by the domain's referees
        # plug-in points (README "Architecture")
        "Domain": "optbench.domains", "DOMAINS": "optbench.domains", "get_domain": "optbench.domains",
        "Source": "optbench.pressure", "Setting": "optbench.pressure", "Trajectory": "optbench.pressure",
        "Level": "optbench.pressure", "Context": "optbench.pressure",
        "SOURCES": "optbench.pressure", "Metric": "optbench.metrics",
        "METRICS": "optbench.referees",   # the registry, with the built-in metrics loaded
        "Proxy": "optbench.proxies", "PROXY_KINDS": "optbench.proxies"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'optbench' has no attribute {name!r}")
