"""launch/reconstruct.launch.py and config/reconstruct.yaml agree with the node and the install tree.

`launch` and `launch_ros` are not installable here, so the launch file is read with `ast`, never
imported; the node is started the way the launch file starts it and asked for its parameters.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.srv import DescribeParameters, ListParameters

from sa_convonet_ros.ros import node as node_module
from sa_convonet_ros.ros.settings import PARAMETERS

from node_harness import EXECUTABLE, NODE_NAME, PACKAGE, NodeProcess, RosClient, install_prefix

REPO = Path(__file__).resolve().parents[2]

LAUNCH_FILE = REPO / 'launch' / 'reconstruct.launch.py'
PARAMS_FILE = REPO / 'config' / 'reconstruct.yaml'
# Declared by every rclpy node, not by ours.
BUILT_IN_PARAMETERS = {'use_sim_time', 'start_type_description_service'}
NAMESPACE = '/launch_file_test'


class LaunchFile:
    """What the launch file says, found in its syntax tree (module constants are resolved)."""

    def __init__(self, path):
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants = {}
        for statement in self.tree.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                    and isinstance(statement.targets[0], ast.Name):
                try:
                    self.constants[statement.targets[0].id] = ast.literal_eval(statement.value)
                except ValueError:
                    pass

    def value(self, node):
        """A literal, or a module constant named by the expression."""
        if isinstance(node, ast.Name):
            return self.constants[node.id]
        return ast.literal_eval(node)

    def calls(self, name):
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]

    def keyword(self, call, name):
        return next(k.value for k in call.keywords if k.arg == name)

    def imported_modules(self):
        names = set()
        for n in ast.walk(self.tree):
            if isinstance(n, ast.ImportFrom):
                names.add(n.module.split('.')[0])
            elif isinstance(n, ast.Import):
                names.update(alias.name.split('.')[0] for alias in n.names)
        return names


@pytest.fixture(scope='module')
def launch():
    return LaunchFile(LAUNCH_FILE)


@pytest.fixture(scope='module')
def yaml_parameters():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(data) == [NODE_NAME], f'{PARAMS_FILE} must hold the parameters of node {NODE_NAME}'
    return data[NODE_NAME]['ros__parameters']


def test_is_a_ros2_launch_file(launch):
    assert launch.imported_modules() <= {'launch', 'launch_ros'}
    assert {'launch', 'launch_ros'} <= launch.imported_modules()
    functions = {n.name for n in launch.tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), 'exec')
    arguments = {launch.value(call.args[0]) for call in launch.calls('DeclareLaunchArgument')}
    assert arguments == {'params_file', 'input_topic', 'device'}


def test_starts_the_installed_node_executable(launch):
    node, = launch.calls('Node')
    assert launch.value(launch.keyword(node, 'package')) == PACKAGE
    assert launch.value(launch.keyword(node, 'executable')) == EXECUTABLE
    assert launch.value(launch.keyword(node, 'name')) == NODE_NAME == node_module.NODE_NAME
    installed = install_prefix() / 'lib' / PACKAGE / EXECUTABLE
    assert installed.is_file() and os.access(installed, os.X_OK), installed
    assert (REPO / 'nodes' / EXECUTABLE).is_file()
    # The remapping starts from the node's own default name for the map topic.
    remapping, = launch.keyword(node, 'remappings').elts
    assert launch.value(remapping.elts[0]) == PARAMETERS['input_topic'][0]


def test_default_params_file_is_the_installed_config(launch):
    argument, = [c for c in launch.calls('DeclareLaunchArgument') if launch.value(c.args[0]) == 'params_file']
    path_join, = [n for n in ast.walk(launch.keyword(argument, 'default_value')) if isinstance(n, ast.List)]
    share, *rest = path_join.elts
    assert share.func.id == 'FindPackageShare' and launch.value(share.args[0]) == PACKAGE
    parts = []
    for element in rest:
        parts += launch.value(element.value) if isinstance(element, ast.Starred) else [launch.value(element)]
    relative = os.path.join(*parts)
    assert (REPO / relative) == PARAMS_FILE
    assert (install_prefix() / 'share' / PACKAGE / relative).is_file()


def test_params_file_lists_every_node_parameter_with_its_default(yaml_parameters):
    assert set(yaml_parameters) == set(PARAMETERS)
    for name, (default, _, _) in PARAMETERS.items():
        value = yaml_parameters[name]
        # ROS 2 parameters are typed: 1 is not accepted where 1.0 is expected.
        assert type(value) is type(default), f'{name}: {value!r} in the YAML, default {default!r}'
        assert value == default, f'{name}: the YAML says {value!r}, the node defaults to {default!r}'


@pytest.fixture(scope='module')
def running_node(tmp_path_factory, ros_domain):
    """The node started as the launch file starts it (params file, remapped map topic)."""
    folder = tmp_path_factory.mktemp('launch_node')
    process = NodeProcess(folder / 'node.log', {'device': 'cpu'},
                          remappings={'__ns': NAMESPACE, 'map_cloud': '/octomap_point_cloud_centers'},
                          torch_threads=1)
    client = RosClient('test_launch_file_client')
    with process:
        process.wait_for_log(r'ready: ', timeout=60)
        yield process, client
        client.close()
    assert process.process.returncode == 0, process.log_tail()


def test_node_declares_exactly_the_params_file_parameters(running_node, yaml_parameters):
    process, ros = running_node
    lister = ros.node.create_client(ListParameters, f'{NAMESPACE}/{NODE_NAME}/list_parameters')
    ros.wait_for_service(lister, 30, process)
    names = set(ros.call(lister, ListParameters.Request(), 30, process).result.names)
    assert names - BUILT_IN_PARAMETERS == set(yaml_parameters)

    describer = ros.node.create_client(DescribeParameters, f'{NAMESPACE}/{NODE_NAME}/describe_parameters')
    ros.wait_for_service(describer, 30, process)
    descriptors = ros.call(describer, DescribeParameters.Request(names=sorted(yaml_parameters)), 30,
                           process).descriptors
    for descriptor in descriptors:
        assert len(descriptor.description) > 20, descriptor.name
    read_only = {d.name for d in descriptors if d.read_only}
    assert read_only == {'input_topic', 'input_reliability', 'input_durability', 'service_name', 'marker_topic',
                         'mesh_msgs'}


def test_node_follows_the_remapping_and_namespace(running_node):
    process, _ = running_node
    process.wait_for_log(r'map from /octomap_point_cloud_centers \(reliable, transient_local\), '
                         rf'service /reconstruct_scene, action {NAMESPACE}/{NODE_NAME}/reconstruct, '
                         rf'mesh markers on {NAMESPACE}/{NODE_NAME}/mesh_markers',
                         timeout=5)
    assert 'Traceback' not in process.log_text()
