"""How the `fast` profile was chosen: variants of it on the tuning rooms, and what the chosen one misses.

    python -m bench.bench_tuning --crop 2.0

The tuning rooms (seeds 6000 and 6001, both scan settings, a 2 m square footprint of each to bound CPU
time) are never used for training or for the held-out benchmarks. Every variant is the `fast` profile
with a few settings replaced (see VARIANTS). Metrics as in bench_quality.py (exact distances), plus the
fraction of the input points on objects (not floor or walls) that lie more than 2 cm from the mesh: the
observed furniture the surface fails to pass through. For the first variant, the ground truth it misses
by more than 2 cm is broken down by object label.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from bench.bench_quality import ScoredScan
from sa_convonet_ros.config import get_profile
from sa_convonet_ros.metrics import closest_points_on_mesh
from sa_convonet_ros.model import load_model, resolve_device
from sa_convonet_ros.pipeline import reconstruct

VARIANTS = {
    "fast": {},
    "decoder only, 150 steps, trim 4 cm": {"optimization": {"optimize_features": False, "iterations": 150},
                                           "meshing": {"trim_distance": 0.04}},
    "feature grids, 100 steps": {"optimization": {"iterations": 100}},
    "feature lr 3e-3": {"optimization": {"feature_learning_rate": 3e-3}},
    "trim 4 cm": {"meshing": {"trim_distance": 0.04}},
    "mesh grid 1.5 cm": {"meshing": {"voxel_size": 0.015}},
    "mesh grid 1 cm": {"meshing": {"voxel_size": 0.01}},
    "feature lr 2e-2": {"optimization": {"feature_learning_rate": 2e-2}},
    "feature lr 3e-2": {"optimization": {"feature_learning_rate": 3e-2}},
    "decoder lr 1e-3": {"optimization": {"learning_rate": 1e-3}},
    "sigma 0.05": {"optimization": {"sigma": 0.05}},
    "sigma 0.03": {"optimization": {"sigma": 0.03}},
    "off-surface 2048": {"optimization": {"off_surface_samples": 2048}},
    "100 steps, mesh grid 1 cm": {"optimization": {"iterations": 100}, "meshing": {"voxel_size": 0.01}},
    "200 steps, mesh grid 1 cm": {"optimization": {"iterations": 200}, "meshing": {"voxel_size": 0.01}},
    "residual sampling 0.5": {"optimization": {"residual_sampling": 0.5}},
    "residual sampling 0.75": {"optimization": {"residual_sampling": 0.75}},
    "residual sampling 0.5, decoder lr 1e-3": {"optimization": {"residual_sampling": 0.5, "learning_rate": 1e-3}},
}


def missed_by_label(scene, mesh, gt_points, tau=0.02) -> dict[str, tuple[int, int]]:
    """label -> (GT points farther than tau from the mesh, GT points) for the given (visible) GT points."""
    labels = owner_labels(scene, gt_points)
    missed = closest_points_on_mesh(mesh, gt_points)[0] > tau
    totals, misses = Counter(labels.tolist()), Counter(labels[missed].tolist())
    return {label: (misses[label], totals[label]) for label in sorted(totals, key=lambda k: -misses[k])}


def owner_labels(scene, points) -> np.ndarray:
    """The label of the primitive nearest to each point."""
    return np.array(scene.labels)[np.stack([np.abs(p.sdf(points)) for p in scene.primitives]).argmin(axis=0)]


def unfitted_object_inputs(scene, mesh, points, tau=0.02) -> float:
    """Fraction of the input points on objects (not floor or walls) farther than tau from the mesh:
    how much of the observed furniture the surface does not pass through."""
    on_objects = ~np.isin(owner_labels(scene, points), ["floor", "wall"])
    return float((closest_points_on_mesh(mesh, points[on_objects])[0] > tau).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[6000, 6001])
    parser.add_argument("--settings", nargs="+", default=["dense", "sparse"])
    parser.add_argument("--crop", type=float, default=2.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    model = load_model(None, device=device)
    rows, missed = [], []
    for seed in args.seeds:
        for setting in args.settings:
            case = ScoredScan.generate(seed, setting, args.crop)
            scene, points = case.scene, case.points
            for index, name in enumerate(args.variants):
                config = get_profile("fast").updated(device=str(device), **VARIANTS[name])
                start = time.perf_counter()
                mesh = reconstruct(points, config, model=model).mesh
                seconds = time.perf_counter() - start
                s = case.score(mesh)
                s["unfitted"] = unfitted_object_inputs(scene, mesh, points)
                rows.append((f"{setting} {seed}", name, seconds, s))
                print(f"[{setting} {seed}] {name}: {seconds:.1f}s CD {100 * s['chamfer_l1']:.2f} cm",
                      file=sys.stderr, flush=True)
                if index == 0:
                    missed.append((f"{setting} {seed}", missed_by_label(scene, mesh, case.gt_points[case.visible])))

    print(f"### Variants of `fast` on the tuning rooms ({args.crop:g} m crops)\n")
    print("| scene | variant | seconds | Chamfer-L1 (cm) | NC | precision@2cm | recall@2cm | F@2cm | F@5cm "
          "| object inputs > 2 cm off |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scene_name, name, seconds, s in rows:
        print(f"| {scene_name} | {name} | {seconds:.1f} | {100 * s['chamfer_l1']:.2f} | "
              f"{s['normal_consistency']:.3f} | {s['precision@0.02']:.3f} | {s['recall@0.02']:.3f} | "
              f"{s['fscore@0.02']:.3f} | {s['fscore@0.05']:.3f} | {s['unfitted']:.3f} |")
    print("\nMean over scenes:\n")
    print("| variant | seconds | Chamfer-L1 (cm) | NC | F@2cm | F@5cm | object inputs > 2 cm off |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.variants:
        mine = [r for r in rows if r[1] == name]
        mean = lambda key, mine=mine: np.mean([r[3][key] for r in mine])  # noqa: E731
        print(f"| {name} | {np.mean([r[2] for r in mine]):.1f} | {100 * mean('chamfer_l1'):.2f} | "
              f"{mean('normal_consistency'):.3f} | {mean('fscore@0.02'):.3f} | {mean('fscore@0.05'):.3f} | "
              f"{mean('unfitted'):.3f} |")
    print(f"\nVisible ground truth that `{args.variants[0]}` misses by more than 2 cm, by object:\n")
    for scene_name, by_label in missed:
        print(f"- {scene_name}: " + ", ".join(f"{label} {m}/{n}" for label, (m, n) in by_label.items() if m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
