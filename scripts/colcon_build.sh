#!/usr/bin/env bash
# Build this package (the repository root is the ROS 2 package) with colcon into
#   <repo>/.ros_ws/{build,install,log}
# using the ROS 2 wheels and colcon of the virtual environment made by scripts/setup_env.sh.
# This generates sa_convonet_ros.msg / .srv / .action and installs the Python package, the node
# executable, launch/ and config/ beside them. Then `source scripts/ros_env.sh` to use the result.
#
# The build uses --symlink-install: the installed Python modules, launch and config files are links to
# the files in the repository, so editing them needs no rebuild. Adding, removing or renaming a file,
# or changing package.xml, CMakeLists.txt, msg/, srv/, action/ or nodes/, does: this script notices that and
# rebuilds (a few seconds); when nothing relevant changed it returns at once.
#   SA_CONVONET_VENV   the virtual environment (default: <repo>/.venv)
#   SA_CONVONET_FORCE_BUILD=1   run colcon even when the inputs look unchanged
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SA_CONVONET_VENV:-$ROOT/.venv}"
WS="$ROOT/.ros_ws"
say() { printf '[colcon] %s\n' "$*"; }

if [ ! -x "$VENV/bin/colcon" ]; then
  say "no colcon in $VENV: run scripts/setup_env.sh first" >&2
  exit 1
fi

# colcon must only ever find this one package: never the ROS wheels' share/*/package.xml in the
# venv, nor anything under the build workspace (also when someone runs colcon from the repository).
mkdir -p "$WS/src"
touch "$WS/COLCON_IGNORE" "$VENV/COLCON_IGNORE"
# CMake refuses to export include directories that lie inside the source tree, and the venv (with
# numpy's headers, which the generated Python bindings use) lies inside this repository. So colcon
# builds the package through a link, .ros_ws/src/sa_convonet_ros -> the repository: a source path
# that does not contain the venv.
ln -sfn ../.. "$WS/src/sa_convonet_ros"

# Fingerprint of everything the build depends on. With --symlink-install the contents of the Python
# package, launch/ and config/ do not matter (they are linked), only which files exist.
fingerprint() {
  cd "$ROOT"
  {
    echo "root=$ROOT venv=$VENV"
    cat "$VENV/.sa_convonet_stamp" 2>/dev/null || true
    sha256sum "$ROOT/scripts/colcon_build.sh" package.xml CMakeLists.txt
    find msg srv action nodes -type f ! -name '*~' -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum
    find sa_convonet_ros launch config \( -name __pycache__ -prune \) -o \
      -type f ! -name '*.pyc' ! -name '*~' -print 2>/dev/null | LC_ALL=C sort
  } | sha256sum | cut -d' ' -f1
}
STAMP="$WS/.build_stamp"
MARKER="$WS/install/share/sa_convonet_ros/package.xml"
want="$(fingerprint)"
if [ "${SA_CONVONET_FORCE_BUILD:-0}" != 1 ] && [ -f "$STAMP" ] && [ -e "$MARKER" ] \
   && [ "$(cat "$STAMP")" = "$want" ]; then
  say "sa_convonet_ros is up to date in ${WS#"$ROOT"/}/install"
  exit 0
fi
rm -f "$STAMP"
# Links left behind by files that were deleted or renamed in the repository.
[ -d "$WS/install" ] && find "$WS/install" -xtype l -delete

# A clean environment for the build: only the venv's ROS, never a previously sourced install tree.
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
unset COLCON_PREFIX_PATH PYTHONPATH
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning,ignore::UserWarning}"

# Each build's console output goes to one file; shown in full only when the build fails.
mkdir -p "$WS/log"
out="$WS/log/colcon_build_output.txt"
start=$(date +%s%N)
say "building sa_convonet_ros (interfaces + Python package) in ${WS#"$ROOT"/}"
set +e
(
  cd "$WS"
  colcon --log-base "$WS/log" build \
    --base-paths "$WS/src" \
    --packages-select sa_convonet_ros \
    --build-base "$WS/build" \
    --install-base "$WS/install" \
    --merge-install \
    --symlink-install \
    --event-handlers console_direct+ \
    --cmake-args \
      -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DPython3_FIND_VIRTUALENV=FIRST \
      -DBUILD_TESTING=OFF \
      -DCMAKE_BUILD_TYPE=Release
) >"$out" 2>&1
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
secs="$((ms / 1000)).$(( (ms % 1000) / 100 ))"
if [ $rc -ne 0 ] || [ ! -e "$MARKER" ]; then
  cat "$out" >&2
  say "FAILED (exit $rc) after ${secs}s; full log above and under ${WS#"$ROOT"/}/log" >&2
  exit 1
fi
echo "$want" > "$STAMP"
say "built sa_convonet_ros in ${secs}s -> ${WS#"$ROOT"/}/install (source scripts/ros_env.sh)"
