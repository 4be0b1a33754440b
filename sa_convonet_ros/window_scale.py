"""Windows that follow the map's density: the window, its margin and the mesh grid grown together.

The prior was trained on 1.6 m crops (1.2 m windows + 2 x 0.2 m margin) of scans voxel-filtered at 1 to 5 cm,
whose measured spacing (median nearest-neighbour distance) is 0.9 to about 3.3 cm. A sparser map in windows
of that size gives each window few points and costs as many windows as a dense one of the same area.
Every metric length of the reconstruction is scaled by s = (spacing / 2 cm) ** 0.8 (at least 1): a window
holds nearly as many points as a 1.2 m window of a 2 cm map (60 spacings along its edge at 2 cm, 48 at
8 cm). The prior was trained at one metric scale only, so at scale s surfaces finer than s times its
feature cell (5.5 cm) are left to the test-time optimisation and the snap. Measured: the rooms' sparse
scans (2.4-2.7 cm) at scale 1.25 keep their quality in 0.83x the time; a building exterior (8.2 cm) gets a
better mesh at scale 4 than at 2 in half the time, and a better one again at 3 than at 4 (its concave
corners, a gable wall under the roof's overhang, rounded off by 17-20 cm at 4) in 1.3x the time: hence
the power below 1 (docs/decisions.md, "The window scale's exponent").

The mesh grid can follow the spacing too (`grid_per_spacing`): between points farther apart than about
twice the grid, the data do not place the surface, so a sparse map's grid grows with its spacing, the
trimming and snapping distances with the grid, and the UCE samples per window shrink with the grid cells
of a window's surface (on the rooms' 4 cm scans: a 1.5 cm grid instead of 1 cm, 1.7x faster for a few
hundredths of a centimetre of Chamfer-L1).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .config import MeshingConfig, ReconstructionConfig
from .denoise import NoiseEstimate, estimate_noise

# metres of measured spacing at scale 1: the dense scans (1 cm voxels, 0.9-1 cm apart) keep their 1.2 m windows.
REFERENCE_SPACING = 0.02
SUPPORTED_SPACING = (0.005, 0.2)  # metres: finer maps keep scale 1, coarser ones are capped (with a warning)
SCALE_STEP = 0.25  # the scale is rounded to this, so a growing map keeps its windows (and its cache)
SCALE_POWER = 0.8  # windows grow a little slower than the spacing: their feature cells stay finer in metres
GRID_STEP = 0.005  # metres: a grid that follows the spacing is rounded to this, for the same reason

log = logging.getLogger(__name__)


def window_scale_for(spacing: float) -> float:
    """The window scale for a map whose points are `spacing` metres apart: 1 up to the reference spacing,
    then growing as its ratio to it to the power SCALE_POWER, capped at the coarsest supported spacing."""
    low, high = SUPPORTED_SPACING
    if not np.isfinite(spacing) or spacing <= 0:
        log.warning("the point spacing could not be measured (%s); windows keep their configured size", spacing)
        return 1.0
    if spacing < low:
        log.warning("the map's points are %.1f mm apart, finer than the supported %.0f mm: windows keep their "
                    "size and each window's encoder sees a subsample", spacing * 1e3, low * 1e3)
    if spacing > high:
        log.warning("the map's points are %.0f cm apart, sparser than the supported %.0f cm: windows are scaled "
                    "for %.0f cm and thin or small parts will be lost", spacing * 1e2, high * 1e2, high * 1e2)
    scale = (np.clip(spacing, REFERENCE_SPACING, high) / REFERENCE_SPACING) ** SCALE_POWER
    return max(1.0, round(scale / SCALE_STEP) * SCALE_STEP)


def scaled(config: ReconstructionConfig, scale: float) -> ReconstructionConfig:
    """The configuration with every metric length of windows and meshing multiplied by `scale` (the
    window scale then recorded as applied: 1)."""
    windows = config.windows
    return dataclasses.replace(
        config,
        windows=dataclasses.replace(windows, window_size=windows.window_size * scale, margin=windows.margin * scale,
                                    loss_margin=windows.loss_margin * scale,
                                    window_scale=1.0),
        meshing=_meshing_on_grid(config.meshing, config.meshing.voxel_size * scale, scale))


def _meshing_on_grid(meshing: MeshingConfig, voxel_size: float, factor: float) -> MeshingConfig:
    """The meshing settings on a grid of `voxel_size`, their trimming and snapping distances times `factor`."""
    trim = None if meshing.trim_distance is None else meshing.trim_distance * factor
    return dataclasses.replace(meshing, voxel_size=voxel_size, trim_distance=trim,
                               snap_distance=meshing.snap_distance * factor)


def grid_for_spacing(voxel_size: float, spacing: float, per_spacing: float) -> float:
    """The mesh grid for a map whose points are `spacing` metres apart: `per_spacing` times the spacing,
    rounded to GRID_STEP, where that is coarser than `voxel_size`; else `voxel_size`."""
    if per_spacing <= 0 or not np.isfinite(spacing) or spacing <= 0:
        return voxel_size
    return max(voxel_size, round(per_spacing * spacing / GRID_STEP) * GRID_STEP)


def coarsened(config: ReconstructionConfig, voxel_size: float) -> ReconstructionConfig:
    """The configuration on a mesh grid of `voxel_size` (coarser than its own): the trimming and snapping
    distances grow with the grid (as `scaled` grows them with the windows), and the UCE samples per window
    follow the grid cells a window's surface holds: 1 / ratio squared."""
    optimization = config.optimization
    ratio = voxel_size / config.meshing.voxel_size
    return dataclasses.replace(
        config,
        meshing=_meshing_on_grid(config.meshing, voxel_size, ratio),
        optimization=dataclasses.replace(
            optimization, surface_samples=max(1, round(optimization.surface_samples / ratio ** 2)),
            off_surface_samples=round(optimization.off_surface_samples / ratio ** 2)))


def scaled_to_map(config: ReconstructionConfig, points: np.ndarray,
                  noise: NoiseEstimate | None = None) -> ReconstructionConfig:
    """The configuration for this map: its `window_scale` applied (0: from the measured spacing, taken
    from `noise` when the map's noise was measured already), then its mesh grid coarsened to the spacing
    where `grid_per_spacing` asks for it."""
    setting, per_spacing = config.windows.window_scale, config.meshing.grid_per_spacing
    if setting == 1.0 and not per_spacing:
        return config
    spacing = (noise or estimate_noise(points)).spacing if setting == 0.0 or per_spacing else float("nan")
    if setting == 0.0:
        setting = window_scale_for(spacing)
        log.info("point spacing %.3f m: window scale %.2f", spacing, setting)
    # At scale 1 and an unchanged grid the configuration stays the same object, so cached windows keep
    # their fingerprints.
    config = config if setting == 1.0 else scaled(config, setting)
    voxel_size = grid_for_spacing(config.meshing.voxel_size, spacing, per_spacing)
    if voxel_size == config.meshing.voxel_size:
        return config
    log.info("point spacing %.3f m: mesh grid %.3f m", spacing, voxel_size)
    return coarsened(config, voxel_size)
