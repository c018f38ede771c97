# Sourced by the README's two commands: create .venv or reuse it, and install optbench
# with the tested pins (constraints.txt) once per change of pyproject.toml/constraints.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.optbench-installed 2>/dev/null)" != "$stamp" ]; then
    echo "setting up .venv (first run: about 2 minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
    echo "$stamp" > .venv/.optbench-installed
fi
