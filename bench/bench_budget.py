"""Benchmark: how long a time budget's answer takes, and how many steps it runs.

    python -m bench.bench_budget --points 20000 --budget 2.0

The surface of a 2 x 2 x 1 m box (`--points` points, 2 mm noise), reconstructed in this process with the
shipped model as the node does with `max_seconds` (the deadline counted from the call), for each profile and
number of steps given. Prints the wall time of the answer, the steps run of those planned, and what the
budget cut.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.model import load_model
from sa_convonet_ros.pipeline import reconstruct


def box_surface(count: int, size=(2.0, 2.0, 1.0), noise: float = 0.002, seed: int = 0) -> np.ndarray:
    """`count` points spread over the six faces of a box, in proportion to their areas."""
    rng = np.random.default_rng(seed)
    size = np.asarray(size)
    areas = np.array([size[(axis + 1) % 3] * size[(axis + 2) % 3] for axis in range(3) for _ in (0, 1)])
    face = rng.choice(6, count, p=areas / areas.sum())
    points = rng.uniform(0.0, 1.0, (count, 3)) * size
    axis = face // 2
    points[np.arange(count), axis] = (face % 2) * size[axis]
    return points + rng.normal(0.0, noise, points.shape)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    points, model = box_surface(args.points), load_model()
    print(f"{args.points} points on a 2 x 2 x 1 m box, max_seconds {args.budget}\n")
    print("| profile | steps asked | answer (s) | steps run / planned | out of time | left out |")
    print("|---|---:|---:|---:|---|---|")
    for profile in args.profiles:
        for steps in args.steps:
            started = time.monotonic()
            stats = reconstruct(points, get_profile(profile), model=model, iterations=steps,
                                deadline=started + args.budget).stats
            asked = "profile's" if steps is None else steps
            print(f"| {stats.profile} | {asked} | {time.monotonic() - started:.1f} | {stats.steps_run} / "
                  f"{stats.steps_planned} | {'yes' if stats.out_of_time else 'no'} | "
                  f"{', '.join(stats.skipped_for_time) or '-'} |", flush=True)
    return 0


def _steps(text: str) -> int | None:
    return None if text == "profile" else int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20_000, help="points on the box")
    parser.add_argument("--budget", type=float, default=2.0, help="max_seconds of every run")
    parser.add_argument("--profiles", nargs="+", default=["auto", "fast"], help="profiles to run")
    parser.add_argument("--steps", nargs="+", type=_steps, default=[None, 10_000],
                        help="steps per window: a number, or 'profile' for the profile's own")
    return parser


if __name__ == "__main__":
    sys.exit(main())
