"""GPU measurement of the speed targets: one large generated room, reconstructed on the device.

    python -m bench.bench_device --size 10 10 3 --points 1000000 --profiles fast --json out.json

Runs where the GPU machine has torch, numpy, scipy and scikit-image but no Open3D: the room is scanned by
sphere tracing on the device (`simulate_scans(..., caster="torch")`) with enough camera poses and pixels
to reach `--points`, then reconstructed with each profile. Reports seconds per stage, peak GPU memory and
a mesh check that needs no Open3D: the exact distance of mesh vertices to the room's surfaces (accuracy)
and of ground-truth surface samples to the nearest mesh vertex (completeness, an upper bound).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.devices import resolve_device, synchronized_time
from sa_convonet_ros.model import load_model
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.synthetic import RoomConfig, generate_room
from sa_convonet_ros.synthetic.scans import SCAN_SETTINGS, simulate_scans


def scan_room(size, points: int, seed: int, device: str, poses: int, image_scale: float):
    """A furnished room of `size` scanned densely (1 cm map) on the device, cut to `points` points."""
    scene = generate_room(seed, RoomConfig.of_size(*size))
    base = SCAN_SETTINGS["dense"]
    setting = dataclasses.replace(base, pose_count=poses, image_width=int(base.image_width * image_scale),
                                  image_height=int(base.image_height * image_scale), loop_scale=0.7)
    cloud, info = simulate_scans(scene, setting, seed=seed, caster="torch", device=device)
    if len(cloud) > points:
        cloud = cloud[np.random.default_rng(seed).choice(len(cloud), points, replace=False)]
    return scene, cloud.astype(np.float64), info


def mesh_check(scene, mesh, seed: int) -> dict:
    """Vertex accuracy (exact) and completeness to the nearest vertex (an upper bound), in metres."""
    vertices = np.asarray(mesh.vertices)
    if len(vertices) == 0:
        return {"faces": 0}
    accuracy = np.abs(scene.sdf(vertices, truncation=0.2))
    gt, _ = scene.sample_surface(200_000, seed=seed + 1)
    completeness, _ = cKDTree(vertices).query(gt, distance_upper_bound=0.2)
    completeness = np.minimum(completeness, 0.2)
    precision, recall = float((accuracy < 0.02).mean()), float((completeness < 0.02).mean())
    return {"faces": len(mesh.faces), "vertex_accuracy_m": float(accuracy.mean()),
            "completeness_to_vertex_m": float(completeness.mean()), "precision@0.02": precision,
            "recall@0.02": recall, "fscore@0.02": 2 * precision * recall / max(precision + recall, 1e-12)}


def run_profile(name: str, points, model, device: torch.device, scene, seed: int, iterations=None) -> dict:
    config = get_profile(name).updated(device=str(device))
    if iterations is not None:
        config = config.updated(optimization={"iterations": iterations})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = synchronized_time(device)
    result = reconstruct(points, config, model=model)
    seconds = synchronized_time(device) - start
    entry = {"profile": name, "seconds": round(seconds, 2), "stages": {k: round(v, 2) for k, v in
                                                                      result.stats.seconds.items()},
             "windows": result.stats.windows_run, "steps_run": result.stats.steps_run}
    if device.type == "cuda":
        entry["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    entry.update(mesh_check(scene, result.mesh, seed))
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, nargs=3, default=[10.0, 10.0, 3.0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--profiles", nargs="+", default=["fast"])
    parser.add_argument("--poses", type=int, default=40)
    parser.add_argument("--image-scale", type=float, default=2.0, help="camera pixels per side, times 160 x 120")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--iterations", type=int, default=None, help="override the profiles' optimisation steps")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    start = time.perf_counter()
    scene, points, info = scan_room(args.size, args.points, args.seed, str(device), args.poses, args.image_scale)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "room_m": args.size, "points": len(points), "rays": info.ray_count,
              "scan_seconds": round(time.perf_counter() - start, 2), "profiles": []}
    print(f"scanned {len(points)} points from {info.ray_count} rays in {report['scan_seconds']} s", flush=True)
    model = load_model(args.checkpoint, device=device)
    for name in args.profiles:
        entry = run_profile(name, points, model, device, scene, args.seed, args.iterations)
        report["profiles"].append(entry)
        print(json.dumps(entry), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
