"""The generated interfaces of sa_convonet_ros, the installed package, and real rclpy with them.

Needs the colcon build and scripts/ros_env.sh (see conftest.py).
"""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE_PACKAGE = REPO / "sa_convonet_ros"

REQUEST_FIELDS = {
    "use_region": "boolean",
    "region_min": "geometry_msgs/Point",
    "region_max": "geometry_msgs/Point",
    "cloud": "sensor_msgs/PointCloud2",
    "iterations": "int32",
    "max_seconds": "double",
    "output_path": "string",
    "write_preview": "boolean",
    "omit_mesh": "boolean",
}
RESPONSE_FIELDS = {
    "success": "boolean",
    "message": "string",
    "mesh": "shape_msgs/Mesh",
    "stats": "sa_convonet_ros/ReconstructionStats",
}
STATS_FIELDS = {
    "input_points": "uint64",
    "points_used": "uint64",
    "stray_points_removed": "uint64",
    "windows_run": "uint32",
    "windows_skipped": "uint32",
    "windows_reused": "uint32",
    "windows_warm_started": "uint32",
    "iterations": "uint32",
    "steps_run": "uint64",
    "steps_planned": "uint64",
    "out_of_time": "boolean",
    "skipped_for_time": "sequence<string>",
    "device": "string",
    "profile": "string",
    "point_spacing": "double",
    "noise": "double",
    "window_size": "double",
    "voxel_size": "double",
    "stage_names": "sequence<string>",
    "stage_seconds": "sequence<double>",
    "total_seconds": "double",
    "vertices": "uint64",
    "faces": "uint64",
    "message_faces": "uint64",
    "bbox_min": "geometry_msgs/Point",
    "bbox_max": "geometry_msgs/Point",
    "output_path": "string",
    "preview_path": "string",
}
PROGRESS_FIELDS = {
    "header": "std_msgs/Header",
    "stage": "string",
    "done": "uint32",
    "total": "uint32",
    "fraction": "float",
    "message": "string",
}


def _point(x, y, z):
    from geometry_msgs.msg import Point

    return Point(x=float(x), y=float(y), z=float(z))


def _stats():
    from sa_convonet_ros.msg import ReconstructionStats

    return ReconstructionStats(
        input_points=123456789012,
        points_used=40000,
        windows_run=12,
        windows_skipped=3,
        windows_reused=2,
        iterations=300,
        device="cpu",
        profile="fast",
        stage_names=["preprocess", "optimize", "mesh"],
        stage_seconds=[0.25, 12.5, 1.75],
        total_seconds=14.5,
        vertices=5000,
        faces=9990,
        message_faces=9990,
        bbox_min=_point(-1.5, -2.0, 0.0),
        bbox_max=_point(3.0, 4.25, 2.5),
        output_path="/tmp/scene.ply",
        preview_path="/tmp/scene.png",
    )


def _cloud(n=4):
    import numpy as np
    from sensor_msgs.msg import PointCloud2, PointField

    xyz = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    return PointCloud2(
        height=1,
        width=n,
        fields=[
            PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
            for i, name in enumerate("xyz")
        ],
        is_bigendian=False,
        point_step=12,
        row_step=12 * n,
        data=xyz.tobytes(),
        is_dense=True,
    )


def test_service_fields():
    from sa_convonet_ros.srv import ReconstructScene

    assert ReconstructScene.Request.get_fields_and_field_types() == REQUEST_FIELDS
    assert ReconstructScene.Response.get_fields_and_field_types() == RESPONSE_FIELDS

    request = ReconstructScene.Request(
        use_region=True,
        region_min=_point(-1, -1, 0),
        region_max=_point(1, 1, 2),
        cloud=_cloud(),
        iterations=-1,
        output_path="/tmp/out.ply",
        write_preview=True,
    )
    assert request.iterations == -1 and request.use_region and request.write_preview
    assert request.cloud.width == 4 and len(request.cloud.data) == 48

    # `ros2 service call ... "{}"` means what the node is configured to do: the configured iterations
    # (-1) and the node's time budget (-1), not a feed-forward run.
    defaults = ReconstructScene.Request()
    assert not defaults.use_region and defaults.iterations == -1 and defaults.output_path == ""
    assert defaults.max_seconds == -1.0 and not defaults.omit_mesh  # programmatic clients get the mesh
    assert defaults.cloud.width == 0 and len(defaults.cloud.data) == 0

    response = ReconstructScene.Response(success=False, message="no map received yet")
    assert response.stats.vertices == 0 and len(response.mesh.triangles) == 0


def test_action_goal_result_and_feedback_are_the_service_request_response_and_progress():
    from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
    from sa_convonet_ros.srv import ReconstructScene

    assert ReconstructSceneAction.Goal.get_fields_and_field_types() == REQUEST_FIELDS
    assert ReconstructSceneAction.Result.get_fields_and_field_types() == RESPONSE_FIELDS
    assert ReconstructSceneAction.Feedback.get_fields_and_field_types() == {
        "progress": "sa_convonet_ros/ReconstructionProgress"}
    goal, request = ReconstructSceneAction.Goal(), ReconstructScene.Request()
    assert all(getattr(goal, name) == getattr(request, name) for name in REQUEST_FIELDS)  # same defaults


def test_stats_and_progress_fields():
    from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats

    assert ReconstructionStats.get_fields_and_field_types() == STATS_FIELDS
    assert ReconstructionProgress.get_fields_and_field_types() == PROGRESS_FIELDS

    stats = _stats()
    assert list(stats.stage_names) == ["preprocess", "optimize", "mesh"]
    assert list(stats.stage_seconds) == [0.25, 12.5, 1.75]
    assert stats.input_points == 123456789012  # needs 64 bits

    progress = ReconstructionProgress(stage="optimize", done=3, total=12, fraction=0.25, message="3/12")
    progress.header.frame_id = "map"
    assert progress.done == 3 and progress.total == 12 and progress.fraction == pytest.approx(0.25)


def test_serialization_round_trip():
    from rclpy.serialization import deserialize_message, serialize_message

    from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
    from sa_convonet_ros.srv import ReconstructScene

    stats = _stats()
    data = serialize_message(stats)
    assert isinstance(data, bytes) and len(data) > 100
    assert deserialize_message(data, ReconstructionStats) == stats

    progress = ReconstructionProgress(stage="mesh", done=1, total=2, fraction=0.5, message="marching cubes")
    progress.header.frame_id = "map"
    progress.header.stamp.sec = 42
    assert deserialize_message(serialize_message(progress), ReconstructionProgress) == progress

    request = ReconstructScene.Request(use_region=True, region_max=_point(1, 2, 3), cloud=_cloud(), iterations=7)
    back = deserialize_message(serialize_message(request), ReconstructScene.Request)
    assert back == request and bytes(back.cloud.data) == bytes(request.cloud.data)

    response = ReconstructScene.Response(success=True, message="ok", stats=stats)
    response.mesh.vertices = [_point(0, 0, 0), _point(1, 0, 0), _point(0, 1, 0)]
    assert deserialize_message(serialize_message(response), ReconstructScene.Response) == response


def test_source_modules_and_interfaces_in_one_process():
    import sa_convonet_ros
    import sa_convonet_ros.msg
    import sa_convonet_ros.srv

    assert sa_convonet_ros.__version__ == "0.1.0"
    search = [os.path.realpath(p) for p in sa_convonet_ros.__path__]
    assert str(SOURCE_PACKAGE) in search, search
    # The generated modules come from the install tree, never from the sources.
    assert not (SOURCE_PACKAGE / "msg").exists() and not (SOURCE_PACKAGE / "srv").exists()
    assert "site-packages" in sa_convonet_ros.msg.__file__
    if (SOURCE_PACKAGE / "config.py").exists():
        import sa_convonet_ros.config  # a core module, importable beside the interfaces

        assert os.path.realpath(sa_convonet_ros.config.__file__) == str(SOURCE_PACKAGE / "config.py")


@pytest.mark.parametrize("cwd", ["repo", "elsewhere"])
def test_fresh_process_imports_both(cwd, tmp_path):
    """From the repository root the sources are found first, elsewhere the install tree: both work."""
    script = textwrap.dedent(
        """
        import os, sys
        import sa_convonet_ros
        from sa_convonet_ros.msg import ReconstructionStats
        from sa_convonet_ros.srv import ReconstructScene
        import sa_convonet_ros.msg
        dirs = [os.path.realpath(p) for p in sa_convonet_ros.__path__]
        assert sys.argv[1] in dirs, dirs
        print(os.path.realpath(sa_convonet_ros.__file__))
        """
    )
    run_dir = REPO if cwd == "repo" else tmp_path
    out = subprocess.run(
        [sys.executable, "-c", script, str(SOURCE_PACKAGE)],
        cwd=run_dir, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(SOURCE_PACKAGE / "__init__.py")


def test_installed_package_layout():
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    from ament_index_python.resources import get_resource

    prefix = Path(get_package_prefix("sa_convonet_ros"))
    assert prefix == Path(os.environ["SA_CONVONET_ROS_PREFIX"])
    share = Path(get_package_share_directory("sa_convonet_ros"))
    assert (share / "package.xml").is_file()
    for interface in ("msg/ReconstructionStats.msg", "msg/ReconstructionProgress.msg", "srv/ReconstructScene.srv"):
        assert (share / interface).is_file(), interface
    listed, _ = get_resource("rosidl_interfaces", "sa_convonet_ros")
    for interface in ("msg/ReconstructionStats.idl", "msg/ReconstructionProgress.idl", "srv/ReconstructScene.idl"):
        assert interface in listed.splitlines()
    for folder in ("launch", "config"):
        if (REPO / folder).is_dir() and any((REPO / folder).iterdir()):
            assert (share / folder).is_dir(), folder


def test_node_executable_installed():
    prefix = Path(os.environ["SA_CONVONET_ROS_PREFIX"])
    exe = prefix / "lib" / "sa_convonet_ros" / "reconstruction_node"
    assert exe.is_file() and os.access(exe, os.X_OK)
    text = exe.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    compile(text, str(exe), "exec")
    # `python3` on PATH is the venv's, which has rclpy and the package.
    which = subprocess.run(
        ["python3", "-c", "import sys, rclpy, sa_convonet_ros.srv; print(sys.prefix)"],
        capture_output=True, text=True, timeout=60,
    )
    assert which.returncode == 0, which.stderr
    assert os.path.realpath(which.stdout.strip()) == os.path.realpath(os.environ["VIRTUAL_ENV"])
    if not (SOURCE_PACKAGE / "ros" / "node.py").exists():
        pytest.skip("sa_convonet_ros/ros/node.py is not written yet")
    from sa_convonet_ros.ros.node import main

    assert callable(main)


def test_service_call_over_dds(ros_domain):
    """A real rclpy service of the generated type answers a client in the random test domain."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from sa_convonet_ros.msg import ReconstructionProgress
    from sa_convonet_ros.srv import ReconstructScene

    assert os.environ["ROS_DOMAIN_ID"] == str(ros_domain)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        server = rclpy.create_node("interfaces_test_server", context=context)
        client_node = rclpy.create_node("interfaces_test_client", context=context)
        received = []

        def handle(request, response):
            response.success = True
            response.message = f"{request.cloud.width} points, iterations {request.iterations}"
            response.stats.input_points = request.cloud.width
            response.stats.stage_names = ["echo"]
            response.stats.stage_seconds = [0.0]
            return response

        server.create_service(ReconstructScene, "reconstruct_scene", handle)
        publisher = server.create_publisher(ReconstructionProgress, "reconstruction_progress", 10)
        client_node.create_subscription(
            ReconstructionProgress, "reconstruction_progress", received.append, 10
        )
        client = client_node.create_client(ReconstructScene, "reconstruct_scene")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(server)
        executor.add_node(client_node)

        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(ReconstructScene.Request(cloud=_cloud(5), iterations=-1))
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        response = future.result()
        assert response is not None and response.success
        assert response.message == "5 points, iterations -1"
        assert response.stats.input_points == 5 and list(response.stats.stage_names) == ["echo"]

        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            publisher.publish(ReconstructionProgress(stage="optimize", done=1, total=2, fraction=0.5))
            executor.spin_once(timeout_sec=0.1)
        assert received and received[0].stage == "optimize" and received[0].done == 1
        executor.shutdown()
        server.destroy_node()
        client_node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
