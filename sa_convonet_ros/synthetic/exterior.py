"""A building exterior with exact ground truth, and its LiDAR-like scan from the ground.

`generate_exterior` builds a gabled house on a paved apron as a union of solid primitives: a solid core,
façade frames whose gaps are window recesses, a gable prism under two roof slabs, trees (trunk and
crown) and poles, placed from a seed. `scan_exterior` stands a spinning LiDAR at a few stations around
the building, casts its rays (azimuth x elevation at a fixed angular step) against the scene, adds range
noise and voxel-filters the hits: far surfaces get sparser points, occluded ones none, as in a survey.

Units are metres, z points up, the ground's top is the plane z = 0, the building is centred on the origin
with its ridge along x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import Box, Cylinder, Primitive, Sphere
from .scans import cast_rays, in_sight, voxel_downsample
from .scenes import Scene


@dataclass
class ExteriorConfig:
    """Sizes of the building and its surroundings (metres, counts)."""

    length: float = 12.0  # footprint along x (the ridge)
    width: float = 8.0  # footprint along y
    eaves_height: float = 5.0  # top of the walls; the 45-degree roof rises width / 2 above it
    storeys: int = 2
    window_width: float = 1.2
    window_height: float = 1.4
    sill_height: float = 0.9  # above each storey's floor
    window_pitch: float = 2.5  # centre to centre along a façade
    recess: float = 0.2  # depth of the window recesses (the façade frame's thickness)
    roof_thickness: float = 0.2
    overhang: float = 0.4  # roof beyond the walls, along the slope and at the gables
    apron: float = 3.0  # paved ground around the footprint
    ground_thickness: float = 0.3
    trees: int = 3
    poles: int = 2


@dataclass
class LidarSetting:
    """A spinning LiDAR at `stations` positions around the building, and the map's voxel filter."""

    stations: int = 8  # on a rectangle `standoff` metres outside the footprint: corners, then side middles
    standoff: float = 5.0
    sensor_height: float = 1.8
    angular_step_deg: float = 0.3  # between neighbouring rays, in azimuth and elevation
    elevation_range_deg: tuple[float, float] = (-35.0, 70.0)
    max_range: float = 40.0
    noise_std: float = 0.02  # Gaussian range noise, metres
    voxel_size: float = 0.12  # one averaged point per voxel: about 9 cm between points


def _box(lo, hi, label: str, rotation: np.ndarray | None = None) -> Box:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Box(center=(lo + hi) / 2.0, half_extents=(hi - lo) / 2.0, label=label,
               rotation=np.eye(3) if rotation is None else rotation)


def _complement(intervals: list[tuple[float, float]], low: float, high: float) -> list[tuple[float, float]]:
    """The parts of [low, high] outside the sorted, disjoint `intervals`."""
    gaps, start = [], low
    for a, b in intervals:
        if a > start:
            gaps.append((start, a))
        start = b
    if high > start:
        gaps.append((start, high))
    return gaps


def window_columns(run: float, config: ExteriorConfig) -> list[tuple[float, float]]:
    """Horizontal extents of the windows along a façade of length `run` (centred on 0), evenly pitched."""
    count = int((run - config.window_pitch + config.window_width) // config.window_pitch) + 1
    centres = (np.arange(count) - (count - 1) / 2.0) * config.window_pitch
    return [(c - config.window_width / 2.0, c + config.window_width / 2.0) for c in centres]


def window_rows(config: ExteriorConfig) -> list[tuple[float, float]]:
    """Vertical extents of the windows: one row per storey."""
    storey = config.eaves_height / config.storeys
    return [(k * storey + config.sill_height, k * storey + config.sill_height + config.window_height)
            for k in range(config.storeys)]


def facade_frame(run: float, config: ExteriorConfig) -> list[tuple[float, float, float, float]]:
    """Rectangles (u0, u1, z0, z1) of a façade's frame: full-width bands between the window rows, and piers
    between the windows within each row. What they leave open are the window recesses."""
    rows, columns = window_rows(config), window_columns(run, config)
    bands = [(-run / 2.0, run / 2.0, z0, z1) for z0, z1 in _complement(rows, 0.0, config.eaves_height)]
    piers = [(u0, u1, z0, z1) for z0, z1 in rows for u0, u1 in _complement(columns, -run / 2.0, run / 2.0)]
    return bands + piers


def building(config: ExteriorConfig) -> list[Primitive]:
    """The core, the four façade frames (x façades span the corners), the gable prism and the roof."""
    half_l, half_w, d = config.length / 2.0, config.width / 2.0, config.recess
    parts: list[Primitive] = [_box((-half_l + d, -half_w + d, 0.0), (half_l - d, half_w - d, config.eaves_height),
                                   "wall")]
    for side in (-1.0, 1.0):
        for u0, u1, z0, z1 in facade_frame(config.width, config):  # façades facing +-x
            x = sorted((side * (half_l - d), side * half_l))
            parts.append(_box((x[0], u0, z0), (x[1], u1, z1), "wall"))
        for u0, u1, z0, z1 in facade_frame(config.length - 2 * d, config):  # façades facing +-y
            y = sorted((side * (half_w - d), side * half_w))
            parts.append(_box((u0, y[0], z0), (u1, y[1], z1), "wall"))
    return parts + roof(config)


def _about_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def roof(config: ExteriorConfig) -> list[Primitive]:
    """A 45-degree gable roof over the core: a square prism turned by 45 degrees about x, whose upper half is
    the gable's triangle, under two slabs that meet on the ridge and overhang the walls."""
    half_core = config.width / 2.0 - config.recess
    side = half_core / np.sqrt(2.0)  # the prism's half side: its corners reach the core's long edges
    gable = Box(center=(0.0, 0.0, config.eaves_height), half_extents=(config.length / 2.0 - config.recess, side, side),
                rotation=_about_x(np.pi / 4.0), label="roof")
    ridge = np.array([0.0, 0.0, config.eaves_height + half_core])
    t = config.roof_thickness
    # From one roof thickness beyond the ridge (so the two slabs' tops meet on it) to the overhang.
    slope_start, slope_end = -t, half_core * np.sqrt(2.0) + config.overhang
    slabs = []
    for sign in (-1.0, 1.0):
        down = np.array([0.0, sign, -1.0]) / np.sqrt(2.0)
        outward = np.array([0.0, sign, 1.0]) / np.sqrt(2.0)
        centre = ridge + (slope_start + slope_end) / 2.0 * down + t / 2.0 * outward
        slabs.append(Box(center=centre, half_extents=(config.length / 2.0 + config.overhang,
                                                      (slope_end - slope_start) / 2.0, t / 2.0),
                         rotation=_about_x(-sign * np.pi / 4.0), label="roof"))
    return [gable, *slabs]


def _spot_around(rng: np.random.Generator, config: ExteriorConfig, clearance: float) -> np.ndarray:
    """A point (x, y) on the apron beside one of the four walls, `clearance` from the wall and from the
    apron's edge where the apron is wide enough (else in its middle)."""
    half = np.array([config.length, config.width]) / 2.0
    axis, side = rng.integers(2), rng.choice([-1.0, 1.0])
    gap = rng.uniform(min(clearance, config.apron / 2.0), max(config.apron - clearance, config.apron / 2.0))
    spot = np.empty(2)
    spot[axis] = side * (half[axis] + gap)
    spot[1 - axis] = rng.uniform(-half[1 - axis], half[1 - axis])
    return spot


def surroundings(rng: np.random.Generator, config: ExteriorConfig) -> list[Primitive]:
    """Ground slab, trees (trunk and spherical crown) and poles at random spots on the apron."""
    half = np.array([config.length, config.width]) / 2.0 + config.apron
    parts: list[Primitive] = [_box((-half[0], -half[1], -config.ground_thickness), (half[0], half[1], 0.0),
                                   "ground")]
    for _ in range(config.trees):
        crown, trunk_height = rng.uniform(0.7, 1.1), rng.uniform(1.8, 2.6)
        x, y = _spot_around(rng, config, crown + 0.2)
        parts.append(Cylinder(center=(x, y, trunk_height / 2.0), radius=rng.uniform(0.1, 0.18), height=trunk_height,
                              label="tree"))
        parts.append(Sphere(center=(x, y, trunk_height + 0.7 * crown), radius=crown, label="tree"))
    for _ in range(config.poles):
        height = rng.uniform(3.0, 4.5)
        x, y = _spot_around(rng, config, 0.3)
        parts.append(Cylinder(center=(x, y, height / 2.0), radius=rng.uniform(0.05, 0.08), height=height,
                              label="pole"))
    return parts


def generate_exterior(seed: int = 0, config: ExteriorConfig | None = None) -> Scene:
    """The building and its surroundings; the seed places the trees and poles."""
    config = config or ExteriorConfig()
    return Scene(building(config) + surroundings(np.random.default_rng(seed), config))


def lidar_stations(config: ExteriorConfig, setting: LidarSetting) -> np.ndarray:
    """Sensor positions (S, 3): the corners, then the side middles, of the footprint grown by `standoff`."""
    half = np.array([config.length, config.width]) / 2.0 + setting.standoff
    ring = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)] + [(0, -1), (0, 1), (-1, 0), (1, 0)]
    spots = np.array(ring[:setting.stations], dtype=float) * half
    return np.column_stack([spots, np.full(len(spots), setting.sensor_height)])


def lidar_directions(setting: LidarSetting) -> np.ndarray:
    """Unit ray directions (N, 3) of one full turn of the scanner."""
    step = np.radians(setting.angular_step_deg)
    azimuth = np.arange(0.0, 2.0 * np.pi, step)
    low, high = np.radians(setting.elevation_range_deg)
    elevation = np.arange(low, high + step / 2.0, step)
    a, e = np.meshgrid(azimuth, elevation, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)


def observed_by_lidar(scene: Scene, targets: np.ndarray, config: ExteriorConfig | None = None,
                      setting: LidarSetting | None = None, caster: str = "open3d") -> np.ndarray:
    """Which surface points (M, 3) some station of `scan_exterior` saw: within the scanner's elevation range
    and range, and not hidden behind another surface (whatever its angular step)."""
    config, setting = config or ExteriorConfig(), setting or LidarSetting()
    targets = np.asarray(targets, dtype=np.float64)
    low, high = np.radians(setting.elevation_range_deg)
    seen = np.zeros(len(targets), dtype=bool)
    for station in lidar_stations(config, setting):
        offsets = targets - station
        elevation = np.arctan2(offsets[:, 2], np.linalg.norm(offsets[:, :2], axis=1))
        index = np.flatnonzero((elevation >= low) & (elevation <= high) & ~seen)
        seen[index] = in_sight(scene, station, targets[index], setting.max_range, caster)
    return seen


def scan_exterior(scene: Scene, config: ExteriorConfig | None = None, setting: LidarSetting | None = None,
                  seed: int = 0, caster: str = "open3d") -> np.ndarray:
    """The voxel-filtered map (N, 3) float32 of LiDAR turns from every station, with range noise."""
    config, setting = config or ExteriorConfig(), setting or LidarSetting()
    rng = np.random.default_rng(seed)
    directions = lidar_directions(setting)
    hits = []
    for station in lidar_stations(config, setting):
        origins = np.broadcast_to(station, directions.shape)
        distance = cast_rays(scene, np.ascontiguousarray(origins), directions, setting.max_range, caster)
        hit = distance <= setting.max_range
        noisy = distance[hit] + rng.normal(scale=setting.noise_std, size=int(hit.sum()))
        hits.append(station + directions[hit] * noisy[:, None])
    # A voxel grid at a random offset: one aligned with the ground or a façade would split its noisy points
    # into two layers of voxels, halving the spacing there.
    offset = rng.uniform(0.0, setting.voxel_size, 3)
    return (voxel_downsample(np.concatenate(hits) + offset, setting.voxel_size) - offset).astype(np.float32)
