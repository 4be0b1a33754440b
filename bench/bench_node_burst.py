"""Benchmark: a burst of requests while the node is busy, and how long a cancel takes.

    python -m bench.bench_node_burst --calls 100 --clients 100 --goals 30

Starts the installed node as the launch file does (`profile: fast`, `device: cpu`), publishes a 2 x 2 m
corner of a scanned room as the latched map and starts a long job (10,000 steps per window). While it
runs: `--calls` service calls from one client at once, then one call from each of `--clients` clients,
then `--goals` action goals at once. Prints how many were answered and when the last answer came, then
cancels the job and prints how long it took to end. Needs the environment of scripts/ros_env.sh.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rclpy.action import ActionClient
from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from sa_convonet_ros.ros.client import LATCHED, NodeProcess, RosClient, map_message
from sa_convonet_ros.ros.demo import scan_room
from sa_convonet_ros.ros.settings import NODE_NAME


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
    from sa_convonet_ros.msg import ReconstructionProgress
    from sa_convonet_ros.srv import ReconstructScene

    _, points, colors = scan_room(args.seed, "sparse")
    keep = np.all(points[:, :2] - points[:, :2].min(axis=0) < 2.0, axis=1)
    client = RosClient("bench_node_burst")
    with tempfile.TemporaryDirectory() as folder, \
            NodeProcess(Path(folder) / "node.log", {"device": "cpu", "profile": "fast"}) as node:
        node.wait_for_log(r"ready: ", timeout=120)
        client.node.create_publisher(PointCloud2, "map_cloud", LATCHED).publish(map_message(points[keep], colors[keep]))
        node.wait_for_log(r"map received", timeout=60)
        stages = []
        client.node.create_subscription(ReconstructionProgress, f"/{NODE_NAME}/progress",
                                        lambda msg: stages.append(msg.stage), 10)
        service = client.node.create_client(ReconstructScene, "/reconstruct_scene")
        client.wait_for_service(service, 30, node)
        long_job = service.call_async(ReconstructScene.Request(iterations=10_000, max_seconds=0.0))
        if not client.spin_until(lambda: "optimize" in stages, 60):
            raise SystemExit(f"the long job did not start:\n{node.log_tail()}")

        def burst(label: str, futures: list) -> None:
            started = time.monotonic()
            client.spin_until(lambda: all(f.done() for f in futures), args.timeout)
            answered = sum(f.done() for f in futures)
            print(f"| {label} | {len(futures)} | {answered} | {time.monotonic() - started:.1f} |", flush=True)

        print("| burst during a job | sent | answered | seconds to the last answer |\n|---|---:|---:|---:|")
        burst("calls from one client", [service.call_async(ReconstructScene.Request(iterations=-1))
                                        for _ in range(args.calls)])
        depth = QoSProfile(depth=args.client_depth, history=HistoryPolicy.KEEP_LAST)
        clients = [client.node.create_client(ReconstructScene, "/reconstruct_scene", qos_profile=depth)
                   for _ in range(args.clients)]
        for each in clients:
            client.wait_for_service(each, 30, node)
        burst("one call from each of many clients", [each.call_async(ReconstructScene.Request(iterations=-1))
                                                     for each in clients])
        actions = ActionClient(client.node, ReconstructSceneAction, f"/{NODE_NAME}/reconstruct")
        actions.wait_for_server(timeout_sec=30)
        burst("action goals", [actions.send_goal_async(ReconstructSceneAction.Goal()) for _ in range(args.goals)])
        cancel = client.node.create_client(Trigger, f"/{NODE_NAME}/cancel")
        started = time.monotonic()
        client.call(cancel, Trigger.Request(), 30, node)
        client.spin_until(long_job.done, 60)
        print(f"\ncancel to the job's answer: {time.monotonic() - started:.1f} s ({long_job.result().message})")
    client.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="service calls from one client at once")
    parser.add_argument("--clients", type=int, default=100, help="clients calling once each")
    parser.add_argument("--goals", type=int, default=30, help="action goals at once")
    parser.add_argument("--client-depth", type=int, default=10,
                        help="history depth of the many clients' QoS (every client receives every answer)")
    parser.add_argument("--seed", type=int, default=7, help="room seed")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a burst's answers")
    return parser


if __name__ == "__main__":
    sys.exit(main())
