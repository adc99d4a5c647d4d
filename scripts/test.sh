#!/usr/bin/env bash
# Set up (or reuse) the environment, lint with ruff, check types with mypy, and run the whole test suite,
# slow tests included.
# Extra arguments go to pytest (e.g. scripts/test.sh -k yolo).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/setup.sh)
"$VENV/bin/ruff" check .   # lint first (pyproject.toml [tool.ruff]); a finding fails the run
"$VENV/bin/mypy"           # then types: the package named in pyproject.toml [tool.mypy]; an error fails the run
LTAUG_STRICT_SKIPS=1 exec "$VENV/bin/python" -m pytest -m "slow or not slow" -q "$@"
