#!/usr/bin/env bash
# The test suite: set up .venv if needed, then run pytest (1 torch thread per process).
# With no arguments it then runs the tests marked `kernels` (bit-identity on one machine,
# retrained-checkpoint tolerances) again under a second CPU kernel set: ATen's portable
# kernels (ATEN_CPU_CAPABILITY=default) and, on x86-64, oneDNN limited to SSE4.1. A test
# that only holds with this machine's kernels then fails here, not on a user's machine.
# Tests run in parallel processes (pytest-xdist), one per core up to 4, one torch thread
# each; OPTBENCH_TEST_WORKERS overrides the count (0: in this process).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Cores this process may use (affinity; a container's CPU quota is not seen: set
# OPTBENCH_TEST_WORKERS there). One core: run in this process (0 workers).
cores=$(.venv/bin/python -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1))")
workers=${OPTBENCH_TEST_WORKERS:-$(( cores < 2 ? 0 : cores < 4 ? cores : 4 ))}
.venv/bin/python -m pytest -q -n "$workers" "$@"
if [ $# -eq 0 ] && [ "${ATEN_CPU_CAPABILITY:-}" != default ]; then
    echo "again under a second kernel set (ATEN_CPU_CAPABILITY=default):"
    isa=()
    [ "$(uname -m)" = x86_64 ] && isa=(ONEDNN_MAX_CPU_ISA=SSE41)
    env ATEN_CPU_CAPABILITY=default "${isa[@]}" .venv/bin/python -m pytest -q -n "$workers" -m kernels -p no:cacheprovider
fi
