"""How noisy and how dense a map is, and its points moved back onto their local surface.

`estimate_noise` measures the map itself: the point spacing (median distance to the nearest neighbour)
and the noise (median over points of the residual of a plane fitted to each point's neighbours), so the
reconstruction can set its scales from the data instead of asking the user.

`project_to_local_surfaces` is the surface targets' denoising: each point moves along the normal of the
plane fitted to its neighbours onto that plane, but never farther than a few noise levels, so that
sensor noise is removed while real detail (a step, a thin edge: far larger than the noise) stays. Where
the neighbours do not lie on a plane to within the map's noise (a fold, a rounded part), the plane's
mean sits inside the curve and projecting onto it would flatten the shape; there a quadric height field
fitted to the same neighbours (moving least squares of degree 2) is the surface instead. Written here
because none of the project's libraries has it: Open3D and scipy offer neighbours and normals, not a
bounded projection.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.spatial import cKDTree

CHUNK = 100_000  # points per batch of plane fits
# numpy releases the GIL in the plane fits' gathers, products and eigen-solver: rows split over threads
# take 0.4x the time on two cores, the same results up to rounding. Fewer rows than this per thread stay in one.
ROWS_PER_THREAD = 20_000


@dataclass(frozen=True)
class NoiseEstimate:
    spacing: float  # metres, median distance to the nearest other point
    noise: float  # metres, median plane-fit residual (standard deviation) over the sampled points
    neighbours: int  # neighbourhood size that spans several noise levels (use it for the projection too)


def plane_fits(points: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of neighbour indices: the neighbours' mean, the fitted plane's unit normal and the
    residual variance (the covariance's smallest eigenvalue, corrected for the 3 fitted degrees of freedom)."""
    threads = min(available_cores(), len(neighbours) // ROWS_PER_THREAD)
    if threads <= 1:
        return _plane_fits(points, neighbours)
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(partial(_plane_fits, points), np.array_split(neighbours, threads)))
    return tuple(np.concatenate(column) for column in zip(*parts))


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _plane_fits(points: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    near = points[neighbours]  # (n, k, 3)
    mean = near.mean(axis=1)
    centred = near - mean[:, None, :]
    covariance = np.einsum("nki,nkj->nij", centred, centred) / neighbours.shape[1]
    values, vectors = np.linalg.eigh(covariance)
    k = neighbours.shape[1]
    return mean, vectors[:, :, 0], values[:, 0] * k / max(k - 3, 1)


def estimate_noise(points: np.ndarray, neighbours: int = 16, sample: int = 20_000, seed: int = 0,
                   max_neighbours: int = 128) -> NoiseEstimate:
    """Spacing and noise of a map from `sample` of its points. A plane fit only sees noise that is small
    against its neighbourhood, so the neighbourhood doubles until it spans four noise levels."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= neighbours:
        raise ValueError(f"estimating the noise needs more than {neighbours} points, got {len(points)}")
    rng = np.random.default_rng(seed)
    chosen = points[rng.choice(len(points), size=min(sample, len(points)), replace=False)]
    tree = cKDTree(points)
    while True:
        distances, index = tree.query(chosen, k=neighbours + 1, workers=-1)
        _, _, variance = plane_fits(points, index)
        noise = float(np.sqrt(np.median(np.maximum(variance, 0.0))))
        reach = float(np.median(distances[:, -1]))
        if reach >= 4.0 * noise or 2 * neighbours > min(max_neighbours, len(points) - 1):
            return NoiseEstimate(spacing=float(np.median(distances[:, 1])), noise=noise, neighbours=neighbours)
        neighbours *= 2


def quadric_offsets(points: np.ndarray, neighbours: np.ndarray, mean: np.ndarray,
                    normal: np.ndarray) -> np.ndarray:
    """For each row of neighbour indices, whose first is the point itself: its signed distance along `normal`
    from the height field h = c0 + c1 u + c2 v + c3 u^2 + c4 uv + c5 v^2 fitted by least squares to the
    row's points in the frame of their plane (`mean`, `normal`). A small ridge on the curvature terms keeps
    neighbours along a line (a scan row) from bending the fit."""
    near = points[neighbours] - mean[:, None, :]  # (n, k, 3)
    helper = np.where(np.abs(normal[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    first = np.cross(normal, helper)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = np.cross(normal, first)
    u, v = near @ first[:, :, None], near @ second[:, :, None]
    height = (near @ normal[:, :, None])[..., 0]
    terms = np.concatenate([np.ones_like(u), u, v, u * u, u * v, v * v], axis=2)  # (n, k, 6)
    reach = np.abs(np.concatenate([u, v], axis=2)).max(axis=(1, 2))
    ridge = 1e-3 * neighbours.shape[1] * np.maximum(reach, 1e-9) ** 4
    normal_matrix = np.einsum("nki,nkj->nij", terms, terms)
    normal_matrix[:, range(3, 6), range(3, 6)] += ridge[:, None]
    coefficients = np.linalg.solve(normal_matrix, np.einsum("nki,nk->ni", terms, height)[..., None])[..., 0]
    return height[:, 0] - np.einsum("ni,ni->n", terms[:, 0], coefficients)


def project_to_local_surfaces(points: np.ndarray, max_shift: float, neighbours: int = 16, iterations: int = 2,
                              noise: float = 0.0, curved_ratio: float = 0.0) -> np.ndarray:
    """The points moved onto the planes fitted to their neighbours, each by at most `max_shift` metres
    per iteration (a few noise levels). With `curved_ratio` > 0, a point whose neighbours leave a plane
    residual variance above `curved_ratio` x `noise`^2 moves onto their quadric instead. Neighbourhoods are
    found once, on the input."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= neighbours or max_shift <= 0:
        return points.copy()
    _, index = cKDTree(points).query(points, k=neighbours + 1, workers=-1)  # each point is its own first
    moved = points.copy()
    for _ in range(iterations):
        current = moved.copy()
        for start in range(0, len(points), CHUNK):
            rows = slice(start, start + CHUNK)
            mean, normal, variance = plane_fits(current, index[rows])
            offset = np.einsum("ni,ni->n", current[rows] - mean, normal)
            curved = variance > curved_ratio * noise ** 2 if curved_ratio > 0 else np.zeros(len(offset), bool)
            if curved.any():
                offset[curved] = quadric_offsets(current, index[rows][curved], mean[curved], normal[curved])
            moved[rows] = current[rows] - np.clip(offset, -max_shift, max_shift)[:, None] * normal
    return moved
