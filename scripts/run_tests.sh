#!/usr/bin/env bash
# The test command: sets up (idempotently) the venv, ROS 2 wheels and the colcon build, lints the code
# (ruff: ruff.toml), then runs pytest. Extra arguments go to pytest, e.g.
# `bash scripts/run_tests.sh test/test_windows.py -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
# The ROS 2 command line and launch system (not on PyPI) for the tests that run the README's `ros2 ...`
# lines, installed from ../shared/ros-tools beside the repository (or SA_CONVONET_ROS_TOOLS) when it is
# there; without it those tests skip and say so.
TOOLS="${SA_CONVONET_ROS_TOOLS:-$ROOT/../shared/ros-tools}"
if [ -f "$TOOLS/install.sh" ]; then
  bash "$TOOLS/install.sh" "${SA_CONVONET_VENV:-$ROOT/.venv}" \
    || echo "[test] could not install $TOOLS: the tests of the ros2 command line will skip" >&2
fi
# shellcheck disable=SC1091
source "$ROOT/scripts/ros_env.sh"
cd "$ROOT"
ruff check sa_convonet_ros test bench scripts launch setup.py
exec python -m pytest "${@:-test}"
