"""Benchmark: one generated room, one profile — speed, memory and accuracy, against screened Poisson.

    python -m bench.bench_room --profile fast --points 100000 --setting dense --seed 0

Generates a room of the given size (default 5 x 4 x 2.5 m), simulates depth scans, keeps `--points`
of them, reconstructs with the shipped model, then runs Open3D screened Poisson (normals estimated and
consistently oriented, density-trimmed) on the same cloud in the same process. Prints a Markdown table
(seconds per optimisation step, end-to-end seconds, peak memory, Chamfer-L1, normal consistency,
F-scores) and the time ratio ours / Poisson. `--png` writes the two meshes side by side.
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sa_convonet_ros.baselines import screened_poisson
from sa_convonet_ros.config import get_profile
from sa_convonet_ros.devices import resolve_device
from sa_convonet_ros.metrics import evaluate_mesh, visible_mask
from sa_convonet_ros.model import load_model
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.synthetic import RoomConfig, generate_room, simulate_scans


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_room(size, setting, seed, n_points):
    length, width, height = size
    scene = generate_room(seed, RoomConfig.of_size(length, width, height))
    points, _ = simulate_scans(scene, setting, seed=seed)
    if n_points and len(points) > n_points:
        points = points[np.random.default_rng(seed).choice(len(points), n_points, replace=False)]
    return scene, points.astype(np.float64)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--setting", default="dense", choices=["dense", "sparse"])
    parser.add_argument("--size", type=float, nargs=3, default=[5.0, 4.0, 2.5])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--poisson-depth", type=int, default=9)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args(argv)

    scene, points = make_room(args.size, args.setting, args.seed, args.points)
    gt_points, gt_normals = scene.sample_surface(300_000, seed=args.seed + 1)
    visible = visible_mask(gt_points, points, radius=0.03)
    device = resolve_device(args.device)
    config = get_profile(args.profile).updated(device=str(device))
    if args.checkpoint:
        config = config.updated(checkpoint=args.checkpoint)
    model = load_model(config.checkpoint, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    rss_before = peak_rss_mb()
    start = time.perf_counter()
    ours = reconstruct(points, config, model=model, iterations=args.iterations)
    ours_seconds = time.perf_counter() - start
    rss_after = peak_rss_mb()
    stats = ours.stats
    batches = int(np.ceil(stats.windows_run / config.optimization.window_batch)) if stats.windows_run else 0
    step_seconds = stats.seconds.get("optimize", 0.0) / max(1, batches * stats.iterations)

    start = time.perf_counter()
    poisson = screened_poisson(points, depth=args.poisson_depth)
    poisson_seconds = time.perf_counter() - start

    ours_scores = evaluate_mesh(ours.mesh, gt_points, gt_normals, completeness_mask=visible,
                               gt_distance=scene.surface_distance)
    poisson_scores = evaluate_mesh(poisson, gt_points, gt_normals, completeness_mask=visible,
                               gt_distance=scene.surface_distance)

    print(f"## Room {args.size[0]:g} x {args.size[1]:g} x {args.size[2]:g} m, {args.setting} scan, "
          f"{len(points)} points, seed {args.seed}, profile `{args.profile}`")
    print()
    print(f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device `{stats.device}`" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"- windows: {stats.windows_run} run, {stats.windows_skipped} skipped; "
          f"{stats.iterations} iterations; batch of {config.optimization.window_batch} windows")
    print("- stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stats.seconds.items()))
    print(f"- seconds per optimisation step (one batch of up to {config.optimization.window_batch} windows): "
          f"{step_seconds:.4f}")
    if device.type == "cuda":
        print(f"- peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"- peak process memory (RSS): {rss_after:.0f} MB (before reconstruction: {rss_before:.0f} MB)")
    print(f"- time ratio ours / screened Poisson: {ours_seconds / poisson_seconds:.2f}")
    print()
    print("| method | seconds | faces | Chamfer-L1 (cm) | normal consistency | F@2cm | F@5cm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds, mesh, s in (("ours (" + args.profile + ")", ours_seconds, ours.mesh, ours_scores),
                                   (f"screened Poisson (depth {args.poisson_depth})", poisson_seconds, poisson,
                                    poisson_scores)):
        print(f"| {name} | {seconds:.1f} | {len(mesh.faces)} | {100 * s['chamfer_l1']:.2f} | "
              f"{s['normal_consistency']:.3f} | {s['fscore@0.02']:.3f} | {s['fscore@0.05']:.3f} |")
    if args.png:
        from sa_convonet_ros.preview import render_side_by_side

        render_side_by_side([("input", points), (f"ours ({args.profile})", ours.mesh),
                             ("screened Poisson", poisson)], args.png)
        print(f"\n![side by side]({args.png})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
