"""Per-step cost of the UCE optimisation: the SA-ConvONet release's formulation against ours.

    python -m bench.bench_release_step --windows 8 --iterations 20 --device auto

Both optimise the whole network of every window from the same pretrained weights with the same queries
per step (6 x (1536 surface + 512 off-surface), the release's room setting):
- release: one window at a time; a batch of 6 identical copies of the window's cloud, each encoded
  again, each with its own 1536 + 512 queries;
- ours: all windows in one batch (per-window parameter copies stacked, `torch.func.vmap`), the cloud of
  each window encoded once per step, 6 x (1536 + 512) queries decoded from that one feature volume.
Prints seconds per window-step for both, the speed-up, and the final losses (which should agree).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.devices import resolve_device, synchronized_time
from sa_convonet_ros.model import load_model
from sa_convonet_ros.optimize import optimize_windows, uce_per_query
from sa_convonet_ros.synthetic import generate_room, simulate_scans
from sa_convonet_ros.window_batch import WindowBatch, sample_uce_queries
from sa_convonet_ros.windows import WindowGrid, select_windows

COPIES, SURFACE, OFF = 6, 1536, 512


def window_clouds(count: int, seed: int):
    config = get_profile("paper")
    scene = generate_room(seed)
    points, _ = simulate_scans(scene, "dense", seed=seed)
    grid = WindowGrid.from_sizes(config.windows.window_size, config.meshing.voxel_size, config.windows.margin)
    windows = select_windows(points.astype(np.float64), grid, config.windows.min_points, grid.margin)
    order = np.argsort(-windows.near_counts)[:count]  # the busiest windows
    return [grid.to_unit(points[windows.crop_points[i]], windows.index[i]) for i in order]


def release_step_loop(path, clouds, device, iterations, lr, max_points):
    """The release's way: per window, 6 re-encoded copies in a batch, one network."""
    losses, seconds = [], 0.0
    rng = np.random.default_rng(0)
    for cloud in clouds:
        model = load_model(path, device=device)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        batch = WindowBatch.from_arrays([cloud] * COPIES, device, max_points, rng)
        generator = torch.Generator(device=device).manual_seed(0)
        start = synchronized_time(device)
        for _ in range(iterations):
            queries, targets = sample_uce_queries(batch, SURFACE, OFF, 0.1, generator)
            logits = model.decode(queries, model.encode(batch.points, batch.mask))  # 6 encodings
            loss = uce_per_query(logits, targets).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds += synchronized_time(device) - start
        losses.append(loss.item())
    return seconds / (len(clouds) * iterations), float(np.mean(losses))


def our_step_loop(path, clouds, device, iterations, lr, max_points):
    config = get_profile("paper").optimization
    config.learning_rate, config.decay_every = lr, 10 ** 9
    config.surface_samples, config.off_surface_samples = COPIES * SURFACE, COPIES * OFF
    model = load_model(path, device=device)
    batch = WindowBatch.from_arrays(clouds, device, max_points, np.random.default_rng(0))
    start = synchronized_time(device)
    ensemble = optimize_windows(model, batch, config, iterations=iterations)
    seconds = synchronized_time(device) - start
    return seconds / (len(clouds) * iterations), ensemble.loss_history[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--max-points", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    clouds = window_clouds(args.windows, args.seed)
    release, release_loss = release_step_loop(args.checkpoint, clouds, device, args.iterations, args.lr,
                                              args.max_points)
    ours, our_loss = our_step_loop(args.checkpoint, clouds, device, args.iterations, args.lr, args.max_points)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{len(clouds)} windows x {args.iterations} steps, whole network, {COPIES} x ({SURFACE} + {OFF}) "
          f"queries per window-step, device {name}")
    print("| formulation | seconds per window-step | final UCE loss |")
    print("|---|---:|---:|")
    print(f"| release (6 re-encoded copies, one window at a time) | {release:.3f} | {release_loss:.4f} |")
    print(f"| ours (encode once, windows batched with vmap) | {ours:.3f} | {our_loss:.4f} |")
    print(f"\nspeed-up per step: {release / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
