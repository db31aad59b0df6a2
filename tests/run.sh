#!/usr/bin/env bash
# Sets up the test environment and runs the whole suite: bash tests/run.sh [pytest args]
# - a virtual environment in .venv (VENV=... to choose another),
# - torch 2.13.0 (CPU), this package and pytest, pinned by tests/constraints.txt,
# - Meta's sam2==1.1.0 as the parity reference (test-only; it is never imported at run time),
# - ultralytics, without its dependencies, whose label checker validates the YOLO files,
# - nbclient, nbformat and ipykernel, which run the notebooks in notebooks/ (tests/test_notebooks.py),
# - ruff, the linter (ruff.toml), run on the whole repository before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --constraint tests/constraints.txt)
"${PIP[@]}" torch==2.13.0 setuptools wheel
"${PIP[@]}" --no-build-isolation ".[test]"
"$PY" -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation sam2==1.1.0
"${PIP[@]}" nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0
"${PIP[@]}" ruff==0.17.5
# last: installed without its dependencies, it would make every later install print pip's
# "dependency conflicts" ERROR about them
"${PIP[@]}" --no-deps ultralytics==8.4.190
"$PY" -m ruff check .
exec "$PY" -m pytest tests "$@"
