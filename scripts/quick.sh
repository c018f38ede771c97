#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the quick suite on the shipped
# checkpoints (no training) and write results/quick/ with its summary and plots.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
.venv/bin/optbench --threads "${OPTBENCH_THREADS:-2}" run benchmarks/quick.toml --force "$@"
