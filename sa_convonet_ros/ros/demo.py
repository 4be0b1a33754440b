"""The end-to-end demo: a generated room, mapped by a simulated depth camera, reconstructed by the real node.

    python -m sa_convonet_ros.ros.demo [--seed 7] [--setting dense|sparse] [--out out/demo]

1. generates a furnished room and simulates a depth camera moving through it (ray casting), coloured by
   object, accumulated and voxel-filtered into one map, as a mapping stack would publish it;
2. starts the installed reconstruction node exactly as the launch file does (params file + overrides);
3. publishes the map as a latched (transient_local) sensor_msgs/PointCloud2 on `map_cloud`;
4. calls /reconstruct_scene, printing the node's progress while it runs;
5. receives the published RViz markers like a late RViz would, and checks them;
6. writes the mesh (PLY) and a PNG preview, prints the statistics, the accuracy against the room's exact
   ground truth (Chamfer-L1, normal consistency, F-scores over the surface the camera observed) and the
   holes: the observed surface the mesh missed, also drawn in red over the mesh in `holes.png`.
The node runs its default profile (`auto`) unless `--profile` names another.
Needs the environment of scripts/ros_env.sh (scripts/demo.sh sets it up).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from sa_convonet_ros.ros.client import LATCHED, NODE_NAME, NodeProcess, RosClient, map_message
from sa_convonet_ros.ros.markers import assemble
from sa_convonet_ros.ros.node import MARKER_QOS


def object_colors(scene, points: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] per point: the colour of the object (primitive label) whose surface is nearest."""
    distances = np.stack([np.abs(p.sdf(points)) for p in scene.primitives], axis=1)
    nearest = distances.argmin(axis=1)
    palette = {}
    for label in set(scene.labels):
        digest = hashlib.sha1(label.encode()).digest()
        palette[label] = 0.35 + 0.6 * np.frombuffer(digest[:3], dtype=np.uint8) / 255.0
    table = np.array([palette[label] for label in scene.labels])
    return table[nearest].astype(np.float32)


class _ProgressPrinter:
    """Prints the node's progress messages: each new stage, and within a stage every 5 s at most."""

    def __init__(self):
        self.stage, self.printed = None, 0.0

    def __call__(self, msg) -> None:
        now = time.monotonic()
        if msg.stage != self.stage or now - self.printed > 5.0:
            self.stage, self.printed = msg.stage, now
            print(f"[demo]   progress: {msg.stage} {msg.done}/{msg.total} ({100 * msg.fraction:.0f}%)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene, points, colors, scan = scan_room(args.seed, args.setting)
    response, elapsed, markers = reconstruct_with_the_node(args, out, points, colors)
    if not response.success:
        print(f"[demo] reconstruction failed: {response.message}", file=sys.stderr)
        return 1
    print_outcome(response, elapsed, markers)
    print_quality(scene, scan, response.stats.output_path, args.seed, out / "holes.png")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="End-to-end demo of the sa_convonet_ros node")
    parser.add_argument("--seed", type=int, default=7, help="room seed")
    parser.add_argument("--setting", default="dense", choices=["dense", "sparse"], help="simulated scan setting")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--profile", default="", help="the node's profile; empty: its default (auto)")
    parser.add_argument("--iterations", type=int, default=-1, help="-1: the profile's value")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default="", help="model file; empty: the shipped model")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the reconstruction")
    return parser


def scan_room(seed: int, setting: str):
    """The room, its accumulated scan, the scan's colours by object and what the scan did (ScanInfo)."""
    from sa_convonet_ros.synthetic import generate_room, simulate_scans

    print(f"[demo] room seed {seed}: generating and scanning ({setting})", flush=True)
    scene = generate_room(seed)
    points, scan = simulate_scans(scene, setting, seed=seed)
    low, high = scene.bounds
    print(f"[demo] map: {len(points)} points from {len(scan.camera_poses)} camera poses, room "
          f"{high[0] - low[0]:.1f} x {high[1] - low[1]:.1f} x {high[2] - low[2]:.1f} m", flush=True)
    return scene, points, object_colors(scene, points), scan


def reconstruct_with_the_node(args, out: Path, points: np.ndarray, colors: np.ndarray):
    """(service response, seconds the call took, marker arrays received afterwards)."""
    from sa_convonet_ros.msg import ReconstructionProgress
    from sa_convonet_ros.srv import ReconstructScene

    parameters = {"device": args.device, "output_dir": str(out)}
    if args.profile:
        parameters["profile"] = args.profile
    if args.checkpoint:  # an empty override cannot be given on the command line; empty is the default
        parameters["checkpoint"] = args.checkpoint
    markers: list[MarkerArray] = []
    client = RosClient("sa_convonet_demo")
    with NodeProcess(out / "node.log", parameters) as process:
        try:
            process.wait_for_log(r"ready: ", timeout=120)
            map_publisher = client.node.create_publisher(PointCloud2, "map_cloud", LATCHED)
            client.node.create_subscription(ReconstructionProgress, f"/{NODE_NAME}/progress", _ProgressPrinter(), 10)
            service = client.node.create_client(ReconstructScene, "/reconstruct_scene")
            client.wait_for_service(service, timeout=60, process=process)
            map_publisher.publish(map_message(points, colors, frame_id="map"))
            print("[demo] map published (latched); waiting for the node to take it", flush=True)
            process.wait_for_log(r"map received", timeout=60)

            request = ReconstructScene.Request(iterations=args.iterations, output_path=str(out / "mesh.ply"),
                                               write_preview=True)
            print("[demo] calling /reconstruct_scene", flush=True)
            started = time.monotonic()
            response = client.call(service, request, timeout=args.timeout, process=process)
            elapsed = time.monotonic() - started
            if response.success:
                # a late subscriber, like an RViz opened after the fact, still gets the mesh: the topic's history
                client.node.create_subscription(MarkerArray, f"/{NODE_NAME}/mesh_markers", markers.append,
                                                MARKER_QOS)
                faces = response.stats.message_faces
                client.spin_until(lambda: _triangles(assemble(markers).values()) == faces, timeout=30)
        finally:
            client.close()
    return response, elapsed, markers


def print_outcome(response, elapsed: float, markers: list) -> None:
    stats = response.stats
    print(f"[demo] {response.message}")
    print(f"[demo] service call: {elapsed:.1f} s; node stages: "
          + ", ".join(f"{n} {s:.1f}s" for n, s in zip(stats.stage_names, stats.stage_seconds)))
    print(f"[demo] windows: {stats.windows_run} run, {stats.windows_skipped} skipped; {stats.iterations} "
          f"iterations; device {stats.device}; profile {stats.profile}")
    print(f"[demo] mesh: {stats.vertices} vertices, {stats.faces} faces -> {stats.output_path}")
    print(f"[demo] preview: {stats.preview_path}")
    if not markers:
        print("[demo] no markers received", file=sys.stderr)
        return
    lists = [m for m in assemble(markers).values() if m.type == Marker.TRIANGLE_LIST]
    blocks = len({m.ns for m in lists})
    print(f"[demo] RViz markers: {len(lists)} TRIANGLE_LIST marker(s) in {blocks} block(s), {_triangles(lists)} "
          f"triangles, frame '{lists[0].header.frame_id if lists else '-'}'")


def _triangles(markers) -> int:
    return sum(len(m.points) // 3 for m in markers)


def print_quality(scene, scan, mesh_path: str, seed: int, holes_png: Path) -> None:
    """Accuracy against the room's exact surface, completeness and holes on the surface the camera observed
    (in view, in range, in sight), and a picture of the mesh with the observed surface it missed in red."""
    import trimesh

    from sa_convonet_ros.metrics import evaluate_mesh, hole_metrics
    from sa_convonet_ros.preview import render_mesh_png
    from sa_convonet_ros.synthetic import observed_by_cameras

    mesh = trimesh.load(mesh_path, force="mesh", process=False)
    samples = 500_000
    gt_points, gt_normals = scene.sample_surface(samples, seed=seed + 1)
    observed = observed_by_cameras(scene, gt_points, scan)
    scores = evaluate_mesh(mesh, gt_points, gt_normals, taus=(0.01, 0.02, 0.05), completeness_mask=observed,
                           gt_distance=scene.surface_distance)
    holes = hole_metrics(mesh, gt_points, gt_normals, observed, scene.surface_area() / samples)
    print(f"[demo] accuracy vs ground truth (completeness on the surface the camera observed): "
          f"Chamfer-L1 {100 * scores['chamfer_l1']:.2f} cm, normal consistency {scores['normal_consistency']:.3f}, "
          f"F@1cm {scores['fscore@0.01']:.3f}, F@2cm {scores['fscore@0.02']:.3f}, F@5cm {scores['fscore@0.05']:.3f}")
    render_mesh_png(mesh, holes_png, size=(1280, 960), marked=gt_points[holes["hole_mask"]],
                    title="observed surface the mesh missed, in red")
    print(f"[demo] holes: {100 * holes['holes']:.2f} % of the observed surface ({holes['hole_count']} hole(s) of "
          f"10 cm² or more, {holes['hole_area']:.3f} m²); farther than 5 cm from the mesh: "
          f"{100 * holes['far@0.05']:.2f} % -> {holes_png}")


if __name__ == "__main__":
    sys.exit(main())
