"""Kill a running suite with SIGKILL at several moments, rerun it to completion, and
check that the results equal an uninterrupted run's, with no partial files left.

    .venv/bin/python benchmarks/kill_resume.py SUITE.toml --moments 2.5 4 6 [--reference DIR]

Without --reference it first makes an uninterrupted run to compare with. Exit code 0
when every cell's curve.json matches; tests/test_runner.py runs the same check."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_cmd(suite: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "optbench.cli", "--threads", "1", "run", str(suite),
            "--out", str(out), "--device", "cpu"]


def kill_and_resume(suite: Path, out: Path, moments: list[float]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in moments:
        proc = subprocess.Popen(run_cmd(suite, out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(run_cmd(suite, out), check=True, capture_output=True, env=env)


def compare(out_suite: Path, ref_suite: Path) -> list[str]:
    """Problems found: leftover temporary files, incomplete or differing cells."""
    from optbench.storage import cell_is_complete
    problems = [f"leftover {p.name}" for p in out_suite.iterdir()
                if p.name.startswith(".") and p.name != ".lock"]   # the lock file stays, unlocked
    for cell in json.loads((ref_suite / "suite.json").read_text())["cells"]:
        if not cell_is_complete(out_suite / cell):
            problems.append(f"{cell}: incomplete")
        elif (json.loads((out_suite / cell / "curve.json").read_text())
              != json.loads((ref_suite / cell / "curve.json").read_text())):
            problems.append(f"{cell}: curve differs")
    return problems


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("suite", type=Path)
    p.add_argument("--moments", type=float, nargs="+", default=[2.5, 4.0, 6.0])
    p.add_argument("--reference", type=Path, help="results/<suite> of an uninterrupted run")
    a = p.parse_args()
    from optbench.suite import load_suite
    name = load_suite(a.suite).name
    with tempfile.TemporaryDirectory() as d:
        ref = a.reference
        if ref is None:
            subprocess.run(run_cmd(a.suite, Path(d) / "ref"), check=True, capture_output=True)
            ref = Path(d) / "ref" / name
        kill_and_resume(a.suite, Path(d) / "killed", a.moments)
        problems = compare(Path(d) / "killed" / name, ref)
    print("\n".join(problems) or f"identical after kills at {a.moments} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
