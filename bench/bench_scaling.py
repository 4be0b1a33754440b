"""Scaling benchmark: reconstruction time follows the number of occupied windows, not the bounding box.

    python -m bench.bench_scaling --sizes 3x3 6x5 10x8 --setting sparse --max-points 150000 --seed 0

Generates closed rooms of the given floor sizes (metres, all --height tall), simulates depth scans and
keeps at most --max-points of them (`subsample_evenly`). A fourth, *sparse corridor* map keeps only an
L-shaped strip (--strip metres wide, along two walls) of the largest room's scan: its bounding box is the
largest room's, its surface a fraction of it. Each map is reconstructed once with the `fast` profile after
one warm-up run. Prints a Markdown table, a least-squares fit seconds = a + b * windows over the rooms,
and how the corridor's time compares with the fit and with its same-bounding-box room.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.data import RoomConfig, generate_room, simulate_scans
from sa_convonet_ros.model import load_model, resolve_device
from sa_convonet_ros.pipeline import reconstruct, subsample_evenly


def parse_size(text: str) -> tuple[float, float]:
    length, width = (float(v) for v in text.lower().split("x"))
    return length, width


def scan_room(length, width, height, setting, seed, max_points):
    # No missing walls, so that the rooms differ only in size (the generator opens some rooms at random).
    config = RoomConfig.of_size(length, width, height, open_probability=0.0)
    points, _ = simulate_scans(generate_room(seed, config), setting, seed=seed)
    points = points.astype(np.float64)
    return points[subsample_evenly(points, max_points)] if len(points) > max_points else points


def l_strip(points, width):
    """The points within `width` of the low-x or the low-y side: same bounding box, far fewer windows."""
    low = points.min(axis=0)
    return points[(points[:, 0] < low[0] + width) | (points[:, 1] < low[1] + width)]


def fit_line(x, y):
    """Least squares y = a + b x, and R^2."""
    b, a = np.polyfit(x, y, 1)
    residual = np.sum((y - (a + b * x)) ** 2)
    total = np.sum((y - np.mean(y)) ** 2)
    return a, b, 1.0 - residual / total if total > 0 else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(3.0, 3.0), (6.0, 5.0), (10.0, 8.0)],
                        help="room floor sizes LENGTHxWIDTH in metres, e.g. 3x3 6x5 10x8")
    parser.add_argument("--height", type=float, default=2.5)
    parser.add_argument("--strip", type=float, default=1.5, help="width (m) of the corridor's L-shaped strip")
    parser.add_argument("--setting", default="sparse", choices=["dense", "sparse"])
    parser.add_argument("--max-points", type=int, default=150_000)
    parser.add_argument("--iterations", type=int, default=None, help="override the fast profile's iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two rooms to fit a line")

    maps = []  # (name, points)
    for length, width in sorted(args.sizes, key=lambda s: s[0] * s[1]):
        start = time.perf_counter()
        maps.append((f"room {length:g} x {width:g} m", scan_room(length, width, args.height, args.setting,
                                                                 args.seed, args.max_points)))
        print(f"[scan] {maps[-1][0]}: {len(maps[-1][1])} points, {time.perf_counter() - start:.1f}s",
              file=sys.stderr, flush=True)
    maps.append((f"corridor: {args.strip:g} m L-strip of the largest room", l_strip(maps[-1][1], args.strip)))

    device = resolve_device(args.device)
    config = get_profile("fast").updated(device=str(device))
    model = load_model(config.checkpoint, device=device)
    # Warm-up on a 1.5 m corner of the smallest map: allocator, kernels and lazy imports are paid here.
    small = maps[0][1]
    corner = small[np.all(small[:, :2] < small[:, :2].min(axis=0) + 1.5, axis=1)]
    reconstruct(corner, config, model=model, iterations=min(5, config.optimization.iterations))

    rows = []
    for name, points in maps:
        stats = reconstruct(points, config, model=model, iterations=args.iterations).stats
        volume = float(np.prod(points.max(axis=0) - points.min(axis=0)))
        rows.append((name, len(points), volume, stats))
        print(f"[run] {name}: {stats.windows_run} windows, {stats.total_seconds:.1f}s", file=sys.stderr, flush=True)

    stats0 = rows[0][3]
    print(f"## Time against occupied windows: {args.setting} scans, seed {args.seed}, profile `fast`, "
          f"{stats0.iterations} iterations\n")
    print(f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device `{stats0.device}`" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"- windows: {config.windows.window_size:g} m cores, batches of {config.optimization.window_batch}\n")
    print("| map | points | bbox (m^3) | windows run | windows skipped | total (s) | optimize (s) | s / window |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, volume, s in rows:
        print(f"| {name} | {n} | {volume:.1f} | {s.windows_run} | {s.windows_skipped} | {s.total_seconds:.1f} | "
              f"{s.seconds.get('optimize', 0.0):.1f} | {s.total_seconds / max(1, s.windows_run):.3f} |")

    # Fit on the rooms only; the corridor is the out-of-sample check.
    rooms, corridor = rows[:-1], rows[-1]
    windows = np.array([r[3].windows_run for r in rooms], dtype=float)
    seconds = np.array([r[3].total_seconds for r in rooms])
    a, b, r2 = fit_line(windows, seconds)
    predict = lambda w: a + b * w  # noqa: E731
    same_bbox = rooms[-1]
    measured = corridor[3].total_seconds
    print(f"\nFit over the {len(rooms)} rooms: total seconds = {a:.2f} + {b:.4f} * windows (R^2 = {r2:.4f})\n")
    print(f"- corridor: {measured:.1f}s measured, {predict(corridor[3].windows_run):.1f}s predicted from its "
          f"{corridor[3].windows_run} windows (ratio {measured / predict(corridor[3].windows_run):.2f})")
    print(f"- corridor / fit at its bbox-equivalent room ({same_bbox[0]}, {same_bbox[3].windows_run} windows, "
          f"{predict(same_bbox[3].windows_run):.1f}s): {measured / predict(same_bbox[3].windows_run):.2f}; "
          f"bbox volumes {corridor[2]:.1f} vs {same_bbox[2]:.1f} m^3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
