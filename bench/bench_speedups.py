"""What each speed-up buys, measured in one run on one map: time and quality against its baseline.

    python -m bench.bench_speedups --size 4 3 2.5 --setting sparse --device auto

- fused Adam: seconds per optimisation step of a batch of windows, fused kernel against the plain one;
- touched cells: the same step with Adam over only the feature-grid cells the steps touch, against all of them;
- precision: fp32 against tf32 and bf16 (autocast) for the `fast` profile;
- early stop: the profile's fixed steps against stopping when the loss plateaus;
- warm start: a map that grew (a second pass of the camera merged in) reconstructed cold, and warm from
  the cached states of the first map's windows;
- devices: the windows on one device against the same windows spread over every listed device.
Quality: Chamfer-L1 and F@2cm against the room's exact ground truth (completeness on the seen part).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from unittest import mock

import numpy as np
import torch

from sa_convonet_ros.cache import WindowCache
from sa_convonet_ros.config import get_profile
from sa_convonet_ros.devices import resolve_device, resolve_devices, synchronized_time
from sa_convonet_ros.feature_grids import FeatureGrids
from sa_convonet_ros.metrics import evaluate_mesh, visible_mask
from sa_convonet_ros.model import load_model
from sa_convonet_ros.optimize import optimize_windows
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.synthetic import SCAN_SETTINGS, RoomConfig, generate_room, simulate_scans
from sa_convonet_ros.synthetic.scans import voxel_downsample
from sa_convonet_ros.window_batch import WindowBatch
from sa_convonet_ros.windows import WindowGrid, select_windows


def adam_step_seconds(model, points, config, device, fused: bool, steps: int = 20, every_cell: bool = False) -> float:
    """Seconds per step of the profile's optimisation of one batch of windows, with either Adam kernel, over
    the feature-grid cells the steps touch or (`every_cell`) over all of them."""
    grid = WindowGrid.from_sizes(config.windows.window_size, config.meshing.voxel_size, config.windows.margin)
    windows = select_windows(points, grid, config.windows.min_points, grid.margin)
    opt = dataclasses.replace(config.optimization, fused_adam=fused)
    chosen = range(min(opt.window_batch, len(windows)))
    clouds = [grid.to_unit(points[windows.crop_points[w]], windows.index[w]) for w in chosen]
    batch = WindowBatch.from_arrays(clouds, device, opt.max_points_per_window, np.random.default_rng(0))
    ends = []  # when each step finished; the first three are warm-up
    unrestricted = mock.patch.object(FeatureGrids, "restrict", lambda grids, touched: None)
    with unrestricted if every_cell else contextlib.nullcontext():
        optimize_windows(model, batch, opt, iterations=steps + 3,
                         on_step=lambda step, total, loss: ends.append(synchronized_time(device)))
    return (ends[-1] - ends[2]) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, nargs=3, default=[4.0, 3.0, 2.5])
    parser.add_argument("--setting", default="sparse", choices=["dense", "sparse"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--devices", default="", help="list for the devices row, e.g. cuda:0,cuda:1 (default: auto)")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--warm-iterations", type=int, default=20)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    model = load_model(None, device=device)
    length, width, height = args.size
    scene = generate_room(args.seed, RoomConfig.of_size(length, width, height))
    first, _ = simulate_scans(scene, args.setting, seed=args.seed)
    second, _ = simulate_scans(scene, args.setting, seed=args.seed + 1)
    grown = voxel_downsample(np.vstack([first, second]).astype(np.float64), SCAN_SETTINGS[args.setting].voxel_size)
    first = first.astype(np.float64)
    gt_points, gt_normals = scene.sample_surface(300_000, seed=args.seed + 2)
    base = get_profile("fast").updated(device=str(device))
    rows = []

    def run(name, points, config, baseline=None, **kwargs):
        start = time.perf_counter()
        result = reconstruct(points, config, model=model, **kwargs)
        seconds = time.perf_counter() - start
        s = evaluate_mesh(result.mesh, gt_points, gt_normals, taus=(0.02,), gt_distance=scene.surface_distance,
                          completeness_mask=visible_mask(gt_points, points, 0.03))
        rows.append((name, len(points), result.stats, seconds, s, baseline))
        print(f"[speedups] {name}: {seconds:.1f} s, CD {100 * s['chamfer_l1']:.2f} cm", file=sys.stderr, flush=True)
        return seconds

    decoder_only = base.updated(optimization={"optimize_features": False})
    step_seconds = {(what, fused): adam_step_seconds(model, first, config, device, fused)
                    for what, config in (("decoder + feature grids", base), ("decoder only", decoder_only))
                    for fused in (False, True)}
    every_cell_seconds = adam_step_seconds(model, first, base, device, fused=True, every_cell=True)

    fp32 = run("fp32 (baseline)", first, base)
    for precision in ("tf32", "bf16"):
        run(precision, first, base.updated(optimization={"precision": precision}), fp32)
    run(f"early stop (patience {args.patience})", first,
        base.updated(optimization={"early_stop_patience": args.patience, "early_stop_tolerance": 1e-2}), fp32)

    cache = WindowCache()
    reconstruct(first, base.updated(optimization={"warm_start_iterations": args.warm_iterations}), model=model,
                cache=cache)
    cold = run("grown map, cold", grown, base)
    run(f"grown map, warm ({args.warm_iterations} steps)", grown,
        base.updated(optimization={"warm_start_iterations": args.warm_iterations}), cold, cache=cache)

    listed = args.devices or "auto"
    spread = resolve_devices(listed)
    if len(spread) > 1:
        run(f"devices {','.join(map(str, spread))}", first, base.updated(device=listed), fp32)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"## Speed-ups on a {length:g} x {width:g} x {height:g} m room ({args.setting} scan, seed {args.seed}), "
          f"{name}\n")
    for what in ("decoder + feature grids", "decoder only"):
        plain, fused = step_seconds[(what, False)], step_seconds[(what, True)]
        print(f"- optimisation step, {what} (batch of {base.optimization.window_batch} windows): "
              f"{1000 * plain:.1f} ms with plain Adam, {1000 * fused:.1f} ms fused ({plain / fused:.2f}x)")
    touched = step_seconds[("decoder + feature grids", True)]
    print(f"- the same step, fused Adam over every feature-grid cell: {1000 * every_cell_seconds:.1f} ms, over the "
          f"cells the steps touch: {1000 * touched:.1f} ms ({every_cell_seconds / touched:.2f}x)")
    print()
    print("| run | points | windows (warm) | steps per window | seconds | speed-up | Chamfer-L1 (cm) | F@2cm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, stats, seconds, s, baseline in rows:
        speedup = f"{baseline / seconds:.2f}x" if baseline else "1.00x"
        print(f"| {name} | {n} | {stats.windows_run} ({stats.windows_warm_started}) | "
              f"{stats.steps_run / max(stats.batches_run, 1):.0f} | "
              f"{seconds:.1f} | {speedup} | {100 * s['chamfer_l1']:.2f} | {s['fscore@0.02']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
