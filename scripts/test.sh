#!/usr/bin/env bash
# The test suite: set up .venv if needed, then run pytest (1 torch thread per process).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python -m pytest -q "$@"
