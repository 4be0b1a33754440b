"""Start the SA-ConvONet reconstruction node with the package's parameter file.

    ros2 launch sa_convonet_ros reconstruct.launch.py
    ros2 launch sa_convonet_ros reconstruct.launch.py input_topic:=/octomap_point_cloud_centers device:=cuda
    ros2 launch sa_convonet_ros reconstruct.launch.py params_file:=/path/to/my_params.yaml

Then call the service, e.g.
    ros2 service call /reconstruct_scene sa_convonet_ros/srv/ReconstructScene "{omit_mesh: true}"
and show /sa_convonet_reconstruction/mesh_markers (MarkerArray, durability Transient Local) in RViz.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'sa_convonet_ros'
EXECUTABLE = 'reconstruction_node'
NODE_NAME = 'sa_convonet_reconstruction'
PARAMS_FILE = ('config', 'reconstruct.yaml')
# The node's own name for its map topic; the input_topic argument remaps it.
DEFAULT_INPUT_TOPIC = 'map_cloud'


def _reconstruction_node(context):
    # Only an explicitly given device overrides the params file (an empty default leaves it alone).
    device = LaunchConfiguration('device').perform(context).strip()
    overrides = [{'device': device}] if device else []
    return [Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), *overrides],
        remappings=[(DEFAULT_INPUT_TOPIC, LaunchConfiguration('input_topic'))],
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), *PARAMS_FILE]),
            description='Parameter file of the reconstruction node.'),
        DeclareLaunchArgument(
            'input_topic',
            default_value=DEFAULT_INPUT_TOPIC,
            description='Topic of the accumulated sensor_msgs/PointCloud2 map.'),
        DeclareLaunchArgument(
            'device',
            default_value='',
            description='Compute device (auto, cpu, cuda, cuda:N); empty = the value in params_file.'),
        OpaqueFunction(function=_reconstruction_node),
    ])
