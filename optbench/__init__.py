"""optbench: how fast optimized outputs leave the data distribution as optimization
pressure rises against a learned model.

The Python API (the `optbench` command only wraps it):

    from optbench import load_suite, run_suite, write_suite_outputs
    suite = load_suite("benchmarks/quick.toml")
    run_suite(suite, "results")                 # resumable; skips complete cells
    write_suite_outputs("results/quick")        # summary.md, curves.csv, plots/
"""
__version__ = "0.1.0"

from optbench.models.checkpoints import load_model  # noqa: E402
from optbench.pressure.pixel_ascent import pixel_ascent  # noqa: E402
from optbench.referees import Referee  # noqa: E402
from optbench.report import write_suite_outputs  # noqa: E402
from optbench.runner import compute_cell, run_suite  # noqa: E402
from optbench.suite import CellSpec, SuiteError, load_suite, parse_suite  # noqa: E402

__all__ = ["CellSpec", "Referee", "SuiteError", "compute_cell", "load_model", "load_suite",
           "parse_suite", "pixel_ascent", "run_suite", "write_suite_outputs"]
