#!/usr/bin/env bash
# The benchmark-only environment with the copy-paste peers that bench_paste.py compares
# ltaug against: AlbumentationsX (`albumentations.CopyAndPaste`) and ultralytics
# (`ultralytics.data.augment.CopyPaste`). They are never dependencies of ltaug and never go
# into .venv: AlbumentationsX installs under the same import name `albumentations` as the
# albumentations 2.0.x that ltaug uses, and ultralytics pulls in torch.
#
#   benchmarks/peers_env.sh            # creates /tmp/ltaug-bench-peers (or $LTAUG_PEERS_VENV)
#
# torch/torchvision: pinned to the releases this machine keeps on disk (pip takes them from
# there; on other machines pip downloads them). Each peer is installed on its own, so that
# one that fails to install still leaves the other usable; bench_paste.py then says
# "not available: <reason>" for the missing one.
set -uo pipefail
VENV="${LTAUG_PEERS_VENV:-/tmp/ltaug-bench-peers}"
PY="${PYTHON:-python3}"
TORCH="${LTAUG_PEERS_TORCH:-torch==2.14.1 torchvision==0.29.1}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || exit 1
pip() { "$VENV/bin/python" -m pip install --quiet "$@"; }
pip --upgrade pip
status=0
# pycocotools: the peer runner rasterises the COCO polygons the way a COCO user does.
pip pycocotools || { echo "peers_env: pycocotools failed to install" >&2; status=1; }
# [gui] = opencv-python, the OpenCV wheel ultralytics requires: one cv2 distribution, not two
# (opencv-python and opencv-python-headless overwrite each other's cv2 package).
pip "albumentationsx[gui]" || { echo "peers_env: albumentationsx failed to install" >&2; status=1; }
# shellcheck disable=SC2086  # $TORCH is a list of requirements
pip $TORCH ultralytics || { echo "peers_env: ultralytics failed to install" >&2; status=1; }
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ("albumentationsx", "ultralytics", "torch", "pycocotools", "opencv-python", "opencv-python-headless", "numpy"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} not installed")
EOF
echo "peers venv: $VENV"
exit $status
