"""Training data of the prior, made where the training runs: rooms, scans and window crops with exact labels.

A training room holds, on the training device, its scene (`TorchScene`: exact occupancy of any query),
several simulated scans (the `dense` and `sparse` settings plus scans at random point spacings and noise
levels) and ground-truth surface samples. On a CPU the scans are cast with Open3D and cached under
`cache_dir`; on a GPU they are sphere-traced there (`simulate_scans(..., caster="torch")`), so a GPU
machine without Open3D, trimesh or a network makes its own data in seconds.

A crop is one window in exactly the reconstruction's frame: a cube of edge `crop_size` (the window core
plus two margins, optionally scaled) around a random scan point, mapped onto the unit cube by
`unit = rotation @ (x - centre) / crop_size`. Its input is the scan (or noisy surface samples) inside
the cube; its queries are uniform in the padded cube plus near-surface points, labelled exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import check_settings, setting
from ..denoise import estimate_noise
from ..synthetic.rooms import TRAINING_WORLD, RoomConfig, generate_room
from ..synthetic.scans import SCAN_SETTINGS, ScanSetting, simulate_scans
from ..synthetic.torch_scene import TorchScene
from ..window_batch import pad_clouds
from ..window_scale import window_scale_for

CACHE_VERSION = 2
WORLDS = {"plain": RoomConfig(), "training": TRAINING_WORLD}


@dataclass(frozen=True)
class DataConfig:
    """What the rooms, scans and crops look like (metric sizes default to the reconstruction's)."""

    world: str = setting("training", "plain: furnished rooms; training: plus the training families of free-form "
                                     "objects", choices=tuple(WORLDS))
    crop_size: float = setting(1.6, "window core + 2 * margin, metres (set from the window by TrainConfig)", above=0)
    crop_scale_range: tuple[float, float] = setting((1.0, 1.0), "each crop's edge is crop_size times a "
                                                                "log-uniform draw from this range")
    crop_scale_follows_spacing: bool = setting(False, "a scan's crops also grow as the reconstruction's windows "
                                                      "grow with a map of its spacing (window_scale_for)")
    random_scans: int = setting(1, "scans per room besides dense and sparse, spacing and noise drawn from the "
                                   "ranges", at_least=0)
    scan_voxel_range: tuple[float, float] = setting((0.01, 0.05), "metres between the points of random scans")
    scan_noise_range: tuple[float, float] = setting((0.0, 0.02), "range noise std of random scans, metres")
    surface_samples: int = setting(200_000, "ground-truth surface samples per room", at_least=1)
    caster: str = setting("auto", "how scans are cast: open3d (CPU), torch (sphere tracing on the device); "
                                  "auto: torch on CUDA", choices=("auto", "open3d", "torch"))
    image_scale: float = setting(1.0, "camera pixels per side relative to the scan settings (fewer rays for quick "
                                      "runs)", above=0)
    min_points: int = setting(50, "crops with fewer input points are redrawn", at_least=1)
    max_points: int = setting(4096, "input points per crop (random subset)", at_least=1)
    centre_jitter: float = setting(0.5, "crop centre = a scan point + uniform offset of up to this * crop / 2",
                                   at_least=0)
    surface_input_fraction: float = setting(0.2, "crops whose input is noisy surface samples instead of a scan",
                                            at_least=0, at_most=1)
    surface_input_noise: float = setting(0.01, "max noise std (metres) of those samples", at_least=0)
    uniform_queries: int = setting(1024, "queries per crop, uniform in the padded unit cube", at_least=0)
    near_queries: int = setting(1024, "queries per crop, surface samples + Gaussian noise", at_least=0)
    query_extent: float = setting(0.55, "uniform queries in [-extent, extent]^3 (unit units)", above=0)
    near_sigmas: tuple[float, float] = setting((0.01, 0.03), "metres; each near query picks one at random")
    augment: bool = setting(True, "random yaw and x / y flips of the whole crop")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class TrainingRoom:
    seed: int
    scene: TorchScene
    clouds: list[torch.Tensor]  # scans, then the surface samples: (N, 3) float32 world points on the device

    @property
    def scans(self) -> list[torch.Tensor]:
        return self.clouds[:-1]

    @property
    def surface(self) -> torch.Tensor:
        return self.clouds[-1]


def scan_settings(seed: int, config: DataConfig) -> list[ScanSetting]:
    """The scans of one room: the two standard settings, then random ones (reproducible per seed)."""
    rng = np.random.default_rng([seed, 7])
    settings = [SCAN_SETTINGS["dense"], SCAN_SETTINGS["sparse"]]
    for index in range(config.random_scans):
        voxel = math.exp(rng.uniform(*np.log(config.scan_voxel_range)))
        settings.append(dataclasses.replace(SCAN_SETTINGS["dense"], name=f"random{index}", voxel_size=voxel,
                                            noise_std=rng.uniform(*config.scan_noise_range),
                                            pose_count=int(rng.integers(8, 17))))
    return [dataclasses.replace(s, image_width=max(8, round(s.image_width * config.image_scale)),
                                image_height=max(6, round(s.image_height * config.image_scale))) for s in settings]


def _room_arrays(seed: int, config: DataConfig, caster: str | None, cache_dir: str | None) -> list[np.ndarray]:
    """Scans (cast here when `caster` is given) and surface samples of one room, from the cache or made."""
    key = repr((config.world, config.random_scans, config.surface_samples, config.scan_voxel_range,
                config.scan_noise_range, config.image_scale)).encode()
    path = Path(cache_dir or ".") / f"room_v{CACHE_VERSION}_{seed:06d}_{hashlib.sha1(key).hexdigest()[:10]}.npz"
    if cache_dir and caster and path.is_file():
        with np.load(path) as data:
            return [data[f"cloud{i}"] for i in range(len(data.files))]
    scene = generate_room(seed, WORLDS[config.world])
    settings = scan_settings(seed, config) if caster else []
    clouds = [simulate_scans(scene, s, seed=seed + i, caster=caster)[0] for i, s in enumerate(settings)]
    clouds.append(scene.sample_surface(config.surface_samples, seed=seed)[0].astype(np.float32))
    if cache_dir and caster:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"cloud{i}": c for i, c in enumerate(clouds)})
        tmp.replace(path)
    return clouds


def load_rooms(seeds, config: DataConfig, device: torch.device, cache_dir: str | None = None, workers: int = 1,
               log=print) -> list[TrainingRoom]:
    """The rooms of `seeds` on `device`. With Open3D the scans are cast (and cached) by `workers` with the
    layouts and surface samples; with torch the scenes' fields are sphere-traced on the device itself."""
    seeds, start = list(seeds), time.time()
    caster = config.caster if config.caster != "auto" else ("torch" if device.type == "cuda" else "open3d")
    on_device = caster == "torch"
    jobs = [(seed, config, None if on_device else caster, cache_dir) for seed in seeds]
    if workers > 1:
        # spawned, not forked: the parent may hold a CUDA context
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            arrays = list(pool.map(_room_arrays, *zip(*jobs, strict=True)))
    else:
        arrays = [_room_arrays(*job) for job in jobs]
    rooms = []
    for seed, clouds in zip(seeds, arrays, strict=True):
        scene = generate_room(seed, WORLDS[config.world])
        if on_device:
            clouds = [simulate_scans(scene, s, seed=seed + i, caster="torch", device=str(device))[0]
                      for i, s in enumerate(scan_settings(seed, config))] + clouds
        rooms.append(TrainingRoom(seed, TorchScene(scene, device),
                                  [torch.as_tensor(c, dtype=torch.float32, device=device) for c in clouds]))
        if len(rooms) % 20 == 0:
            log(f"rooms {len(rooms)}/{len(seeds)} ({time.time() - start:.0f} s)")
    return rooms


# ------------------------------------------------------------------------------------------------ crops

@dataclass
class Crop:
    points: torch.Tensor  # (n, 3) input points, unit frame
    queries: torch.Tensor  # (m, 3) unit frame
    labels: torch.Tensor  # (m,) float occupancy (0 or 1)
    n_uniform: int  # queries[:n_uniform] are uniform in the cube, the rest near the surface
    centre: torch.Tensor  # (3,) world centre
    rotation: torch.Tensor  # (3, 3): unit = rotation @ (x - centre) / crop_size
    crop_size: float


def crop_frame(yaw: float, flip_x: bool, flip_y: bool) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0]) @ rotation


def to_crop(points: torch.Tensor, centre: torch.Tensor, rotation: torch.Tensor, crop_size: float) -> torch.Tensor:
    """World -> unit frame of a crop; with the identity rotation this is `WindowGrid.to_unit`'s mapping."""
    return ((points - centre) / crop_size) @ rotation.T


def from_crop(unit: torch.Tensor, centre: torch.Tensor, rotation: torch.Tensor, crop_size: float) -> torch.Tensor:
    return centre + (unit @ rotation) * crop_size


def _inside(points: torch.Tensor, centre, rotation, crop_size: float, extent: float = 0.5) -> torch.Tensor:
    """Unit-frame coordinates of the points that fall inside the (rotated) crop cube [-extent, extent]^3."""
    unit = to_crop(points, centre, rotation, crop_size)
    return unit[(unit.abs() <= extent).all(dim=1)]


def _subset(points: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    if len(points) <= count:
        return points
    return points[torch.randperm(len(points), generator=generator, device=points.device)[:count]]


class CropSampler:
    """Draws crops of rooms: scalar choices from a numpy generator, bulk randomness from a torch one."""

    def __init__(self, config: DataConfig, seed: int, device: torch.device):
        self.config, self.device = config, device
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self._window_scales: dict[tuple[int, int], float] = {}

    def crop(self, room: TrainingRoom, augment: bool | None = None, tries: int = 20) -> Crop | None:
        """One crop of a room, or None when `tries` centres all gave fewer than `min_points` points."""
        config, rng = self.config, self.rng
        augment = config.augment if augment is None else augment
        for _ in range(tries):
            use_surface = rng.random() < config.surface_input_fraction
            scan = -1 if use_surface else int(rng.integers(len(room.scans)))
            source = room.clouds[scan]
            noise = rng.uniform(0.0, config.surface_input_noise) if use_surface else 0.0
            crop_size = config.crop_size * math.exp(rng.uniform(*np.log(config.crop_scale_range)))
            if config.crop_scale_follows_spacing and not use_surface:
                crop_size *= self.window_scale(room, scan)
            centre = source[int(rng.integers(len(source)))].double().cpu().numpy()
            centre = centre + rng.uniform(-1.0, 1.0, 3) * config.centre_jitter * crop_size / 2.0
            frame = (crop_frame(rng.uniform(0.0, 2.0 * math.pi), rng.random() < 0.5, rng.random() < 0.5)
                     if augment else np.eye(3))
            centre_t, rotation = (torch.as_tensor(a, dtype=torch.float32, device=self.device) for a in (centre, frame))
            points = _inside(source, centre_t, rotation, crop_size)
            if noise > 0.0:
                points = _subset(points, 2 * config.max_points, self.generator)
                points = points + torch.randn(points.shape, generator=self.generator, device=self.device) * (
                    noise / crop_size)
                points = points[(points.abs() <= 0.5).all(dim=1)]
            if len(points) < config.min_points:
                continue
            points = _subset(points, config.max_points, self.generator)
            queries, n_uniform = self._queries(room, centre_t, rotation, crop_size)
            labels = room.scene.occupancy(from_crop(queries, centre_t, rotation, crop_size)).float()
            return Crop(points, queries, labels, n_uniform, centre_t, rotation, crop_size)
        return None

    def window_scale(self, room: TrainingRoom, scan: int) -> float:
        """The reconstruction's window scale for a map of this scan's measured spacing (cached)."""
        key = (room.seed, scan)
        if key not in self._window_scales:
            points = room.scans[scan].cpu().numpy()
            self._window_scales[key] = window_scale_for(estimate_noise(points, sample=5000).spacing)
        return self._window_scales[key]

    def _queries(self, room: TrainingRoom, centre, rotation, crop_size: float) -> tuple[torch.Tensor, int]:
        config, generator = self.config, self.generator
        extent = config.query_extent
        surface = _inside(room.surface, centre, rotation, crop_size, extent)
        n_near = config.near_queries if len(surface) else 0
        n_uniform = config.uniform_queries + config.near_queries - n_near
        uniform = (torch.rand(n_uniform, 3, generator=generator, device=self.device) * 2.0 - 1.0) * extent
        if not n_near:
            return uniform, n_uniform
        near = surface[torch.randint(len(surface), (n_near,), generator=generator, device=self.device)]
        sigmas = torch.as_tensor(config.near_sigmas, dtype=torch.float32, device=self.device)
        sigma = sigmas[torch.randint(len(sigmas), (n_near, 1), generator=generator, device=self.device)] / crop_size
        near = (near + torch.randn(near.shape, generator=generator, device=self.device) * sigma).clamp(-extent, extent)
        return torch.cat([uniform, near]), n_uniform

    def batch(self, rooms: list[TrainingRoom], size: int) -> list[Crop]:
        crops = []
        while len(crops) < size:
            crop = self.crop(rooms[int(self.rng.integers(len(rooms)))])
            if crop is not None:
                crops.append(crop)
        return crops


def validation_crops(rooms: list[TrainingRoom], config: DataConfig, count: int, seed: int = 12345,
                     scales: tuple[float, ...] = (1.0,)) -> list[Crop]:
    """A fixed validation set: the same crops every time (own generators, no augmentation), `count` split
    evenly between crops of `scales` times the crop size (the first scale draws from `seed` itself)."""
    crops = []
    for index, scale in enumerate(scales):
        fixed = dataclasses.replace(config, crop_scale_range=(scale, scale), crop_scale_follows_spacing=False)
        sampler = CropSampler(fixed, seed + index, rooms[0].clouds[0].device)
        wanted = len(crops) + count // len(scales) + (index < count % len(scales))
        while len(crops) < wanted:
            crop = sampler.crop(rooms[len(crops) % len(rooms)], augment=False)
            if crop is not None:
                crops.append(crop)
    return crops


def collate(crops: list[Crop], device: torch.device):
    """Pad input points to one length (mask marks real points); queries all have the same count."""
    points, mask, _ = pad_clouds([c.points for c in crops], device)
    queries = torch.stack([c.queries for c in crops]).to(device)
    labels = torch.stack([c.labels for c in crops]).to(device)
    return points, mask, queries, labels
