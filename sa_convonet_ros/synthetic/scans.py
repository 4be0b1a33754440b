"""Point-cloud inputs as robots see them: noisy surface samples and simulated depth-camera maps.

`simulate_scans` moves a pinhole depth camera along a loop through a scene, casts its rays
against `Scene.mesh()` with Open3D, accumulates the noisy hits into one map and voxel-filters it.
Occlusions and distance-dependent density come from the ray casting itself.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from .scenes import Scene


@dataclass
class ScanSetting:
    """Sensor, trajectory and map-filter parameters of one scanning setting (metres, degrees)."""

    name: str = "dense"
    voxel_size: float = 0.01  # map voxel filter: one averaged point per voxel
    noise_std: float = 0.005  # Gaussian range noise along each ray
    image_width: int = 160
    image_height: int = 120
    horizontal_fov_deg: float = 75.0
    min_range: float = 0.1
    max_range: float = 6.0
    pose_count: int = 16
    height_range: tuple[float, float] = (1.0, 1.6)
    pitch_range_deg: tuple[float, float] = (-30.0, -5.0)  # negative looks down
    sweep_amplitude_deg: float = 70.0  # yaw swings left/right of the direction of travel
    loop_scale: float = 0.55  # loop semi-axes as a fraction of the room's half sizes
    clearance: float = 0.3  # minimum distance from the camera to any surface


SCAN_SETTINGS = {
    "dense": ScanSetting(name="dense", voxel_size=0.01, noise_std=0.005),
    "sparse": ScanSetting(name="sparse", voxel_size=0.04, noise_std=0.015, pose_count=12),
}


@dataclass
class ScanInfo:
    """What `simulate_scans` did: camera poses, counts and runtime."""

    setting: ScanSetting
    camera_poses: np.ndarray  # (P,4,4) world-from-camera, optical axes: x right, y down, z forward
    ray_count: int
    hit_count: int  # hits within range, before voxel filtering
    point_count: int  # points in the voxel-filtered map
    seconds: float


def surface_cloud(scene: Scene, n: int, noise_std: float = 0.0, seed: int = 0) -> np.ndarray:
    """`n` uniform samples of the scene surface with isotropic Gaussian noise, (n,3) float32."""
    points, _ = scene.sample_surface(n, seed=seed)
    rng = np.random.default_rng([seed, 1])  # independent of the stream used for sampling
    return (points + rng.normal(scale=noise_std, size=points.shape)).astype(np.float32)


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Average the points that fall into each cubic voxel of `voxel_size`; one point per voxel.

    Voxels are ordered by their integer key, so the output is deterministic.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        return points.copy()
    keys = np.floor(points / voxel_size).astype(np.int64)
    origin = keys.min(axis=0)
    shifted = keys - origin
    # Pack the three voxel indices into one integer so that np.unique works on a flat array.
    extent = shifted.max(axis=0) + 1
    flat = (shifted[:, 0] * extent[1] + shifted[:, 1]) * extent[2] + shifted[:, 2]
    unique_flat, voxel_of_point, counts = np.unique(flat, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(voxel_of_point, weights=points[:, i]) for i in range(3)], axis=1)
    means = sums / counts[:, None]
    # Keep each mean strictly inside its voxel, with a margin that survives a float32 cast, so that
    # rounding never moves two points into one voxel.
    voxel_keys = np.stack([unique_flat // (extent[1] * extent[2]), unique_flat // extent[2] % extent[1],
                           unique_flat % extent[2]], axis=1) + origin
    margin = 4.0 * float(np.spacing(np.float32(np.abs(points).max() + voxel_size)))
    return np.clip(means, voxel_keys * voxel_size + margin, (voxel_keys + 1) * voxel_size - margin)


def look_rotation(yaw: float, pitch: float) -> np.ndarray:
    """World-from-camera rotation (columns: right, down, forward) for a level camera turned by yaw
    about +z and tilted by pitch (positive looks up)."""
    forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def _half_view_tangents(setting: ScanSetting) -> tuple[float, float]:
    """tan of half the field of view, horizontally and vertically (square pixels)."""
    tan_x = float(np.tan(np.radians(setting.horizontal_fov_deg) / 2.0))
    return tan_x, tan_x * setting.image_height / setting.image_width


def _camera_ray_directions(setting: ScanSetting) -> np.ndarray:
    """Unit ray directions in the camera's optical frame, (H*W,3), row-major over the image."""
    tan_x, tan_y = _half_view_tangents(setting)
    u = (np.arange(setting.image_width) + 0.5) / setting.image_width * 2.0 - 1.0
    v = (np.arange(setting.image_height) + 0.5) / setting.image_height * 2.0 - 1.0
    grid_u, grid_v = np.meshgrid(u * tan_x, v * tan_y)
    directions = np.stack([grid_u.ravel(), grid_v.ravel(), np.ones(grid_u.size)], axis=1)
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _loop_frame(scene: Scene, setting: ScanSetting) -> tuple[np.ndarray, np.ndarray, bool]:
    """Centre and semi-axes of the camera loop; True when the loop runs inside a room."""
    if scene.interior is not None:
        lo, hi = scene.interior
        return (lo[:2] + hi[:2]) / 2.0, setting.loop_scale * (hi[:2] - lo[:2]) / 2.0, True
    # Not a room: orbit around the scene, looking at its centre.
    lo, hi = scene.bounds
    return (lo[:2] + hi[:2]) / 2.0, 0.75 * (hi[:2] - lo[:2]) + 0.5, False


def plan_camera_poses(scene: Scene, setting: ScanSetting, seed: int = 0) -> np.ndarray:
    """Camera poses (P,4,4) along a jittered elliptic loop, each at least `clearance` from surfaces.

    Inside a room the camera looks along the loop and sweeps its yaw left and right (seeing both
    walls and furniture); around a non-room scene it looks at the scene centre.
    """
    rng = np.random.default_rng(seed)
    center, semi_axes, inside_room = _loop_frame(scene, setting)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    poses = []
    for i in range(setting.pose_count):
        angle = phase + 2.0 * np.pi * i / setting.pose_count
        on_loop = center + semi_axes * np.array([np.cos(angle), np.sin(angle)])
        heading = np.arctan2(semi_axes[1] * np.cos(angle), -semi_axes[0] * np.sin(angle))
        position = None
        # Try the loop point first, then random nudges of growing size until one is free enough.
        for attempt in range(30):
            nudge = rng.normal(scale=0.05 + 0.03 * attempt, size=2)
            candidate = np.array([*(on_loop + nudge), rng.uniform(*setting.height_range)])
            if inside_room:
                lo, hi = scene.interior
                if np.any(candidate < lo + setting.clearance) or np.any(candidate > hi - setting.clearance):
                    continue
            if scene.sdf(candidate[None], truncation=setting.clearance)[0] >= setting.clearance:
                position = candidate
                break
        if position is None:
            continue  # no free spot near this part of the loop
        if inside_room:
            sweep = np.radians(setting.sweep_amplitude_deg) * np.sin(3.0 * (angle - phase))
            yaw = heading + sweep + rng.normal(scale=0.1)
        else:
            to_center = np.array([*center, 0.0]) - position
            yaw = np.arctan2(to_center[1], to_center[0])
        pitch = np.radians(rng.uniform(*setting.pitch_range_deg))
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = look_rotation(yaw, pitch), position
        poses.append(pose)
    if not poses:
        raise RuntimeError("no camera pose with enough clearance was found in the scene")
    return np.array(poses)


def _resolve_setting(setting: ScanSetting | str) -> ScanSetting:
    if isinstance(setting, str):
        if setting not in SCAN_SETTINGS:
            raise ValueError(f"unknown scan setting {setting!r}; choose from {sorted(SCAN_SETTINGS)}")
        return dataclasses.replace(SCAN_SETTINGS[setting])
    return setting


def simulate_scans(scene: Scene, setting: ScanSetting | str = "dense", seed: int = 0, caster: str = "open3d",
                   device: str = "cpu") -> tuple[np.ndarray, ScanInfo]:
    """Simulated depth-camera map of `scene`: (points (N,3) float32, ScanInfo).

    `caster` "open3d" intersects the rays with `Scene.mesh()` (Open3D's BVH, on the CPU); "torch" sphere-traces
    the scene's exact fields on `device` (see torch_scene), needing neither Open3D nor meshes."""
    start = time.perf_counter()
    setting = _resolve_setting(setting)
    rng = np.random.default_rng(seed)
    poses = plan_camera_poses(scene, setting, seed=int(rng.integers(2**31)))

    local_directions = _camera_ray_directions(setting)
    directions = np.einsum("pij,nj->pni", poses[:, :3, :3], local_directions).reshape(-1, 3)
    origins = np.repeat(poses[:, :3, 3], len(local_directions), axis=0)
    distance = cast_rays(scene, origins, directions, setting.max_range, caster, device)

    hit = (distance >= setting.min_range) & (distance <= setting.max_range)
    noisy_distance = distance[hit] + rng.normal(scale=setting.noise_std, size=int(hit.sum()))
    hits = origins[hit] + directions[hit] * noisy_distance[:, None]
    points = voxel_downsample(hits, setting.voxel_size).astype(np.float32)

    info = ScanInfo(setting=setting, camera_poses=poses, ray_count=len(origins), hit_count=int(hit.sum()),
                    point_count=len(points), seconds=time.perf_counter() - start)
    return points, info


# A surface point counts as seen from a viewpoint when the ray towards it stops no more than this short of it:
# the ray meets the surface at the point itself (float32 casting), even at a grazing angle.
SIGHT_TOLERANCE = 0.005


def in_sight(scene: Scene, viewpoint: np.ndarray, targets: np.ndarray, max_range: float,
             caster: str = "open3d") -> np.ndarray:
    """Which surface points `targets` (M, 3) the straight line from `viewpoint` reaches before any other
    surface, within `max_range`: the points a sensor there could return, whatever its resolution."""
    offsets = np.asarray(targets, dtype=np.float64) - viewpoint
    distance = np.linalg.norm(offsets, axis=1)
    seen = (distance > 0) & (distance <= max_range)
    if not seen.any():
        return seen
    directions = offsets[seen] / distance[seen, None]
    origins = np.ascontiguousarray(np.broadcast_to(np.asarray(viewpoint, dtype=np.float64), directions.shape))
    hit = cast_rays(scene, origins, directions, max_range + 1.0, caster)
    seen[seen] = hit >= distance[seen] - SIGHT_TOLERANCE
    return seen


def observed_by_cameras(scene: Scene, targets: np.ndarray, info: ScanInfo, caster: str = "open3d") -> np.ndarray:
    """Which surface points (M, 3) some camera pose of a `simulate_scans` run saw: inside its field of view
    and range, and not hidden behind another surface. Independent of the image's resolution: a wall seen at a
    grazing angle counts, the back of an object does not."""
    setting = info.setting
    tan_x, tan_y = _half_view_tangents(setting)
    targets = np.asarray(targets, dtype=np.float64)
    seen = np.zeros(len(targets), dtype=bool)
    for pose in info.camera_poses:
        local = (targets - pose[:3, 3]) @ pose[:3, :3]  # camera frame: x right, y down, z forward
        depth = local[:, 2]
        framed = ((depth > 0) & (np.abs(local[:, 0]) <= tan_x * depth) & (np.abs(local[:, 1]) <= tan_y * depth)
                  & (np.linalg.norm(local, axis=1) >= setting.min_range) & ~seen)
        index = np.flatnonzero(framed)
        seen[index] = in_sight(scene, pose[:3, 3], targets[index], setting.max_range, caster)
    return seen


def cast_rays(scene: Scene, origins: np.ndarray, directions: np.ndarray, max_range: float,
              caster: str = "open3d", device: str = "cpu") -> np.ndarray:
    """Distance (N,) along each unit ray to the scene's surface (inf, or beyond `max_range`, where it
    hits nothing); `caster` as in `simulate_scans`."""
    return _CASTERS[caster](scene, origins, directions, max_range, device)


def _cast_open3d(scene: Scene, origins: np.ndarray, directions: np.ndarray, max_range: float,
                 device: str) -> np.ndarray:
    import open3d as o3d

    raycaster = o3d.t.geometry.RaycastingScene()
    mesh = scene.mesh()
    raycaster.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    rays = o3d.core.Tensor(np.concatenate([origins, directions], axis=1).astype(np.float32))
    return raycaster.cast_rays(rays)["t_hit"].numpy().astype(np.float64)


def _cast_torch(scene: Scene, origins: np.ndarray, directions: np.ndarray, max_range: float,
                device: str) -> np.ndarray:
    import torch

    from .torch_scene import TorchScene

    distance = TorchScene(scene, device).cast_rays(torch.from_numpy(origins), torch.from_numpy(directions),
                                                   0.0, max_range)
    return distance.cpu().numpy().astype(np.float64)


_CASTERS = {"open3d": _cast_open3d, "torch": _cast_torch}
