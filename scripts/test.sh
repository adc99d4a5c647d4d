#!/usr/bin/env bash
# Set up (or reuse) the environment and run the whole test suite, slow tests included.
# Extra arguments go to pytest (e.g. scripts/test.sh -k yolo).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/setup.sh)
LTAUG_STRICT_SKIPS=1 exec "$VENV/bin/python" -m pytest -m "slow or not slow" -q "$@"
