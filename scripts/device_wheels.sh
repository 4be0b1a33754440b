#!/usr/bin/env bash
# Fetch the pure-Python wheels that the GPU machine of the device round lacks into .whl/ (git-ignored),
# for the device tool's `carry`. The machine has Python 3.12, torch, numpy, scipy, scikit-image; it has
# no trimesh (which meshing needs) and no network.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
mkdir -p "$ROOT/.whl"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$ROOT/.whl" "trimesh>=4.0"
ls -l "$ROOT/.whl"
