"""The reconstruction node as a separate process, driven through real rclpy topics and services.

One node process serves the whole module (started like the launch file does, with a small model
trained here in a few seconds); the corrupt-checkpoint test starts its own.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from action_msgs.msg import GoalStatus
from geometry_msgs.msg import Point
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial import cKDTree
from sensor_msgs.msg import PointCloud2, PointField
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
from sa_convonet_ros.config import ModelConfig
from sa_convonet_ros.model import ConvONet, save_model
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.ros.markers import assemble, confidence_colors
from sa_convonet_ros.srv import ReconstructScene
from sa_convonet_ros.synthetic.rooms import RoomConfig, generate_room
from sa_convonet_ros.synthetic.scans import surface_cloud

from cloud_messages import arrays_to_cloud
from node_harness import NODE_NAME, NodeProcess, RosClient

MAP_TOPIC = '/map_cloud'
SERVICE = '/reconstruct_scene'
PRIVATE = f'/{NODE_NAME}'
VOXEL, TRIM = 0.05, 0.1
# Small, CPU-friendly settings: feed-forward by default, one window per ~1.6 m.
NODE_PARAMETERS = {'device': 'cpu', 'voxel_size': VOXEL, 'window_size': 1.6, 'margin': 0.2,
                   'trim_distance': TRIM, 'iterations': 0, 'max_points': 200_000}
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Subscribers keep more than one message, so none is lost between two spins of the test.
LATE_JOINER = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
CALL_TIMEOUT = 60.0


# ------------------------------------------------------------------------------------------ model

def _train_test_model(path):
    """A tiny ConvONet that marks a thin shell around the input points as occupied.

    An untrained network yields no surface at all; a few seconds of supervised training on random
    planes give a model whose feed-forward surface lies within a few centimetres of the input,
    which is all these tests need (the shipped model is far too slow for them on a CPU).
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ConvONet(ModelConfig(grid_resolution=16, unet_levels=2, unet_base_channels=8, c_dim=16,
                                 hidden_dim=16))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(100):
            clouds, queries, labels = [], [], []
            for _ in range(2):
                patches = []
                for _ in range(rng.integers(1, 4)):
                    origin = rng.uniform(-0.3, 0.3, 3)
                    u, v = np.linalg.qr(rng.normal(size=(3, 3)))[0][:, :2].T
                    a, b = rng.uniform(-0.7, 0.7, (2, 4096, 1))
                    patch = origin + a * u + b * v
                    patches.append(patch[np.all(np.abs(patch) < 0.5, axis=1)][:1024])
                cloud = np.concatenate(patches)
                cloud = cloud[rng.choice(len(cloud), 1024)]
                query = np.concatenate([rng.uniform(-0.55, 0.55, (512, 3)),
                                        cloud[rng.choice(1024, 512)] + rng.normal(0, 0.05, (512, 3))])
                clouds.append(cloud)
                queries.append(query)
                labels.append(cKDTree(cloud).query(query)[0] < 0.03)
            points, query, label = (torch.tensor(np.array(x), dtype=torch.float32)
                                    for x in (clouds, queries, labels))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(points, query), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    save_model(model, path)


@pytest.fixture(scope='session')
def test_model(request, tmp_path_factory):
    """The trained test model, kept in pytest's cache (keyed by the training code) across runs."""
    key = hashlib.sha1(inspect.getsource(_train_test_model).encode()).hexdigest()[:12]
    path = request.config.cache.mkdir('sa_convonet_ros') / f'shell_model_{key}.pt'
    if not path.exists():
        scratch = tmp_path_factory.mktemp('model') / 'shell.pt'
        _train_test_model(scratch)
        scratch.replace(path)
    return path


# ------------------------------------------------------------------------------------------ scene

def room_points(n=60_000, seed=3):
    """Surface samples (float64, N x 3) of a small furnished room, and colours by height."""
    scene = generate_room(seed, RoomConfig.of_size(2.4, 2.0, 1.2, chair_count=(0, 1), clutter_count=(1, 3),
                                                   open_probability=0.0, door_probability=0.0))
    points = surface_cloud(scene, n, noise_std=0.003, seed=seed).astype(np.float64)
    z = (points[:, 2] - points[:, 2].min()) / np.ptp(points[:, 2])
    colors = np.stack([z, 0.5 * np.ones_like(z), 1.0 - z], axis=1)
    return points, colors


ROOM, ROOM_COLORS = room_points()


def room_cloud(frame_id='map'):
    return arrays_to_cloud(ROOM, ROOM_COLORS, frame_id=frame_id)


# --------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def node(tmp_path_factory, test_model, ros_domain):
    folder = tmp_path_factory.mktemp('node')
    process = NodeProcess(folder / 'node.log', {**NODE_PARAMETERS, 'checkpoint': str(test_model),
                                                'output_dir': str(folder / 'out')}, torch_threads=1)
    with process:
        process.wait_for_log(r'ready: ', timeout=60)
        yield process
    assert process.process.returncode == 0, f'node did not shut down cleanly:\n{process.log_tail()}'


@pytest.fixture(scope='module')
def ros(node):
    client = RosClient('test_node_client')
    client.map_publisher = client.node.create_publisher(PointCloud2, MAP_TOPIC, LATCHED)
    client.reconstruct = client.node.create_client(ReconstructScene, SERVICE)
    client.cancel = client.node.create_client(Trigger, f'{PRIVATE}/cancel')
    client.set_parameters = client.node.create_client(SetParameters, f'{PRIVATE}/set_parameters')
    client.wait_for_service(client.reconstruct, 30, node)
    yield client
    client.close()


@pytest.fixture
def out_dir(node, request):
    """A fresh folder of the test's own inside the node's output_dir (no output may leave that folder)."""
    folder = node.log_path.parent / 'out' / re.sub(r'\W+', '_', request.node.name)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def room_map(node, ros):
    """The room published as the latched map, and received by the node."""
    ros.map_publisher.publish(room_cloud())
    if not _map_seen(node, ros, len(ROOM)):
        pytest.fail(f'the node did not receive the map:\n{node.log_tail()}')
    return ROOM


def _map_seen(node, ros, count, timeout=30):
    """Whether the node's current map has `count` points.

    The node logs each map that differs from its current one (and only those), so the last such
    line names the current map.
    """
    def current_is_ours():
        counts = re.findall(r'map received: (\d+) points', node.log_text())
        return bool(counts) and int(counts[-1]) == count
    return ros.spin_until(current_is_ours, timeout)


def request(**fields):
    msg = ReconstructScene.Request(iterations=-1)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def call(ros, node, msg, timeout=CALL_TIMEOUT):
    return ros.call(ros.reconstruct, msg, timeout, node)


def set_parameters(ros, node, **values):
    msgs = []
    for name, value in values.items():
        if isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        elif isinstance(value, int):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        elif isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        msgs.append(ParameterMsg(name=name, value=pv))
    ros.wait_for_service(ros.set_parameters, 10, node)
    return ros.call(ros.set_parameters, SetParameters.Request(parameters=msgs), 30, node).results


class Collector:
    """Keeps every message of a subscription."""

    def __init__(self, ros, msg_type, topic, qos=10):
        self.messages = []
        self.subscription = ros.node.create_subscription(msg_type, topic, self.messages.append, qos)
        self.ros = ros

    def wait_until_connected(self, timeout=15.0):
        """Wait until the node's publisher is matched, so no message of a request is missed."""
        assert self.ros.spin_until(lambda: self.subscription.get_publisher_count() > 0, timeout), \
            f'no publisher on {self.subscription.topic_name}'

    def settle(self, quiet=0.5, timeout=15.0):
        """Wait until no message has come for `quiet` seconds (a latched history arrives message by message)."""
        deadline, count, since = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(self.messages) != count:
                count, since = len(self.messages), time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            self.ros.spin_for(0.05)

    def close(self):
        self.ros.node.destroy_subscription(self.subscription)


def check_markers(arrays: list, frame_id: str, faces: int) -> dict:
    """What a display shows after the latched history `arrays` (the last whole mesh, DELETEALL first, and the
    block updates after it), checked against the invariants RViz relies on; the markers by (ns, id)."""
    assert any(m.action == Marker.DELETEALL for array in arrays for m in array.markers), 'no whole mesh'
    shown = assemble(arrays)
    assert shown, 'no TRIANGLE_LIST marker'
    for marker in shown.values():
        assert marker.type == Marker.TRIANGLE_LIST and marker.action == Marker.ADD
        assert marker.header.frame_id == frame_id
        assert (marker.header.stamp.sec, marker.header.stamp.nanosec) == (0, 0)
        position, orientation = marker.pose.position, marker.pose.orientation
        assert (position.x, position.y, position.z) == (0.0, 0.0, 0.0)
        assert (orientation.x, orientation.y, orientation.z, orientation.w) == (0.0, 0.0, 0.0, 1.0)
        assert len(marker.points) > 0 and len(marker.points) % 3 == 0
        assert len(marker.colors) in (0, len(marker.points))
    assert sum(len(m.points) for m in shown.values()) == 3 * faces
    return shown


def latched_markers(ros, faces: int, frame_id: str = 'map', timeout: float = 15.0) -> list:
    """The marker topic's latched history as a display that joins now receives it, once it shows `faces`
    triangles in `frame_id` (the history arrives message by message)."""
    markers = Collector(ros, MarkerArray, f'{PRIVATE}/mesh_markers', LATE_JOINER)

    def complete():
        shown = assemble(markers.messages).values()
        return sum(len(m.points) for m in shown) == 3 * faces and all(m.header.frame_id == frame_id for m in shown)

    ros.spin_until(complete, timeout)
    markers.settle()  # and the updates after the whole mesh
    markers.close()
    return markers.messages


def mesh_vertices(mesh) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in mesh.vertices])


def assert_refused(response, *phrases):
    assert not response.success
    assert len(response.mesh.triangles) == 0
    for phrase in phrases:
        assert phrase in response.message, response.message


# ------------------------------------------------------------------------------------------ tests

def test_reconstructs_the_map_and_publishes_markers(node, ros, room_map, out_dir):
    progress = Collector(ros, ReconstructionProgress, f'{PRIVATE}/progress')
    progress.wait_until_connected()
    output = out_dir / 'room.ply'
    response = call(ros, node, request(output_path=str(output), write_preview=True))
    assert response.success, response.message

    # The mesh lies on the input surface, in the map's metric frame.
    vertices = mesh_vertices(response.mesh)
    assert len(vertices) > 100 and len(response.mesh.triangles) > 100
    distance = cKDTree(room_map).query(vertices)[0]
    assert np.median(distance) < 0.06
    assert distance.max() < TRIM + 2 * VOXEL

    stats = response.stats
    assert stats.faces == len(response.mesh.triangles) and stats.vertices == len(vertices)
    assert stats.windows_run > 0 and stats.input_points == len(room_map)
    # one CPU worker per batch run side by side (two where torch has two threads)
    assert set(stats.device.split(',')) == {'cpu'} and stats.profile == 'auto:cpu' and stats.iterations == 0
    # What it measured on the map and chose: the grid and windows as set (the map is not sparse enough
    # to coarsen a 5 cm grid).
    assert 0 < stats.point_spacing < 0.1 and stats.noise >= 0
    assert math.isclose(stats.voxel_size, VOXEL) and math.isclose(stats.window_size, 1.6)
    assert len(stats.stage_names) == len(stats.stage_seconds) > 0
    assert math.isclose(stats.total_seconds, sum(stats.stage_seconds), rel_tol=1e-6)
    assert np.allclose([stats.bbox_min.x, stats.bbox_min.y, stats.bbox_min.z], vertices.min(axis=0))
    assert np.allclose([stats.bbox_max.x, stats.bbox_max.y, stats.bbox_max.z], vertices.max(axis=0))
    assert stats.output_path == str(output) and output.stat().st_size > 0
    assert stats.preview_path == str(output.with_suffix('.png'))
    assert output.with_suffix('.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    # Progress: reported while running, fractions never go back, ends with 'done' at 1.0.
    ros.spin_until(lambda: any(m.stage == 'done' for m in progress.messages), 5)
    progress.close()
    stages = [m.stage for m in progress.messages]
    assert 'prepare' in stages and stages[-1] == 'done', stages
    fractions = [m.fraction for m in progress.messages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert all(m.header.frame_id == 'map' for m in progress.messages)

    # A late subscriber (like RViz started afterwards) still gets the mesh and the stats.
    latched_stats = Collector(ros, ReconstructionStats, f'{PRIVATE}/stats', LATE_JOINER)
    assert ros.spin_until(lambda: latched_stats.messages, 15), 'no latched stats'
    shown = check_markers(latched_markers(ros, stats.faces), 'map', stats.faces)
    assert all(len(m.colors) == len(m.points) for m in shown.values())  # the map has colours (rgb mode)
    assert latched_stats.messages[-1].faces == stats.faces
    latched_stats.close()
    assert 'progress: ' in node.log_text()


def test_an_answer_without_the_mesh_is_short_and_the_mesh_still_published(node, ros, room_map):
    response = call(ros, node, request(omit_mesh=True))
    assert response.success, response.message
    assert len(response.mesh.triangles) == len(response.mesh.vertices) == 0 and response.stats.faces > 100
    check_markers(latched_markers(ros, response.stats.message_faces), 'map', response.stats.message_faces)


def test_the_mesh_goes_out_as_mesh_msgs_too_with_every_face_of_the_file(node, ros, room_map, out_dir):
    mesh_msgs = pytest.importorskip('mesh_msgs.msg', reason='mesh_msgs is installed by ../shared/ros-tools')
    output = out_dir / 'room.ply'
    response = call(ros, node, request(output_path=str(output), omit_mesh=True))
    assert response.success, response.message
    # A late subscriber (rviz_mesh_tools_plugins started afterwards) gets both messages of the latest mesh.
    geometry = Collector(ros, mesh_msgs.MeshGeometryStamped, f'{PRIVATE}/mesh', LATE_JOINER)
    colors = Collector(ros, mesh_msgs.MeshVertexColorsStamped, f'{PRIVATE}/mesh/vertex_colors', LATE_JOINER)
    assert ros.spin_until(lambda: geometry.messages and colors.messages, 15), 'no latched mesh_msgs'
    shape, painted = geometry.messages[-1], colors.messages[-1]
    written = trimesh.load(output, process=False)
    faces = np.array([list(f.vertex_indices) for f in shape.mesh_geometry.faces])
    vertices = np.array([(p.x, p.y, p.z) for p in shape.mesh_geometry.vertices])
    normals = np.array([(p.x, p.y, p.z) for p in shape.mesh_geometry.vertex_normals])
    assert len(faces) == len(written.faces) == response.stats.faces and faces.max() < len(vertices)
    np.testing.assert_allclose(vertices, written.vertices, atol=1e-6)
    lengths = np.linalg.norm(normals, axis=1)  # unit, but for a vertex of degenerate faces only (zero)
    assert np.isclose(lengths, 1.0, atol=1e-6).mean() > 0.999 and np.all(lengths < 1 + 1e-6)
    assert shape.uuid == painted.uuid == f'{PRIVATE}/mesh' and shape.header.frame_id == 'map'
    rgba = np.array([(c.r, c.g, c.b, c.a) for c in painted.mesh_vertex_colors.vertex_colors])
    assert rgba.shape == (len(vertices), 4) and np.all(rgba[:, 3] == 1.0) and np.ptp(rgba[:, :3]) > 0
    geometry.close()
    colors.close()


def box_points(low, size=0.3, spacing=0.01):
    """The surface of a cube of `size` metres from corner `low`, sampled on a grid of `spacing`."""
    u, v = (g.ravel() for g in np.meshgrid(np.arange(0, size, spacing), np.arange(0, size, spacing)))
    faces = []
    for axis in range(3):
        for side in (0.0, size):
            face = np.insert(np.c_[u, v], axis, side, axis=1)
            faces.append(face)
    return np.asarray(low) + np.concatenate(faces)


def triangles_in(arrays) -> int:
    return sum(len(m.points) // 3 for array in arrays for m in array.markers if m.action == Marker.ADD)


def test_a_local_change_republishes_only_the_marker_blocks_it_changed(node, ros, room_map):
    """A 0.3 m box appears in one part of the map: the second call sends the markers of the blocks its
    window changed only (unchanged windows come from the window cache, their triangles as they were), and a
    display that joins later still rebuilds the whole current mesh from the latched history."""
    assert all(r.successful for r in set_parameters(ros, node, window_size=0.8, window_scale=1.0))
    markers = Collector(ros, MarkerArray, f'{PRIVATE}/mesh_markers', LATE_JOINER)
    try:
        markers.wait_until_connected()
        markers.settle()
        room = ROOM + [0.0, 32.0, 0.0]  # 40 windows along y: the same tiling of the room as at its place
        box = box_points([0.25, 31.45, 0.25])  # inside one window's core, clear of its neighbours' margins
        frame = 'blocks_test'  # a frame of its own: the first call sends the whole mesh
        sent_before = len(markers.messages)
        first = call(ros, node, request(cloud=arrays_to_cloud(room, ROOM_COLORS, frame_id=frame)))
        assert first.success, first.message
        assert ros.spin_until(lambda: len(markers.messages) > sent_before, 10)
        markers.settle()
        whole = markers.messages[sent_before:]
        colours = np.vstack([ROOM_COLORS, np.full((len(box), 3), 0.5)])
        sent_before = len(markers.messages)
        second = call(ros, node, request(cloud=arrays_to_cloud(np.vstack([room, box]), colours, frame_id=frame)))
        assert second.success, second.message
        assert second.stats.windows_reused > 0 and second.stats.windows_run < first.stats.windows_run
        assert ros.spin_until(lambda: len(markers.messages) > sent_before, 10)
        markers.settle()
        update = markers.messages[sent_before:]
        assert not any(m.action == Marker.DELETEALL for array in update for m in array.markers)
        assert 0 < triangles_in(update) <= 0.35 * triangles_in(whole) == 0.35 * first.stats.message_faces
        node.wait_for_log(r'markers: an update, \d+ of \d+ blocks sent', timeout=5)
        check_markers(latched_markers(ros, second.stats.message_faces, frame), frame, second.stats.message_faces)
    finally:
        markers.close()
        set_parameters(ros, node, window_size=1.6, window_scale=-1.0)


def test_request_cloud_replaces_the_map_and_markers_split(node, ros, room_map):
    results = set_parameters(ros, node, max_triangles_per_marker=500, color_mode='uniform', frame_id='')
    assert all(r.successful for r in results), results
    try:
        cloud = arrays_to_cloud(room_map + [10.0, 0.0, 0.0], frame_id='odom', dtype='float64')
        response = call(ros, node, request(cloud=cloud))
        assert response.success, response.message
        assert mesh_vertices(response.mesh)[:, 0].min() > 8.0
        shown = check_markers(latched_markers(ros, response.stats.faces, 'odom'), 'odom', response.stats.faces)
        namespaces = {ns for ns, _ in shown}
        assert len(namespaces) > 1 and all(ns.startswith('block_') for ns in namespaces)  # spatial blocks
        assert max(len(m.points) for m in shown.values()) <= 3 * 500
        assert len(shown) > len(namespaces)  # some block split into markers of at most 500 triangles
        assert all(len(m.colors) == 0 for m in shown.values())  # uniform colour
    finally:
        set_parameters(ros, node, max_triangles_per_marker=200_000, color_mode='rgb')


def test_a_mesh_over_max_message_faces_is_simplified_for_the_messages_only(node, ros, room_map, out_dir):
    output = out_dir / 'full.ply'
    full = call(ros, node, request(output_path=str(output)))
    assert full.success, full.message
    assert full.stats.message_faces == full.stats.faces == len(full.mesh.triangles)
    budget = full.stats.faces // 3
    assert all(r.successful for r in set_parameters(ros, node, max_message_faces=budget))
    try:
        start = len(node.log_text())
        response = call(ros, node, request(output_path=str(output)))
        assert response.success, response.message
        stats = response.stats
        assert stats.faces == full.stats.faces  # the reconstruction is the same
        assert 0 < stats.message_faces == len(response.mesh.triangles) <= budget
        assert len(trimesh.load(output, process=False).faces) == stats.faces  # the file keeps every face
        node.wait_for_log(rf'more than max_message_faces={budget}: .* simplified to {stats.message_faces} faces',
                          timeout=5, start=start)
        # the simplified mesh still lies on the map
        assert np.median(cKDTree(room_map).query(mesh_vertices(response.mesh))[0]) < 0.06
        check_markers(latched_markers(ros, stats.message_faces), 'map', stats.message_faces)
    finally:
        set_parameters(ros, node, max_message_faces=1_000_000)


def _bad_clouds():
    nan = arrays_to_cloud(np.full((500, 3), np.nan), frame_id='map')
    no_xyz = arrays_to_cloud(ROOM[:500], frame_id='map')
    for field in no_xyz.fields:
        field.name = {'x': 'a', 'y': 'b', 'z': 'c'}.get(field.name, field.name)
    int_xyz = arrays_to_cloud(ROOM[:500], frame_id='map')
    for field in int_xyz.fields:
        field.datatype = PointField.INT32
    unknown_type = arrays_to_cloud(ROOM[:500], frame_id='map')
    unknown_type.fields[0].datatype = 99
    short = arrays_to_cloud(ROOM[:500], frame_id='map')
    short.data = short.data[:100]
    zero_height = arrays_to_cloud(ROOM[:20_000], frame_id='map')
    zero_height.height = 0  # width 20000 and the data of 20000 points: not "no cloud"
    return {'all-NaN': (nan, 'NaN'), 'without x/y/z': (no_xyz, 'lacks field'),
            'integer x/y/z': (int_xyz, 'only FLOAT32 and FLOAT64'),
            'unknown field type': (unknown_type, 'datatype'),
            'truncated data': (short, 'inconsistent'),
            'zero height with data': (zero_height, 'zero points (height=0, width=20000) but 240000 bytes')}


@pytest.mark.parametrize('name', list(_bad_clouds()))
def test_bad_cloud_in_request_is_answered_clearly(node, ros, room_map, name):
    cloud, phrase = _bad_clouds()[name]
    response = call(ros, node, request(cloud=cloud))
    assert_refused(response, 'the cloud in the request is unusable', phrase)
    assert node.alive


def test_bad_map_messages_are_dropped_and_the_last_good_map_kept(node, ros, room_map):
    empty = arrays_to_cloud(np.zeros((0, 3)), frame_id='map')
    bad = [empty] + [cloud for cloud, _ in _bad_clouds().values()]
    start = len(node.log_text())
    for number, cloud in enumerate(bad):
        ros.map_publisher.publish(cloud)
        # Depth 1 on both sides: wait for each one to be handled before sending the next.
        ros.spin_until(lambda number=number: node.log_text().count('dropped a map message', start) > number, 10)
    log = node.log_text()[start:]
    assert log.count('dropped a map message') == len(bad), log
    assert 'zero points' in log and 'lacks field' in log and 'keeping the last good map' in log
    assert node.alive
    response = call(ros, node, request())
    assert response.success, response.message
    assert response.stats.input_points == len(room_map)


def test_empty_request_cloud_means_the_latest_map(node, ros, room_map):
    response = call(ros, node, request(cloud=arrays_to_cloud(np.zeros((0, 3)), frame_id='x')))
    assert response.success, response.message
    assert response.stats.input_points == len(room_map)


@pytest.mark.parametrize('low, high, phrase', [
    ((20.0, 20.0, 20.0), (21.0, 21.0, 21.0), 'holds no points'),
    ((1.0, 1.0, 1.0), (-1.0, 2.0, 2.0), 'inverted'),
    ((0.0, 0.0, 0.0), (0.0, 1.0, 1.0), 'inverted'),
])
def test_bad_regions_are_answered_clearly(node, ros, room_map, low, high, phrase):
    response = call(ros, node, request(use_region=True, region_min=Point(x=low[0], y=low[1], z=low[2]),
                                       region_max=Point(x=high[0], y=high[1], z=high[2])))
    assert_refused(response, phrase)


def test_region_crops_the_map(node, ros, room_map):
    response = call(ros, node, request(use_region=True, region_min=Point(x=-1.5, y=-1.5, z=-0.5),
                                       region_max=Point(x=0.0, y=1.5, z=2.0)))
    assert response.success, response.message
    assert mesh_vertices(response.mesh)[:, 0].max() < 0.0 + TRIM + 2 * VOXEL


def test_bad_request_values_are_refused(node, ros, room_map, out_dir):
    assert_refused(call(ros, node, request(iterations=-5)), 'iterations')
    assert_refused(call(ros, node, request(iterations=10**9)), 'max_iterations (10000', 'max_seconds')
    assert_refused(call(ros, node, request(max_seconds=-5.0)), 'max_seconds must be')
    assert_refused(call(ros, node, request(max_seconds=math.nan)), 'max_seconds must be')
    assert_refused(call(ros, node, request(output_path=str(out_dir / 'mesh.xyz'))), 'unsupported mesh extension')
    assert_refused(call(ros, node, request(output_path=str(out_dir))), 'directory')


@pytest.mark.parametrize('output, phrase', [
    ('/proc/sa_convonet/room.ply', 'could not write /proc/sa_convonet/room.ply'),
    ('{tmp}/room.ply/', 'names a directory'),
    ('{tmp}/a_file/room.ply', 'is a file, not a folder'),
])
def test_unwritable_outputs_are_refused_before_the_work(node, ros, room_map, out_dir, output, phrase):
    (out_dir / 'a_file').write_text('x')
    start = len(node.log_text())
    response = call(ros, node, request(output_path=output.format(tmp=out_dir)))
    assert_refused(response, 'could not write', phrase)
    assert 'reconstructing' not in node.log_text()[start:]  # refused before any work
    assert not (out_dir / 'room.ply').exists()


def test_output_paths_stay_inside_output_dir_and_bad_names_are_refused_clearly(node, ros, room_map, tmp_path):
    out = Path(node.log_path.parent / 'out')
    start = len(node.log_text())
    for output, phrase in [('../escape.ply', "'..' are not allowed"), ('~/home.ply', "'~' and '..'"),
                           (str(tmp_path / 'abs.ply'), 'outside output_dir'), ('a\nb.ply', 'control character'),
                           ('y' * 300 + '.ply', 'File name too long'), ('z/' * 2500 + 'q.ply', 'too long')]:
        response = call(ros, node, request(output_path=output))
        assert_refused(response, 'could not write', phrase)
        assert 'internal error' not in response.message and '\n' not in response.message
    log = node.log_text()[start:]
    assert 'reconstructing' not in log and '[ERROR]' not in log  # refused before any work, as a warning
    assert not (out.parent / 'escape.ply').exists() and not (tmp_path / 'abs.ply').exists()
    inside = call(ros, node, request(output_path='sub/room.ply'))
    assert inside.success and (out / 'sub' / 'room.ply').is_file(), inside.message


def test_a_stray_point_far_away_is_dropped_not_fatal(node, ros, room_map):
    stray = np.vstack([ROOM, [[1e9, 1e9, 1e9]]])
    response = call(ros, node, request(cloud=arrays_to_cloud(stray, frame_id='map')))
    assert response.success, response.message
    assert response.stats.stray_points_removed == 1 and response.stats.points_used == len(ROOM)
    assert '1 stray point(s) dropped' in response.message
    assert abs(response.stats.bbox_max.x) < 100


def test_a_default_request_runs_the_configured_optimisation(node, ros, room_map):
    """`ros2 service call ... "{}"`: the request's defaults mean what the node is configured to do."""
    assert ReconstructScene.Request().iterations == -1 and ReconstructScene.Request().max_seconds == -1.0
    assert set_parameters(ros, node, iterations=3)[0].successful
    try:
        response = call(ros, node, ReconstructScene.Request())
    finally:
        set_parameters(ros, node, iterations=0)
    assert response.success, response.message
    stats = response.stats
    assert stats.iterations == 3 and stats.steps_run == stats.steps_planned == 3 * _batches(stats) > 0
    assert not stats.out_of_time


def _batches(stats):
    from sa_convonet_ros.config import get_profile

    return math.ceil(stats.windows_run / get_profile(stats.profile).optimization.window_batch)


def test_a_time_budget_returns_the_mesh_reached_with_the_steps_done(node, ros, room_map):
    started = time.monotonic()
    response = call(ros, node, request(iterations=10_000, max_seconds=3.0))
    assert time.monotonic() - started < 10.0  # the budget bounds the answer, not only the optimisation
    assert response.success, response.message
    stats = response.stats  # (10000 steps would take far longer than the call's timeout)
    assert stats.out_of_time and 0 < stats.steps_run < stats.steps_planned == 10_000 * _batches(stats)
    assert 'time budget stopped the optimisation after' in response.message
    assert len(response.mesh.triangles) > 100


def test_a_cancel_before_the_first_step_ends_the_job_at_once(node, ros, room_map):
    """Before its first step a job of many steps replays their draws (to adapt only the cells they touch);
    a cancel then must not wait for the replay."""
    progress = Collector(ros, ReconstructionProgress, f'{PRIVATE}/progress')
    progress.wait_until_connected()
    long_job = ros.reconstruct.call_async(request(iterations=10_000))
    assert ros.spin_until(lambda: any(m.stage == 'windows' for m in progress.messages), 30), node.log_tail()
    cancelled_at = time.monotonic()
    assert ros.call(ros.cancel, Trigger.Request(), 10, node).success
    assert ros.spin_until(long_job.done, 30), node.log_tail()
    assert time.monotonic() - cancelled_at < 8.0 and 'cancelled' in long_job.result().message
    assert not any(m.stage == 'optimize' for m in progress.messages)  # it ended before its first step
    progress.close()


def test_request_while_busy_is_refused_and_cancel_stops_the_job(node, ros, room_map):
    markers = Collector(ros, MarkerArray, f'{PRIVATE}/mesh_markers', LATE_JOINER)
    progress = Collector(ros, ReconstructionProgress, f'{PRIVATE}/progress')
    progress.wait_until_connected()
    markers.wait_until_connected()
    markers.settle()
    published_before = len(markers.messages)

    long_job = ros.reconstruct.call_async(request(iterations=10_000))
    assert ros.spin_until(lambda: any(m.stage == 'optimize' for m in progress.messages), 30), node.log_tail()
    started = time.monotonic()
    refusal = call(ros, node, request(), timeout=10)
    assert time.monotonic() - started < 5.0
    assert_refused(refusal, 'busy', 'optimize', 'cancel')
    # Map updates keep being accepted meanwhile.
    start = len(node.log_text())
    ros.map_publisher.publish(arrays_to_cloud(ROOM[:20_000], frame_id='map'))
    node.wait_for_log(r'map received: 20000 points', timeout=20, start=start)

    cancelled = ros.call(ros.cancel, Trigger.Request(), 10, node)
    assert cancelled.success, cancelled.message
    assert ros.spin_until(long_job.done, 30), node.log_tail()
    result = long_job.result()
    assert_refused(result, 'cancelled', 'unchanged')
    assert ros.spin_until(lambda: progress.messages[-1].stage == 'cancelled', 5)
    ros.spin_for(0.5)
    assert len(markers.messages) == published_before  # nothing half-published
    assert not ros.call(ros.cancel, Trigger.Request(), 10, node).success  # nothing left to cancel

    # ... and the node serves the next request normally.
    ros.map_publisher.publish(room_cloud())
    assert _map_seen(node, ros, len(ROOM))
    assert call(ros, node, request()).success
    assert ros.spin_until(lambda: len(markers.messages) == published_before + 1, 10)
    markers.close()
    progress.close()


def triangles_displayed(arrays) -> np.ndarray:
    """The triangles a display shows after `arrays`, one sorted row of 9 coordinates each."""
    points = [(p.x, p.y, p.z) for marker in assemble(arrays).values() for p in marker.points]
    return np.unique(np.reshape(points, (-1, 9)), axis=0)


def test_progressive_results_come_before_the_answer_and_a_cancel_puts_back_the_mesh(node, ros, room_map):
    """With `progressive` the markers show the preview while the job runs, the answer's mesh after it; a job
    cancelled after its preview went out leaves the topic showing the mesh from before it."""
    # without the window cache: a run of a map reconstructed before skips the preview (its mesh is shown)
    assert all(r.successful for r in set_parameters(ros, node, progressive=True, window_cache_mb=0))
    markers = Collector(ros, MarkerArray, f'{PRIVATE}/mesh_markers', LATE_JOINER)
    progress = Collector(ros, ReconstructionProgress, f'{PRIVATE}/progress')
    try:
        markers.wait_until_connected()
        progress.wait_until_connected()
        markers.settle()
        before = len(markers.messages)
        job = ros.reconstruct.call_async(request())
        assert ros.spin_until(lambda: len(markers.messages) > before or job.done(), CALL_TIMEOUT)
        assert not job.done(), 'no marker message before the answer'
        assert ros.spin_until(job.done, CALL_TIMEOUT), node.log_tail()
        response = job.result()
        assert response.success, response.message
        markers.settle()
        assert len(markers.messages) - before >= 2  # the preview, (interim updates,) the result
        node.wait_for_log(r'progressive: the preview went out \d+\.\d s into the job', timeout=5)
        faces = response.stats.message_faces
        check_markers(latched_markers(ros, faces), 'map', faces)
        result_shown = triangles_displayed(markers.messages)
        assert len(result_shown) == faces

        cancelled_job = ros.reconstruct.call_async(request(iterations=10_000))
        assert ros.spin_until(lambda: any(m.stage == 'preview' and m.done == 1 for m in progress.messages), 60)
        assert ros.spin_until(lambda: any(m.stage == 'optimize' for m in progress.messages), 60)
        assert ros.call(ros.cancel, Trigger.Request(), 10, node).success
        assert ros.spin_until(cancelled_job.done, 30), node.log_tail()
        assert_refused(cancelled_job.result(), 'cancelled', 'unchanged')
        markers.settle()
        np.testing.assert_array_equal(triangles_displayed(markers.messages), result_shown)
    finally:
        markers.close()
        progress.close()
        set_parameters(ros, node, progressive=False, window_cache_mb=1024)


@pytest.mark.parametrize('stage', ['messages', 'write'])
def test_a_cancel_after_the_optimisation_takes_effect_or_says_too_late(node, ros, room_map, out_dir, stage):
    """Cancel during the last stages: either nothing is published and no file is left, or the answer
    is "too late" and the job completes. Never an accepted cancel and a published mesh."""
    markers = Collector(ros, MarkerArray, f'{PRIVATE}/mesh_markers', LATE_JOINER)
    progress = Collector(ros, ReconstructionProgress, f'{PRIVATE}/progress')
    progress.wait_until_connected()
    markers.wait_until_connected()
    markers.settle()
    published_before = len(markers.messages)
    # The 2 M point map makes the messages stage long; the PNG preview the write stage.
    output = out_dir / 'cancelled.ply'
    job = ros.reconstruct.call_async(request(output_path=str(output), write_preview=True,
                                             cloud=_big_cloud() if stage == 'messages' else PointCloud2()))
    assert ros.spin_until(lambda: any(m.stage == stage for m in progress.messages), 120), node.log_tail()
    cancel = ros.call(ros.cancel, Trigger.Request(), 10, node)
    assert ros.spin_until(job.done, 120), node.log_tail()
    result = job.result()
    ros.spin_for(0.5)
    if cancel.success:
        assert_refused(result, 'cancelled', 'unchanged')
        assert len(markers.messages) == published_before
        assert list(out_dir.iterdir()) == []  # neither the mesh, the preview nor a partial file
    else:
        assert 'too late' in cancel.message and result.success, (cancel.message, result.message)
    markers.close()
    progress.close()


def _big_cloud():
    rng = np.random.default_rng(5)
    return arrays_to_cloud(ROOM[rng.integers(0, len(ROOM), 400_000)] + rng.normal(0, 0.001, (400_000, 3)),
                           frame_id='map', rgb_field=None)


def test_the_action_gives_feedback_and_the_services_result(node, ros, room_map):
    client = ActionClient(ros.node, ReconstructSceneAction, f'{PRIVATE}/reconstruct')
    assert client.wait_for_server(timeout_sec=20), node.log_tail()
    feedback = []
    sent = client.send_goal_async(ReconstructSceneAction.Goal(), feedback_callback=feedback.append)
    assert ros.spin_until(sent.done, 20)
    goal = sent.result()
    assert goal.accepted
    result_future = goal.get_result_async()
    assert ros.spin_until(result_future.done, CALL_TIMEOUT), node.log_tail()
    answer = result_future.result()
    assert answer.status == GoalStatus.STATUS_SUCCEEDED
    assert answer.result.success, answer.result.message
    assert answer.result.stats.faces == len(answer.result.mesh.triangles) > 100
    stages = [f.feedback.progress.stage for f in feedback]
    assert 'prepare' in stages and stages[-1] == 'done', stages
    client.destroy()


def test_the_action_cancel_stops_the_goal_and_publishes_nothing(node, ros, room_map):
    client = ActionClient(ros.node, ReconstructSceneAction, f'{PRIVATE}/reconstruct')
    assert client.wait_for_server(timeout_sec=20), node.log_tail()
    markers = Collector(ros, MarkerArray, f'{PRIVATE}/mesh_markers', LATE_JOINER)
    markers.wait_until_connected()
    markers.settle()
    published_before = len(markers.messages)
    feedback = []
    sent = client.send_goal_async(ReconstructSceneAction.Goal(iterations=10_000), feedback_callback=feedback.append)
    assert ros.spin_until(sent.done, 20) and sent.result().accepted
    goal = sent.result()
    assert ros.spin_until(lambda: any(f.feedback.progress.stage == 'optimize' for f in feedback), 30)
    # Meanwhile the service refuses, as for any second request.
    assert_refused(call(ros, node, request(), timeout=10), 'busy')
    cancelling = goal.cancel_goal_async()
    assert ros.spin_until(cancelling.done, 10)
    assert len(cancelling.result().goals_canceling) == 1
    result_future = goal.get_result_async()
    assert ros.spin_until(result_future.done, 30), node.log_tail()
    answer = result_future.result()
    assert answer.status == GoalStatus.STATUS_CANCELED
    assert not answer.result.success and 'cancelled' in answer.result.message
    ros.spin_for(0.5)
    assert len(markers.messages) == published_before
    markers.close()
    client.destroy()


def test_a_burst_of_calls_and_goals_during_a_job_is_all_answered(node, ros, room_map):
    """60 service calls and 30 action goals at once while a job runs: every one is answered "busy" (none is
    dropped by the node's queues) well within 90 s, and the job is then cancelled within a few seconds. The
    clients keep a deep history: every client of a service receives every answer on its one reply topic."""
    progress = Collector(ros, ReconstructionProgress, f'{PRIVATE}/progress')
    progress.wait_until_connected()
    deep = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    caller = ros.node.create_client(ReconstructScene, SERVICE, qos_profile=deep)
    client = ActionClient(ros.node, ReconstructSceneAction, f'{PRIVATE}/reconstruct', goal_service_qos_profile=deep,
                          result_service_qos_profile=deep, cancel_service_qos_profile=deep)
    assert client.wait_for_server(timeout_sec=20) and caller.wait_for_service(timeout_sec=20), node.log_tail()
    long_job = ros.reconstruct.call_async(request(iterations=10_000))
    try:
        assert ros.spin_until(lambda: any(m.stage == 'optimize' for m in progress.messages), 30), node.log_tail()
        started = time.monotonic()
        calls = [caller.call_async(request()) for _ in range(60)]
        goals = [client.send_goal_async(ReconstructSceneAction.Goal()) for _ in range(30)]
        assert ros.spin_until(lambda: all(f.done() for f in calls + goals), 90), (
            f'{sum(f.done() for f in calls)} of 60 calls and {sum(f.done() for f in goals)} of 30 goals answered')
        for answered in calls:
            assert_refused(answered.result(), 'busy')
        results = [goal.result().get_result_async() for goal in goals]
        assert ros.spin_until(lambda: all(f.done() for f in results), 90 - (time.monotonic() - started))
        assert all('busy' in f.result().result.message for f in results)
    finally:
        cancelled_at = time.monotonic()
        assert ros.call(ros.cancel, Trigger.Request(), 10, node).success
        assert ros.spin_until(long_job.done, 30), node.log_tail()
        progress.close()
        client.destroy()
        ros.node.destroy_client(caller)
    assert time.monotonic() - cancelled_at < 8.0 and 'cancelled' in long_job.result().message


def test_memory_levels_off_over_thirty_calls(node, ros, room_map):
    """Thirty consecutive requests, service and action taking turns, each computed anew (no window cache): the
    node's resident size stays within 20 % of its level after the fifth (what a job frees goes back to the
    system; no result is kept)."""
    client = ActionClient(ros.node, ReconstructSceneAction, f'{PRIVATE}/reconstruct')
    assert client.wait_for_server(timeout_sec=20), node.log_tail()
    assert set_parameters(ros, node, window_cache_mb=0)[0].successful
    levels = []
    try:
        for number in range(30):
            if number % 2:
                answer = _run_goal(ros, client, ReconstructSceneAction.Goal(), node).result
            else:
                answer = call(ros, node, request())
            assert answer.success, answer.message
            assert answer.stats.windows_reused == 0
            levels.append(_resident_mb(node.process.pid))
    finally:
        set_parameters(ros, node, window_cache_mb=1024)
        client.destroy()
    assert max(levels[5:]) <= 1.2 * levels[4], [round(level) for level in levels]


def _run_goal(ros, client, goal, node):
    sent = client.send_goal_async(goal)
    assert ros.spin_until(sent.done, 20) and sent.result().accepted
    result = sent.result().get_result_async()
    assert ros.spin_until(result.done, CALL_TIMEOUT), node.log_tail()
    return result.result()


def _resident_mb(pid: int) -> float:
    status = open(f'/proc/{pid}/status').read()
    return int(re.search(r'VmRSS:\s+(\d+) kB', status).group(1)) / 1024


def test_confidence_colours_tell_observed_from_filled_in(node, ros, room_map):
    assert set_parameters(ros, node, color_mode='confidence')[0].successful
    try:
        response = call(ros, node, request())
        assert response.success, response.message
        triangles = list(assemble(latched_markers(ros, response.stats.message_faces)).values())
    finally:
        set_parameters(ros, node, color_mode='rgb')
    corners = np.array([(p.x, p.y, p.z) for m in triangles for p in m.points])
    colors = np.array([(c.r, c.g, c.b) for m in triangles for c in m.colors])
    assert len(colors) == len(corners)
    # Each vertex is coloured by its distance to the nearest observed point (not by the map's colours), on the
    # run's own scale: green within a grid cell (VOXEL), red at its trim distance (TRIM), the farthest it keeps.
    distance = cKDTree(room_map).query(corners)[0]
    expected = confidence_colors(np.clip((TRIM - distance) / (TRIM - VOXEL), 0.0, 1.0))
    np.testing.assert_allclose(colors, expected, atol=0.5 / 255 + 1e-6)
    green = (colors[:, 1] > 0.6) & (colors[:, 0] < 0.3)
    assert green.mean() > 0.5  # a map seen all over is mostly observed surface


def test_an_integer_for_a_floating_point_parameter_is_taken_at_run_time_too(node, ros):
    """As at start-up (`-p voxel_size:=1` is taken as 1.0): `ros2 param set ... voxel_size 1`."""
    assert set_parameters(ros, node, window_size=3.0)[0].successful
    try:
        result, = set_parameters(ros, node, voxel_size=1)
        assert result.successful, result.reason
        node.wait_for_log(r'parameter voxel_size: integer 1 taken as 1.0', timeout=10)
    finally:
        set_parameters(ros, node, voxel_size=VOXEL)
        set_parameters(ros, node, window_size=1.6)


def test_incompatible_map_publisher_is_reported(node, ros):
    start = len(node.log_text())
    volatile = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    # (No default event callbacks: this side's own incompatibility warning is expected here.)
    publisher = ros.node.create_publisher(PointCloud2, MAP_TOPIC, volatile,
                                          event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
    try:
        assert ros.spin_until(lambda: 'offers QoS incompatible' in node.log_text()[start:], 15), node.log_tail()
        assert 'DURABILITY' in node.log_text()[start:] and 'input_durability' in node.log_text()[start:]
    finally:
        ros.node.destroy_publisher(publisher)


def test_parameter_changes_are_validated(node, ros):
    rejected = {
        'voxel_size': -3.0, 'margin': 5.0, 'threshold': 1.5, 'profile': 'slow', 'color_mode': 'rainbow',
        'max_points': 10, 'checkpoint': '/nonexistent/model.pt', 'device': 'tpu', 'input_topic': '/other',
        'window_batch': 100_000, 'max_iterations': 10**9,
    }
    for name, value in rejected.items():
        result, = set_parameters(ros, node, **{name: value})
        assert not result.successful, name
        assert result.reason, name
    reasons = {name: set_parameters(ros, node, **{name: value})[0].reason for name, value in
               [('voxel_size', -3.0), ('checkpoint', '/nonexistent/model.pt'), ('input_topic', '/x')]}
    assert 'voxel_size' in reasons['voxel_size']
    # A grid finer than memory allows is refused when it is set, saying why, not when every request fails.
    tiny, = set_parameters(ros, node, voxel_size=1e-6)
    assert not tiny.successful and 'voxel_size must be in [0.001, 10]' in tiny.reason, tiny.reason
    fine, = set_parameters(ros, node, voxel_size=0.005)  # 1.6 m windows of 320 grid points
    assert not fine.successful and 'voxel_size must be at least window_size / 256' in fine.reason, fine.reason
    assert '/nonexistent/model.pt' in reasons['checkpoint'] and 'does not exist' in reasons['checkpoint']
    assert 'read-only' in reasons['input_topic'].lower() or 'read only' in reasons['input_topic'].lower()
    accepted, = set_parameters(ros, node, auto_min_period=12.5)
    assert accepted.successful
    assert node.alive


def test_cuda_without_cuda(node, ros):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    try:
        assert set_parameters(ros, node, strict_device=True)[0].successful  # device is cpu
        strict, = set_parameters(ros, node, device='cuda')
        assert not strict.successful and 'CUDA is not available' in strict.reason
        assert set_parameters(ros, node, strict_device=False)[0].successful
        start = len(node.log_text())
        relaxed, = set_parameters(ros, node, device='cuda')
        assert relaxed.successful, relaxed.reason
        node.wait_for_log(r'CUDA is not available; using the CPU', timeout=10, start=start)
    finally:
        set_parameters(ros, node, device='cpu', strict_device=False)


def test_ray_workers_give_the_same_mesh(node, ros, room_map):
    """ray_address: the node's windows on a local Ray runtime (started in the node's process at the request)."""
    pytest.importorskip('ray', reason='Ray is an optional extra: pip install sa_convonet_ros[ray]')
    alone = call(ros, node, ReconstructScene.Request(iterations=2))
    assert set_parameters(ros, node, ray_address='local', ray_workers=2, ray_threads=1)[0].successful
    try:
        on_ray = call(ros, node, ReconstructScene.Request(iterations=2))
    finally:
        set_parameters(ros, node, ray_address='')
    assert alone.success and on_ray.success, on_ray.message
    assert on_ray.stats.device.startswith('local Ray runtime: 2 worker(s) x 1 thread(s)')
    assert (on_ray.stats.faces, on_ray.stats.vertices) == (alone.stats.faces, alone.stats.vertices)
    assert node.alive


def test_automatic_mode_reuses_unchanged_windows(node, ros, room_map):
    stats = Collector(ros, ReconstructionStats, f'{PRIVATE}/stats', LATE_JOINER)
    stats.wait_until_connected()
    ros.spin_until(lambda: stats.messages, 2)  # the latched stats of an earlier test, if any
    seen = len(stats.messages)
    start = len(node.log_text())
    assert all(r.successful for r in set_parameters(ros, node, auto_min_period=0.0, auto_reconstruct=True))
    try:
        first_done = node.wait_for_log(r'automatic reconstruction done', timeout=60, start=start).end()
        # Grow the map in one corner: only the windows there run again.
        extra = np.random.default_rng(1).uniform([0.9, 0.7, 0.2], [1.1, 0.9, 0.4], (3000, 3))
        ros.map_publisher.publish(arrays_to_cloud(np.vstack([room_map, extra]), frame_id='map'))
        node.wait_for_log(r'automatic reconstruction (done|failed)', timeout=60, start=first_done)
        assert ros.spin_until(lambda: len(stats.messages) >= seen + 2, 10)
        latest = stats.messages[-1]
        assert latest.windows_reused > 0 and latest.windows_run > 0
        assert latest.input_points == len(room_map) + len(extra)
    finally:
        set_parameters(ros, node, auto_reconstruct=False)
        stats.close()
    ros.map_publisher.publish(room_cloud())


def test_two_million_point_map(node, ros):
    rng = np.random.default_rng(7)
    points = ROOM[rng.integers(0, len(ROOM), 2_000_000)] + rng.normal(0, 0.002, (2_000_000, 3))
    start = len(node.log_text())
    ros.map_publisher.publish(arrays_to_cloud(points, frame_id='map', rgb_field=None))
    node.wait_for_log(r'map received: 2000000 points', timeout=60, start=start)
    response = call(ros, node, request(), timeout=120)
    assert response.success, response.message
    assert response.stats.input_points == 2_000_000
    assert response.stats.points_used <= NODE_PARAMETERS['max_points']
    assert response.stats.faces > 100
    node.wait_for_log(r'has 2000000 points, more than max_points=200000: voxel-subsampled', timeout=1,
                      start=start)
    ros.map_publisher.publish(room_cloud())


def test_bad_start_up_parameters_and_corrupt_checkpoint_keep_the_node_answering(tmp_path, test_model,
                                                                                 ros_domain):
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a checkpoint' * 64)
    # Its own namespace and a relative service name, so it shares no names with the module's node.
    process = NodeProcess(tmp_path / 'node.log', {**NODE_PARAMETERS, 'checkpoint': str(corrupt),
                                                  'voxel_size': -5.0, 'service_name': 'reconstruct_scene'},
                          remappings={'__ns': '/corrupt'}, torch_threads=1)
    client = RosClient('test_corrupt_checkpoint')
    try:
        process.start()
        process.wait_for_log(r'invalid parameters: parameter voxel_size must be in \[0.001, 10\]', timeout=60)
        reconstruct = client.node.create_client(ReconstructScene, '/corrupt/reconstruct_scene')
        client.set_parameters = client.node.create_client(SetParameters, f'/corrupt{PRIVATE}/set_parameters')
        client.wait_for_service(reconstruct, 30, process)
        cloud = arrays_to_cloud(ROOM, frame_id='map')
        answer = client.call(reconstruct, request(cloud=cloud), CALL_TIMEOUT, process)
        assert_refused(answer, 'invalid parameters', 'voxel_size')

        # Fixing the size makes the node load the model, which fails: the reason is in every answer.
        assert set_parameters(client, process, voxel_size=VOXEL)[0].successful
        process.wait_for_log(r'cannot load the model: .*corrupt\.pt', timeout=30)
        answer = client.call(reconstruct, request(cloud=cloud), CALL_TIMEOUT, process)
        assert_refused(answer, 'no model loaded', str(corrupt), 'could not be read', 'checkpoint')

        # Another bad file is refused; pointing the checkpoint at a good one recovers.
        empty = tmp_path / 'empty.pt'
        empty.write_bytes(b'')
        refused, = set_parameters(client, process, checkpoint=str(empty))
        assert not refused.successful and 'empty' in refused.reason and str(empty) in refused.reason
        accepted, = set_parameters(client, process, checkpoint=str(test_model))
        assert accepted.successful, accepted.reason
        answer = client.call(reconstruct, request(cloud=cloud), CALL_TIMEOUT, process)
        assert answer.success, answer.message
    finally:
        client.close()
        code = process.stop()
    assert code == 0, process.log_tail()


@pytest.mark.parametrize('gap', [0.0, 0.3])
def test_ctrl_c_twice_during_a_reconstruction_exits_quietly(tmp_path, test_model, ros_domain, gap):
    """Under `ros2 launch` a terminal's Ctrl-C reaches the node twice (its process group, then launch's
    own SIGINT): the node cancels its job and exits with 0, without a traceback."""
    process = NodeProcess(tmp_path / 'node.log', {**NODE_PARAMETERS, 'checkpoint': str(test_model),
                                                  'service_name': 'reconstruct_scene'},
                          remappings={'__ns': '/ctrl_c'}, torch_threads=1)
    client = RosClient('test_ctrl_c')
    try:
        process.start()
        reconstruct = client.node.create_client(ReconstructScene, '/ctrl_c/reconstruct_scene')
        client.wait_for_service(reconstruct, 60, process)
        reconstruct.call_async(request(cloud=room_cloud(), iterations=10_000))
        assert client.spin_until(lambda: 'progress: optimize' in process.log_text(), 60), process.log_tail()
        process.process.send_signal(signal.SIGINT)
        time.sleep(gap)
        process.process.send_signal(signal.SIGINT)
        code = process.process.wait(30)
    finally:
        client.close()
        process.stop()
    log = process.log_text()
    assert code == 0, log[-3000:]
    assert 'Traceback' not in log and 'KeyboardInterrupt' not in log and 'Exception ignored' not in log, log[-3000:]
