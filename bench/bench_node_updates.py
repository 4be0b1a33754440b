"""Benchmark: what the node's marker topic carries when a map changes in one corner, against the whole mesh.

    python -m bench.bench_node_updates --profile fast --seed 7 --setting dense [--progressive]

Starts the installed node as the launch file does (`device: cpu`, the given profile, its window cache),
publishes the demo's scanned room as the latched map and calls /reconstruct_scene; then adds a 0.3 m box
in a corner of the room (inside one window's core, clear of its neighbours' margins) to the map and calls
again. Prints, per call, the time, the windows run and reused, and the MarkerArray messages received on
~/mesh_markers: their serialized bytes and triangles, and when the first of them came (with `--progressive`,
the preview). Needs the environment of scripts/ros_env.sh.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from sa_convonet_ros.ros.client import LATCHED, NodeProcess, RosClient, map_message
from sa_convonet_ros.ros.demo import scan_room
from sa_convonet_ros.ros.node import MARKER_QOS
from sa_convonet_ros.ros.settings import NODE_NAME


def box_surface(low: np.ndarray, size: float = 0.3, spacing: float = 0.01) -> np.ndarray:
    """The surface of a cube of `size` metres from its corner `low`, sampled `spacing` apart."""
    u, v = (g.ravel() for g in np.meshgrid(np.arange(0, size, spacing), np.arange(0, size, spacing)))
    sides = [np.insert(np.c_[u, v], axis, side, axis=1) for axis in range(3) for side in (0.0, size)]
    return low + np.concatenate(sides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sa_convonet_ros.srv import ReconstructScene

    _, points, colors = scan_room(args.seed, args.setting)
    floor = points[:, 2].min()
    # a corner of the room, the box inside the core of the window (1.2 m) there, on the floor
    corner = np.floor(points[:, :2].min(axis=0) / 1.2 + 1) * 1.2 + 0.4
    box = box_surface(np.array([corner[0], corner[1], floor]))
    grown = np.vstack([points, box]), np.vstack([colors, np.full((len(box), 3), 0.8)])
    client = RosClient("bench_node_updates")
    received: list[MarkerArray] = []
    arrivals: list[float] = []

    def receive(array: MarkerArray) -> None:
        received.append(array)
        arrivals.append(time.monotonic())

    print(f"map: {len(points)} points; then a 0.3 m box of {len(box)} points at {corner.round(2)} m\n")
    print("| call | seconds | first markers after (s) | windows run / reused | messages | bytes | triangles sent "
          "| whole mesh |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as folder, \
            NodeProcess(Path(folder) / "node.log", {"device": "cpu", "profile": args.profile,
                                                     "progressive": args.progressive}) as node:
        node.wait_for_log(r"ready: ", timeout=120)
        client.node.create_subscription(MarkerArray, f"/{NODE_NAME}/mesh_markers", receive, MARKER_QOS)
        publisher = client.node.create_publisher(PointCloud2, "map_cloud", LATCHED)
        service = client.node.create_client(ReconstructScene, "/reconstruct_scene")
        client.wait_for_service(service, 60, node)
        for label, (cloud, cloud_colors) in (("the room", (points, colors)), ("the room with a box", grown)):
            start = len(node.log_text())
            publisher.publish(map_message(cloud, cloud_colors))
            node.wait_for_log(rf"map received: {len(cloud)} points", timeout=60, start=start)
            before, started = len(received), time.monotonic()
            response = client.call(service, ReconstructScene.Request(iterations=-1, omit_mesh=True), 1800, node)
            seconds = time.monotonic() - started
            client.spin_until(lambda: False, 2.0)  # the markers published with the answer
            sent = received[before:]
            stats = response.stats
            triangles = sum(len(m.points) // 3 for array in sent for m in array.markers if m.action == Marker.ADD)
            whole = any(m.action == Marker.DELETEALL for array in sent for m in array.markers)
            first = arrivals[before] - started if len(arrivals) > before else float("nan")
            print(f"| {label} | {seconds:.1f} | {first:.1f} | {stats.windows_run} / {stats.windows_reused} | "
                  f"{len(sent)} | "
                  f"{sum(len(serialize_message(a)) for a in sent):,} | {triangles:,} of {stats.message_faces:,} | "
                  f"{'yes' if whole else 'no'} |", flush=True)
    client.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="fast", help="the node's profile")
    parser.add_argument("--seed", type=int, default=7, help="room seed (the demo's)")
    parser.add_argument("--setting", default="dense", choices=["dense", "sparse"], help="simulated scan setting")
    parser.add_argument("--progressive", action="store_true", help="the node's progressive results on")
    return parser


if __name__ == "__main__":
    sys.exit(main())
