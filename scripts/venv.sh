# Sourced by the README's two commands: create .venv or reuse it, and install optbench
# with the tested pins (constraints.txt) once per change of pyproject.toml/constraints.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.optbench-installed 2>/dev/null)" != "$stamp" ]; then
    echo "setting up .venv (first run: about 2 minutes; log in .venv/install.log)"
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -c constraints.txt -e ".[test]" &&
           # Reference implementations the tests compare against, without their pins
           # (torchattacks would downgrade half the environment): DESIGN.md, pitfalls.
           .venv/bin/python -m pip install --no-deps -c constraints.txt torchattacks torch-lucent; } \
         > .venv/install.log 2>&1; then
        tail -30 .venv/install.log
        echo "installing optbench into .venv failed; full log: .venv/install.log" >&2
        exit 1
    fi
    echo "$stamp" > .venv/.optbench-installed
fi
