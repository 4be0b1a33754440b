"""Benchmark: the node's resident memory over repeated identical requests (its steady state).

    python -m bench.bench_node_memory --calls 30 --iterations 0 --profile fast --seed 7 --setting dense --crop 2.0
    python -m bench.bench_node_memory --cloud floor.npy --calls 1 --iterations -1 --profile auto --output floor.ply

Starts the installed node as the launch file does (the shipped model and params file, `device: cpu` and
the given profile), publishes a scanned room (its corner of `--crop` x `--crop` metres, to keep the calls
short) as the latched map, then calls /reconstruct_scene `--calls` times with the same request, each computed
anew (the node's window cache is off unless `--window-cache-mb` is given), and prints the node's RSS (from
/proc) after each call, the level after the last call relative to the level after the fifth, and the node's
peak RSS (the kernel's high-water mark). With `--cloud` the map is that file (.npy, .ply, ...; grey where it
has no colours) instead of a scanned room, and `--output` has each call write the mesh there. Needs the
environment of scripts/ros_env.sh.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import PointCloud2

from sa_convonet_ros.io import read_point_cloud
from sa_convonet_ros.ros.client import LATCHED, NodeProcess, RosClient, map_message
from sa_convonet_ros.ros.demo import scan_room


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident size now (VmRSS) or at its peak (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sa_convonet_ros.srv import ReconstructScene

    if args.cloud:
        cloud = read_point_cloud(args.cloud)
        points = cloud.points
        colors = cloud.colors if cloud.colors is not None else np.full((len(points), 3), 0.6)
        print(f"map: {args.cloud}, {len(points)} points", flush=True)
    else:
        _, points, colors = scan_room(args.seed, args.setting)
    if args.crop > 0 and not args.cloud:
        keep = np.all(points[:, :2] - points[:, :2].min(axis=0) < args.crop, axis=1)
        points, colors = points[keep], colors[keep]
        print(f"map: the {args.crop} x {args.crop} m corner, {len(points)} points", flush=True)
    client = RosClient("bench_node_memory")
    parameters = {"device": "cpu", "profile": args.profile, "window_cache_mb": args.window_cache_mb}
    with tempfile.TemporaryDirectory() as folder, NodeProcess(Path(folder) / "node.log", parameters) as node:
        try:
            node.wait_for_log(r"ready: ", timeout=120)
            print(f"node started: {resident_mb(node.process.pid):.0f} MB", flush=True)
            client.node.create_publisher(PointCloud2, "map_cloud", LATCHED).publish(map_message(points, colors))
            service = client.node.create_client(ReconstructScene, "/reconstruct_scene")
            client.wait_for_service(service, timeout=60, process=node)
            node.wait_for_log(r"map received", timeout=60)
            levels = []
            for number in range(1, args.calls + 1):
                started = time.monotonic()
                output = str(Path(args.output).resolve()) if args.output else ""
                request = ReconstructScene.Request(iterations=args.iterations, output_path=output)
                response = client.call(service, request, args.timeout, node)
                if not response.success:
                    print(f"call {number} failed: {response.message}", file=sys.stderr)
                    return 1
                levels.append(resident_mb(node.process.pid))
                print(f"call {number:3d}: {time.monotonic() - started:5.1f} s, {response.stats.faces} faces "
                      f"({response.stats.message_faces} in the messages), RSS {levels[-1]:.0f} MB, peak "
                      f"{resident_mb(node.process.pid, 'VmHWM'):.0f} MB", flush=True)
        finally:
            client.close()
    if len(levels) >= 5:
        print(f"RSS after call 1: {levels[0]:.0f} MB, after call 5: {levels[4]:.0f} MB, after call "
              f"{len(levels)}: {levels[-1]:.0f} MB ({100 * (levels[-1] / levels[4] - 1):+.1f} % vs call 5); "
              f"highest after call 5: {max(levels[4:]):.0f} MB")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=0, help="per request; -1: the profile's value")
    parser.add_argument("--profile", default="fast", help="the node's profile parameter")
    parser.add_argument("--seed", type=int, default=7, help="room seed")
    parser.add_argument("--setting", default="dense", choices=["dense", "sparse"])
    parser.add_argument("--crop", type=float, default=2.0, help="metres of the room's corner to keep (0: all)")
    parser.add_argument("--cloud", default="", help="a point-cloud file to publish as the map instead of a room")
    parser.add_argument("--output", default="", help="mesh file each call writes (the request's output_path)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a call may take")
    parser.add_argument("--window-cache-mb", type=int, default=0,
                        help="the node's window cache (0, the default here: every call computed anew, as a soak "
                             "of full runs needs; the node's own default keeps 1024 MB)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
