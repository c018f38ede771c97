#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the quick suite on the shipped
# checkpoints (no training) and write results/quick/ with its summary and plots.
# Two worker processes with one torch thread each: as fast as 2 threads, and the numbers
# do not depend on the thread count.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
.venv/bin/optbench run benchmarks/quick.toml --force --workers "${OPTBENCH_WORKERS:-2}" "$@"
