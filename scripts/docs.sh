#!/usr/bin/env bash
# Set up (or reuse) the environment and build the API reference (pdoc: the docstrings and type hints
# of the ltaug package) into docs/api/; open docs/api/index.html in a browser.
# tests/test_api_docs.py builds the same modules (it reads MODULES from this file) and fails on any
# warning pdoc gives, so this keeps working.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/setup.sh)
# The package and its subpackages (pdoc documents their modules too), and the modules that a
# package's __all__ leaves out (pdoc follows __all__): every module of ltaug gets a page.
MODULES="ltaug ltaug.errors ltaug.params ltaug.pool ltaug.transforms ltaug.io ltaug.stats ltaug.rebalance ltaug.pixels ltaug.ops ltaug.ops.base ltaug.ops.resample ltaug.ops.paste ltaug.ops.mosaic ltaug.ops.mixup ltaug.ops.augment ltaug.run ltaug.report"
rm -rf docs/api
# shellcheck disable=SC2086  # MODULES is a list of words
NO_ALBUMENTATIONS_UPDATE=1 "$VENV/bin/pdoc" -o docs/api $MODULES
echo "API reference: docs/api/index.html"
