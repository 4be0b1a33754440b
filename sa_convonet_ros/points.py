"""The points a reconstruction works on: the finite rows of the input (cropped to a region), their colours,
and, on a noisy map, the points moved onto their local surfaces (denoise.py) as the UCE targets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .config import DenoiseConfig, ReconstructionConfig
from .denoise import NoiseEstimate, estimate_noise, project_to_local_surfaces
from .errors import ReconstructionError


@dataclass
class PreparedPoints:
    """The points the reconstruction works on."""

    points: np.ndarray  # (N, 3) float64, finite, inside the region (denoised when configured)
    colors: np.ndarray | None  # (N, 3) in [0, 1], or None
    input_points: int  # rows handed in
    non_finite_removed: int
    stray_removed: int = 0  # points far outside the map's own extent (stray_mask), dropped
    encoder_points: np.ndarray | None = None  # the points as measured, when the encoder should see them
    noise: NoiseEstimate | None = None  # the map's measured spacing and noise


def prepare_points(points: np.ndarray, config: ReconstructionConfig, colors: np.ndarray | None = None,
                   region=None, known_noise: NoiseEstimate | None = None) -> PreparedPoints:
    """The finite points inside `region` (min_xyz, max_xyz) and their colours; ReconstructionError when
    they cannot make a surface."""
    pts, finite = validate_points(points)
    non_finite = int(len(finite) - len(pts))
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float64)
        if colors.shape != (len(finite), 3):
            raise ReconstructionError(f"colors must be N x 3 like the points, got {colors.shape}")
        colors = colors[finite]
    if region is not None:
        inside = crop_to_region(pts, region)
        if len(inside) == 0:
            raise ReconstructionError("the requested region holds no points")
        pts = pts[inside]
        colors = colors[inside] if colors is not None else None
    kept = ~stray_mask(pts)
    strays = int(len(pts) - kept.sum())
    if strays:
        pts, colors = pts[kept], (colors[kept] if colors is not None else None)
    extent = pts.max(axis=0) - pts.min(axis=0)
    min_points, voxel_size = config.windows.min_points, config.meshing.voxel_size
    if len(pts) < min_points or extent.max() < 2 * voxel_size:
        raise ReconstructionError(
            f"too few distinct points to reconstruct a surface: {len(pts)} point(s) spanning "
            f"{extent.max():.4g} m (need at least {min_points} points in one window, "
            f"spanning more than two voxels of {voxel_size} m)")
    cloud = PreparedPoints(pts, colors, input_points=len(finite), non_finite_removed=non_finite,
                           stray_removed=strays)
    return denoised(cloud, config.denoise, known_noise) if config.denoise.denoise else cloud


def denoised(cloud: PreparedPoints, config: DenoiseConfig, known_noise: NoiseEstimate | None = None) -> PreparedPoints:
    """The cloud with its noise measured and, where the noise is a sizeable fraction of the spacing, its
    points moved onto their local planes or, where curved, quadrics (at most `max_shift` noise levels per
    pass); the measured points kept for the encoder if it should see them.

    `known_noise`, an earlier estimate of the same map, is kept while the new one agrees with it within
    25 %: the points of an unchanged part of a growing map then move exactly as before."""
    if len(cloud.points) <= max(config.denoise_neighbours, 16):
        return cloud
    noise = estimate_noise(cloud.points)
    if known_noise is not None and abs(noise.noise - known_noise.noise) <= 0.25 * known_noise.noise:
        noise = known_noise
    if noise.noise < config.denoise_min_noise_ratio * noise.spacing:
        return dataclasses.replace(cloud, noise=noise)
    moved = project_to_local_surfaces(cloud.points, config.denoise_max_shift * noise.noise, config.denoise_neighbours,
                                      config.denoise_passes, noise.noise, config.denoise_curved_ratio)
    return dataclasses.replace(cloud, points=moved, noise=noise,
                               encoder_points=None if config.denoise_encoder_input else cloud.points)


def validate_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N x 3 finite float64 points, and the mask of the input rows they came from (non-finite rows dropped)."""
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ReconstructionError(f"points must be an N x 3 array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ReconstructionError(f"points must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array).all(axis=1)
    if len(array) == 0:
        raise ReconstructionError("the point cloud is empty")
    if not finite.any():
        raise ReconstructionError(f"all {len(array)} points are NaN or infinite")
    return array[finite], finite


# A stray return (a reflection, a glitch) lies far from the map: beyond the box that holds the central
# 99.8 % of the points along each axis by more than that box's largest edge (and 1 m). A map does not hold
# 0.1 % of its points that far outside itself, so real surfaces stay, whatever the map's size.
STRAY_QUANTILE = 0.001
STRAY_MIN_REACH = 1.0  # metres


def stray_mask(points: np.ndarray) -> np.ndarray:
    """Which of the (finite) points are stray returns, far outside the map's own extent."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    low, high = np.quantile(points, [STRAY_QUANTILE, 1.0 - STRAY_QUANTILE], axis=0)
    reach = max(float((high - low).max()), STRAY_MIN_REACH)
    return np.any((points < low - reach) | (points > high + reach), axis=1)


def farthest_coordinate(points: np.ndarray) -> float:
    """The largest absolute coordinate of the points a mesh can come from (finite, not stray): what an output
    format's precision must hold."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    finite = points[np.isfinite(points).all(axis=1)]
    return float(np.abs(finite[~stray_mask(finite)]).max(initial=0.0))


def crop_to_region(points: np.ndarray, region) -> np.ndarray:
    """Indices of the points inside an axis-aligned box (min_xyz, max_xyz)."""
    low, high = (np.asarray(v, dtype=np.float64).reshape(3) for v in region)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ReconstructionError("the region bounds must be finite")
    if np.any(high <= low):
        raise ReconstructionError(f"the region is empty or inverted: min {low.tolist()} must be below max "
                                  f"{high.tolist()}")
    return np.flatnonzero(np.all((points >= low) & (points <= high), axis=1))


def subsample_evenly(points: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of at most `max_points` points: the first point of each voxel of a grid.

    A voxel grid (rather than a random draw) keeps the density even and picks the same points when
    an unchanged part of the map is seen again, which lets automatic mode reuse those windows.
    """
    low = points.min(axis=0)
    extent = np.maximum(points.max(axis=0) - low, 1e-3)
    # Start finer than a filled volume would need; maps are surfaces, whose count drops with size^2.
    size = float(np.prod(extent) / max_points) ** (1.0 / 3.0) / 4.0
    while True:
        shape = np.floor(extent / size).astype(np.int64) + 1
        cells = np.minimum(np.floor((points - low) / size).astype(np.int64), shape - 1)
        keys = np.ravel_multi_index(cells.T, shape)
        _, first = np.unique(keys, return_index=True)
        if len(first) <= max_points:
            return np.sort(first)
        size *= max(1.05, float(np.sqrt(len(first) / max_points)))
