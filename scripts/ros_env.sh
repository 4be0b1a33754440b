# Source this file (bash) to use sa_convonet_ros with ROS 2:
#   source scripts/ros_env.sh
# It activates the virtual environment made by scripts/setup_env.sh (ROS 2 Kilted from PyPI wheels)
# and overlays the colcon build of this package (.ros_ws/install, made by scripts/colcon_build.sh):
# rclpy, sa_convonet_ros.msg / .srv and the node executable are then available, e.g.
#   python -c "import rclpy, sa_convonet_ros.srv"
#   "$SA_CONVONET_ROS_PREFIX/lib/sa_convonet_ros/reconstruction_node" --ros-args --params-file config/...
# DDS discovery is kept on this host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST); set ROS_DOMAIN_ID
# yourself to separate runs on the same machine.
# On a machine with a real ROS 2 installation, source /opt/ros/<distro>/setup.bash and the workspace
# instead of this file.
#   SA_CONVONET_VENV   the virtual environment (default: <repo>/.venv)

_sa_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_sa_venv="${SA_CONVONET_VENV:-$_sa_root/.venv}"
_sa_prefix="$_sa_root/.ros_ws/install"

if [ ! -f "$_sa_venv/bin/activate" ]; then
  echo "ros_env.sh: no virtual environment at $_sa_venv; run: bash scripts/setup_env.sh" >&2
  unset _sa_root _sa_venv _sa_prefix
  return 1 2>/dev/null || exit 1
fi

# shellcheck disable=SC1091
. "$_sa_venv/bin/activate"

# Put `dir` in front of the path list in variable `name`, once.
_sa_prepend() {
  local name="$1" dir="$2" current
  current="${!name:-}"
  current=":${current}:"
  current="${current//:${dir}:/:}"
  current="${current#:}"
  current="${current%:}"
  export "$name=${dir}${current:+:${current}}"
}

# The ROS wheels live in the venv itself, which is therefore the underlay prefix.
_sa_prepend AMENT_PREFIX_PATH "$VIRTUAL_ENV"
_sa_prepend CMAKE_PREFIX_PATH "$VIRTUAL_ENV"
_sa_prepend LD_LIBRARY_PATH "$VIRTUAL_ENV/lib"

if [ -f "$_sa_prefix/local_setup.bash" ]; then
  # The overlay: this package's prefix on AMENT_PREFIX_PATH, its site-packages on PYTHONPATH and
  # its lib/ on LD_LIBRARY_PATH (what colcon's setup files do, made explicit so that it also holds in
  # shells with `set -u` and without colcon's shell hooks).
  _sa_prepend AMENT_PREFIX_PATH "$_sa_prefix"
  _sa_prepend CMAKE_PREFIX_PATH "$_sa_prefix"
  _sa_prepend LD_LIBRARY_PATH "$_sa_prefix/lib"
  _sa_site="$(ls -d "$_sa_prefix"/lib/python3*/site-packages 2>/dev/null | head -n 1 || true)"
  [ -n "$_sa_site" ] && _sa_prepend PYTHONPATH "$_sa_site"
  unset _sa_site
  _sa_prepend COLCON_PREFIX_PATH "$_sa_prefix"
  export SA_CONVONET_ROS_PREFIX="$_sa_prefix"
else
  echo "ros_env.sh: sa_convonet_ros is not built yet; run: bash scripts/colcon_build.sh" >&2
fi

# Only talk to nodes on this machine (Kilted's replacement of ROS_LOCALHOST_ONLY).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# The only RMW the wheels ship.
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export SA_CONVONET_ROS_ENV=1

unset -f _sa_prepend
unset _sa_root _sa_venv _sa_prefix
