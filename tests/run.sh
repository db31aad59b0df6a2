#!/usr/bin/env bash
# Sets up the test environment and runs the whole suite: bash tests/run.sh [pytest args]
# - a virtual environment in .venv (VENV=... to choose another),
# - torch 2.13.0 (CPU), this package with its test and Ray extras, pinned by tests/constraints.txt,
# - Meta's sam2==1.1.0 as the parity reference, with its torchvision and hydra, in $VENV/reference:
#   outside site-packages, so that they cannot break the tool (transformers imports torchvision
#   whenever it finds it); only tests/meta_reference.py puts that folder on sys.path,
# - ultralytics, without its dependencies, whose checkers validate the YOLO files; in the same
#   folder, since it reads torchvision's version when imported,
# - nbclient, nbformat and ipykernel, which run the notebooks in notebooks/ (tests/test_notebooks.py),
# - ruff, the linter (ruff.toml), run on the whole repository before the tests,
# - pytest-xdist (the test extra): the suite runs on two workers, TEST_WORKERS=N for another count.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --constraint tests/constraints.txt)
"${PIP[@]}" torch==2.13.0 setuptools wheel
"${PIP[@]}" --no-build-isolation ".[test,ray]"
REFERENCE="$VENV/reference"
# a venv made before kept the reference in site-packages, where it broke the tool: move it out
if "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchvision') is None)"; then
  "$PY" -m pip uninstall --quiet --yes sam2 torchvision hydra-core omegaconf iopath ultralytics
fi
[ -d "$REFERENCE/sam2" ] || SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation --no-deps --target "$REFERENCE" \
  sam2==1.1.0 torchvision==0.28.0 hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 \
  iopath==0.1.10 portalocker==4.4.2
[ -d "$REFERENCE/ultralytics" ] || "${PIP[@]}" --no-deps --target "$REFERENCE" ultralytics==8.4.190
"${PIP[@]}" nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0
"${PIP[@]}" ruff==0.17.5
"$PY" -m ruff check .
# two workers (pytest-xdist), a test file on one worker (tests/conftest.py); -n 0 runs serially
exec "$PY" -m pytest tests -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
