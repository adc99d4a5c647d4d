#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
# The venv is keyed by a hash of pyproject.toml and this script: when neither changed, an
# existing venv is reused and this takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."
# The one environment for the demo and the tests: engine, trainer (torch) and test tools.
EXTRAS="${LTAUG_EXTRAS:-dev,train,ray}"
PY="${PYTHON:-python3}"
key=$( (cat pyproject.toml scripts/setup.sh; echo "$EXTRAS") | sha256sum | cut -c1-12)
VENV="${LTAUG_VENV:-.venv}"
if [ -f "$VENV/.ltaug-key" ] && [ "$(cat "$VENV/.ltaug-key")" = "$key" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV"; exit 0
fi
echo "setting up $VENV (extras: $EXTRAS) ..." >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >&2 2>/dev/null || true
"$VENV/bin/pip" install -q -e ".[$EXTRAS]" >&2
# lvis-api (used by tests to prove our LVIS files load) declares opencv-python, which would
# install beside opencv-python-headless and break `import cv2`; its code only needs what is
# already here, so it is installed without its declared dependencies.
"$VENV/bin/pip" install -q --no-deps "lvis==0.5.3" >&2
"$VENV/bin/python" -c "import cv2, pycocotools, albumentations, lvis" >&2
echo "$key" > "$VENV/.ltaug-key"
echo "$VENV"
