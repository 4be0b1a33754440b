"""Quality benchmark: ours (feed-forward, UCE fast, UCE paper) against screened Poisson and ball pivoting.

    python -m bench.bench_quality --scenes 3 --settings dense sparse --methods ff fast poisson bpa

Held-out rooms (seeds from --first-seed on, never used in training) are generated and scanned by the
project's own simulator, in the `dense` (1 cm voxels, 5 mm noise) and `sparse` (4 cm voxels, 15 mm noise)
settings. Metrics: Chamfer-L1 (cm), normal consistency, F-score at 2 and 5 cm; accuracy against the whole
ground truth, completeness against the part the scan saw (within 3 cm of an input point). Prints one
Markdown table per setting plus the mean, and writes side-by-side renders with --png-dir.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa_convonet_ros.baselines import ball_pivoting, screened_poisson
from sa_convonet_ros.config import get_profile
from sa_convonet_ros.data import Scene, generate_room, simulate_scans
from sa_convonet_ros.metrics import evaluate_mesh, visible_mask
from sa_convonet_ros.model import load_model, resolve_device
from sa_convonet_ros.pipeline import reconstruct

METHOD_NAMES = {"ff": "ours feed-forward", "fast": "ours UCE fast", "paper": "ours UCE paper",
                "poisson": "screened Poisson", "bpa": "ball pivoting"}


def crop_scene_points(points, gt_points, gt_normals, size, seed):
    """Restrict a scan (and its ground truth) to a square footprint of `size` metres, to bound CPU time."""
    if not size:
        return points, gt_points, gt_normals
    low = points.min(axis=0)[:2] + np.random.default_rng(seed).uniform(0, 0.5, 2)
    keep = lambda p: np.all((p[:, :2] >= low) & (p[:, :2] <= low + size), axis=1)  # noqa: E731
    return points[keep(points)], gt_points[keep(gt_points)], gt_normals[keep(gt_points)]


@dataclass
class ScoredScan:
    """A generated room's simulated scan (optionally cropped) and the ground truth it is scored against."""

    scene: Scene
    points: np.ndarray
    gt_points: np.ndarray
    gt_normals: np.ndarray
    visible: np.ndarray  # ground-truth points the scan saw (within 3 cm of an input point)

    @classmethod
    def generate(cls, seed: int, setting: str, crop: float = 0.0) -> "ScoredScan":
        scene = generate_room(seed)
        points, _ = simulate_scans(scene, setting, seed=seed)
        gt_points, gt_normals = scene.sample_surface(300_000, seed=seed + 1)
        points, gt_points, gt_normals = crop_scene_points(points.astype(np.float64), gt_points, gt_normals,
                                                          crop, seed)
        return cls(scene, points, gt_points, gt_normals, visible_mask(gt_points, points, radius=0.03))

    def score(self, mesh) -> dict:
        """Exact accuracy against the whole ground truth, completeness against the part the scan saw."""
        return evaluate_mesh(mesh, self.gt_points, self.gt_normals, taus=(0.02, 0.05),
                             completeness_mask=self.visible, gt_distance=self.scene.surface_distance)


def run_method(method, points, model, device, iterations=None, updates=None):
    start = time.perf_counter()
    if method in ("ff", "fast", "paper"):
        profile = {"ff": "feedforward", "fast": "fast", "paper": "paper"}[method]
        config = get_profile(profile).updated(device=str(device), **(updates if method != "ff" and updates else {}))
        mesh = reconstruct(points, config, model=model, iterations=iterations if method != "ff" else 0).mesh
    elif method == "poisson":
        mesh = screened_poisson(points, depth=9)
    elif method == "bpa":
        mesh = ball_pivoting(points)
    else:
        raise ValueError(f"unknown method {method!r}")
    return mesh, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=100_000)
    parser.add_argument("--settings", nargs="+", default=["dense", "sparse"])
    parser.add_argument("--methods", nargs="+", default=["ff", "fast", "poisson", "bpa"])
    parser.add_argument("--crop", type=float, default=0.0, help="square footprint (m) per scene; 0 = whole room")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--iterations", type=int, default=None, help="override the UCE profiles' iterations")
    parser.add_argument("--updates", type=json.loads, default=None,
                        help="settings replaced in the UCE profiles, as JSON, "
                             'e.g. \'{"meshing": {"voxel_size": 0.01}}\'')
    parser.add_argument("--png-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device=device)
    rows = {}
    for setting in args.settings:
        for index in range(args.scenes):
            seed = args.first_seed + index
            case = ScoredScan.generate(seed, setting, args.crop)
            points = case.points
            meshes = []
            for method in args.methods:
                mesh, seconds = run_method(method, points, model, device, args.iterations, args.updates)
                s = case.score(mesh)
                rows.setdefault(setting, []).append((seed, method, seconds, s, len(points)))
                meshes.append((METHOD_NAMES[method], mesh))
                print(f"[{setting} seed {seed}] {METHOD_NAMES[method]}: {seconds:.1f}s "
                      f"CD {100 * s['chamfer_l1']:.2f} cm NC {s['normal_consistency']:.3f} "
                      f"F2 {s['fscore@0.02']:.3f} F5 {s['fscore@0.05']:.3f}", file=sys.stderr, flush=True)
            if args.png_dir:
                from sa_convonet_ros.preview import render_side_by_side

                args.png_dir.mkdir(parents=True, exist_ok=True)
                render_side_by_side([("input", points)] + meshes, args.png_dir / f"{setting}_{seed}.png",
                                    panel_size=(480, 360))

    for setting, entries in rows.items():
        print(f"\n### {setting} scans ({args.scenes} held-out rooms from seed {args.first_seed}"
              + (f", {args.crop:g} m crops" if args.crop else "")
              + (f", UCE settings replaced: {json.dumps(args.updates)}" if args.updates else "") + ")\n")
        print("| scene | points | method | seconds | Chamfer-L1 (cm) | normal consistency | F@2cm | F@5cm |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        for seed, method, seconds, s, n in entries:
            print(f"| {seed} | {n} | {METHOD_NAMES[method]} | {seconds:.1f} | {100 * s['chamfer_l1']:.2f} | "
                  f"{s['normal_consistency']:.3f} | {s['fscore@0.02']:.3f} | {s['fscore@0.05']:.3f} |")
        print("\nMean over scenes:\n")
        print("| method | seconds | Chamfer-L1 (cm) | normal consistency | F@2cm | F@5cm |")
        print("|---|---:|---:|---:|---:|---:|")
        for method in args.methods:
            mine = [e for e in entries if e[1] == method]
            mean = lambda key, mine=mine: np.mean([e[3][key] for e in mine])  # noqa: E731
            print(f"| {METHOD_NAMES[method]} | {np.mean([e[2] for e in mine]):.1f} | {100 * mean('chamfer_l1'):.2f} | "
                  f"{mean('normal_consistency'):.3f} | {mean('fscore@0.02'):.3f} | {mean('fscore@0.05'):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
