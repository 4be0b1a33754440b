#!/usr/bin/env bash
# The test command: sets up (idempotently) the venv, ROS 2 wheels and the colcon build, lints the code
# (ruff: ruff.toml), then runs pytest. Extra arguments go to pytest, e.g.
# `bash scripts/run_tests.sh test/test_windows.py -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/ros_env.sh"
cd "$ROOT"
ruff check sa_convonet_ros test bench scripts launch setup.py
exec python -m pytest "${@:-test}"
