"""Pre-training of the ConvONet grid model on procedural rooms (BCE on occupancy), window crop by window crop.

Every training sample is one sliding-window crop in exactly the frame the reconstruction uses: a cube of
edge `WindowGrid.crop_size` (window core + 2 * margin) mapped onto the unit cube by
`unit = (x - centre) / crop_size`. The encoder sees the simulated scan points inside the crop (dense or
sparse scanner settings, sometimes plain noisy surface samples); the decoder is supervised with exact
occupancy labels of uniform and near-surface queries. Crops are rotated about z and flipped in x / y.

Rooms and their scans are generated once per seed and cached under `data_cache/`. A run writes
`runs/<name>/last.pt` (model, optimiser, step, RNG states) every few minutes and on exit, so
`--resume` continues it; `--export PATH` writes the best-validation model as a shipped checkpoint.

    python -m sa_convonet_ros.train --name default --max-minutes 45
    python -m sa_convonet_ros.train --name default --resume --max-minutes 30
    python -m sa_convonet_ros.train --name default --export sa_convonet_ros/models/default.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import MeshingConfig, ModelConfig, WindowConfig
from .data.scans import simulate_scans
from .data.rooms import generate_room
from .data.scenes import Scene
from .model import ConvONet, count_parameters, resolve_device, save_model
from .optimize import pad_clouds
from .windows import WindowGrid

CACHE_VERSION = 1


def default_model_config() -> ModelConfig:
    """The shipped architecture: a 32^3 feature grid with a 3-level U-Net (see models/MODEL_CARD.md)."""
    return ModelConfig(c_dim=32, hidden_dim=32, grid_resolution=32, unet_levels=3, unet_base_channels=16)


@dataclass
class TrainConfig:
    name: str = "default"  # run directory: <out_dir>/<name>
    model: ModelConfig = field(default_factory=default_model_config)
    # optimisation
    steps: int = 1500
    batch_size: int = 8  # crops per step
    lr: float = 1e-3  # Adam; cosine decay to lr * lr_final_factor over `steps`
    lr_final_factor: float = 0.05
    warmup_steps: int = 50
    # crops (metric sizes default to the reconstruction's)
    window_size: float = WindowConfig.window_size
    margin: float = WindowConfig.margin
    voxel_size: float = MeshingConfig.voxel_size  # only rounds the window core, as in the reconstruction
    min_points: int = WindowConfig.min_points  # crops with fewer input points are skipped
    max_points: int = 4096  # input points per crop (random subset)
    centre_jitter: float = 0.5  # crop centre = a scan point + uniform offset of up to this * crop / 2
    surface_input_fraction: float = 0.2  # crops whose input is noisy surface samples instead of a scan
    surface_input_noise: float = 0.01  # max noise std (metres) of those samples
    dense_fraction: float = 0.5  # of the scan crops, this many use the dense setting, the rest sparse
    uniform_queries: int = 1024  # per crop, uniform in the padded unit cube
    near_queries: int = 1024  # per crop, surface samples + Gaussian noise
    query_extent: float = 0.55  # uniform queries in [-extent, extent]^3 (unit units)
    near_sigmas: tuple[float, float] = (0.01, 0.03)  # metres; each near query picks one at random
    augment: bool = True  # random yaw and x / y flips of the whole crop
    # data
    train_seeds: tuple[int, int] = (1000, 1080)  # range of room seeds; seeds below 1000 are left to tests
    val_seeds: tuple[int, int] = (5000, 5008)
    val_crops: int = 96
    surface_samples: int = 200_000  # cached ground-truth surface samples per room
    cache_dir: str = "data_cache"
    # bookkeeping
    out_dir: str = "runs"
    log_every: int = 10
    val_every: int = 100
    checkpoint_minutes: float = 3.0
    max_minutes: float | None = None  # stop cleanly (and checkpoint) after this much wall time in this call
    device: str = "auto"
    threads: int = 2
    seed: int = 0

    @property
    def grid(self) -> WindowGrid:
        return WindowGrid.from_sizes(self.window_size, self.voxel_size, self.margin)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        values["model"] = ModelConfig(**values.get("model", {}))
        for key in ("near_sigmas", "train_seeds", "val_seeds"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


# ------------------------------------------------------------------------------------------------ data

@dataclass
class Room:
    seed: int
    scene: Scene
    clouds: dict[str, np.ndarray]  # 'dense', 'sparse', 'surface' -> (N, 3) float32 world points


def load_room(seed: int, cache_dir: str | Path, surface_samples: int) -> Room:
    """A room with its dense / sparse scans and surface samples, from the cache or generated and cached."""
    path = Path(cache_dir) / f"room_v{CACHE_VERSION}_{seed:06d}_{surface_samples}.npz"
    scene = generate_room(seed)
    if path.is_file():
        with np.load(path) as data:
            return Room(seed, scene, {key: data[key] for key in ("dense", "sparse", "surface")})
    clouds = {setting: simulate_scans(scene, setting, seed=seed)[0].astype(np.float32)
              for setting in ("dense", "sparse")}
    clouds["surface"] = scene.sample_surface(surface_samples, seed=seed)[0].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **clouds)
    tmp.replace(path)
    return Room(seed, scene, clouds)


def load_rooms(seeds: range, config: TrainConfig, log=print) -> list[Room]:
    rooms, start = [], time.time()
    for i, seed in enumerate(seeds):
        rooms.append(load_room(seed, config.cache_dir, config.surface_samples))
        if (i + 1) % 20 == 0:
            log(f"rooms {i + 1}/{len(seeds)} ({time.time() - start:.0f} s)")
    return rooms


@dataclass
class Crop:
    points: np.ndarray  # (n, 3) input points, unit frame
    queries: np.ndarray  # (m, 3) unit frame
    labels: np.ndarray  # (m,) bool occupancy
    n_uniform: int  # queries[:n_uniform] are uniform in the cube, the rest near the surface
    centre: np.ndarray  # world centre
    rotation: np.ndarray  # (3, 3): unit = rotation @ (x - centre) / crop_size


def crop_frame(yaw: float, flip_x: bool, flip_y: bool) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0]) @ rotation


def to_crop(points: np.ndarray, centre: np.ndarray, rotation: np.ndarray, crop_size: float) -> np.ndarray:
    """World -> unit frame of a crop; with the identity rotation this is `WindowGrid.to_unit`'s mapping."""
    return ((np.asarray(points, np.float64) - centre) / crop_size) @ rotation.T


def from_crop(unit: np.ndarray, centre: np.ndarray, rotation: np.ndarray, crop_size: float) -> np.ndarray:
    return centre + (np.asarray(unit, np.float64) @ rotation) * crop_size


def _inside(points: np.ndarray, centre: np.ndarray, rotation: np.ndarray, crop_size: float,
            extent: float = 0.5) -> np.ndarray:
    """Unit-frame coordinates of the points that fall inside the (rotated) crop cube [-extent, extent]^3."""
    reach = extent * crop_size * math.sqrt(2.0)  # a yawed cube fits in this xy box
    near = np.all(np.abs(points[:, :2] - centre[:2]) <= reach, axis=1)
    near &= np.abs(points[:, 2] - centre[2]) <= extent * crop_size
    unit = to_crop(points[near], centre, rotation, crop_size)
    return unit[np.all(np.abs(unit) <= extent, axis=1)]


def sample_crop(room: Room, config: TrainConfig, rng: np.random.Generator, augment: bool | None = None,
                tries: int = 20) -> Crop | None:
    """One training crop of a room, or None when `tries` centres all gave fewer than `min_points` points."""
    crop_size = config.grid.crop_size
    augment = config.augment if augment is None else augment
    for _ in range(tries):
        if rng.random() < config.surface_input_fraction:
            source = room.clouds["surface"]
            noise = rng.uniform(0.0, config.surface_input_noise)
        else:
            source = room.clouds["dense" if rng.random() < config.dense_fraction else "sparse"]
            noise = 0.0
        centre = source[rng.integers(len(source))].astype(np.float64)
        centre = centre + rng.uniform(-1.0, 1.0, 3) * config.centre_jitter * crop_size / 2.0
        rotation = (crop_frame(rng.uniform(0.0, 2.0 * math.pi), rng.random() < 0.5, rng.random() < 0.5)
                    if augment else np.eye(3))
        points = _inside(source, centre, rotation, crop_size)
        if noise > 0.0:
            points = points[rng.choice(len(points), min(len(points), 2 * config.max_points), replace=False)]
            points = points + rng.normal(scale=noise / crop_size, size=points.shape)
            points = points[np.all(np.abs(points) <= 0.5, axis=1)]
        if len(points) < config.min_points:
            continue
        if len(points) > config.max_points:
            points = points[rng.choice(len(points), config.max_points, replace=False)]
        queries, n_uniform = _crop_queries(room, config, centre, rotation, rng)
        labels = room.scene.occupancy(from_crop(queries, centre, rotation, crop_size))
        return Crop(points.astype(np.float32), queries.astype(np.float32), labels, n_uniform, centre, rotation)
    return None


def _crop_queries(room: Room, config: TrainConfig, centre, rotation, rng) -> tuple[np.ndarray, int]:
    crop_size, extent = config.grid.crop_size, config.query_extent
    surface = _inside(room.clouds["surface"], centre, rotation, crop_size, extent)
    n_near = config.near_queries if len(surface) else 0
    uniform = rng.uniform(-extent, extent, size=(config.uniform_queries + config.near_queries - n_near, 3))
    if not n_near:
        return uniform, len(uniform)
    near = surface[rng.integers(len(surface), size=n_near)]
    sigma = rng.choice(np.asarray(config.near_sigmas, float), size=(n_near, 1)) / crop_size
    near = np.clip(near + rng.normal(size=near.shape) * sigma, -extent, extent)
    return np.concatenate([uniform, near]), len(uniform)


def collate(crops: list[Crop], device: torch.device):
    """Pad input points to one length (mask marks real points); queries all have the same count."""
    points, mask, _ = pad_clouds([c.points for c in crops], device)
    queries = np.stack([c.queries for c in crops])
    labels = np.stack([c.labels for c in crops]).astype(np.float32)
    return points, mask, torch.from_numpy(queries).to(device), torch.from_numpy(labels).to(device)


def sample_batch(rooms: list[Room], config: TrainConfig, rng: np.random.Generator) -> list[Crop]:
    crops = []
    while len(crops) < config.batch_size:
        crop = sample_crop(rooms[rng.integers(len(rooms))], config, rng)
        if crop is not None:
            crops.append(crop)
    return crops


def validation_crops(rooms: list[Room], config: TrainConfig) -> list[Crop]:
    """A fixed validation set: the same crops every time (own RNG, no augmentation)."""
    rng = np.random.default_rng([config.seed, 12345])
    crops = []
    while len(crops) < config.val_crops:
        crop = sample_crop(rooms[len(crops) % len(rooms)], config, rng, augment=False)
        if crop is not None:
            crops.append(crop)
    return crops


@torch.no_grad()
def evaluate(model: ConvONet, crops: list[Crop], device: torch.device, batch_size: int) -> dict[str, float]:
    """IoU of occupancy (logit > 0) over all validation queries, also split into uniform / near-surface."""
    was_training = model.training
    model.eval()
    counts = {"uniform": np.zeros(2), "near": np.zeros(2)}
    loss, n = 0.0, 0
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        points, mask, queries, labels = collate(chunk, device)
        logits = model(points, queries, mask)
        loss += float(F.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
        n += labels.numel()
        predicted, truth = (logits > 0).cpu().numpy(), labels.cpu().numpy() > 0.5
        for i, crop in enumerate(chunk):
            for key, part in (("uniform", slice(0, crop.n_uniform)), ("near", slice(crop.n_uniform, None))):
                p, t = predicted[i, part], truth[i, part]
                counts[key] += (np.count_nonzero(p & t), np.count_nonzero(p | t))
    model.train(was_training)
    both = counts["uniform"] + counts["near"]
    return {"iou": float(both[0] / max(both[1], 1)),
            "iou_uniform": float(counts["uniform"][0] / max(counts["uniform"][1], 1)),
            "iou_near": float(counts["near"][0] / max(counts["near"][1], 1)), "loss": loss / max(n, 1)}


# ------------------------------------------------------------------------------------------- training

def learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    low = config.lr * config.lr_final_factor
    return low + 0.5 * (config.lr - low) * (1.0 + math.cos(math.pi * progress))


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return (f"{platform.processor() or platform.machine()} CPU ({os.cpu_count()} cores), "
            f"{torch.get_num_threads()} torch threads")


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, log_file: bool = True):
        self.config = config
        self.run_dir = Path(config.out_dir) / config.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / "train.log" if log_file else None
        torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.model = ConvONet(config.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.step = 0
        self.wall_seconds = 0.0  # accumulated over all calls of this run
        self.best = {"iou": -1.0, "step": 0, "state": None}
        self.history: list[dict] = []
        self.commands: list[str] = []  # every command line that trained this run, in order
        if resume:
            self.load(self.run_dir / "last.pt")

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        if self.log_path is not None:
            with open(self.log_path, "a") as handle:
                handle.write(line + "\n")

    # ---- checkpoints
    def save(self, path: Path | None = None) -> Path:
        path = path or self.run_dir / "last.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({
            "config": self.config.to_dict(), "step": self.step, "wall_seconds": self.wall_seconds,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "best": self.best, "history": self.history, "hardware": hardware(), "commands": self.commands,
            "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        }, tmp)
        tmp.replace(path)
        return path

    def load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        state = torch.load(path, map_location=self.device, weights_only=False)
        saved = TrainConfig.from_dict(state["config"])
        if dataclasses.asdict(saved.model) != dataclasses.asdict(self.config.model):
            raise ValueError(f"{path} holds a different architecture: {saved.model}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.wall_seconds = int(state["step"]), float(state["wall_seconds"])
        self.best, self.history = state["best"], state["history"]
        self.commands = list(state.get("commands") or [_training_command(TrainConfig.from_dict(state["config"]))])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.log(f"resumed {path} at step {self.step} ({self.wall_seconds / 60:.1f} min trained)")

    # ---- loop
    def train(self, command: str = "") -> dict:
        config = self.config
        if command:
            self.commands.append(command)
        self.log(f"config {json.dumps(config.to_dict())}")
        self.log(f"model {count_parameters(self.model)} parameters on {self.device} ({hardware()}); "
                 f"crop {config.grid.crop_size:.3f} m")
        train_rooms = load_rooms(range(*config.train_seeds), config, self.log)
        val_rooms = load_rooms(range(*config.val_seeds), config, self.log)
        val_crops = validation_crops(val_rooms, config)
        self.log(f"{len(train_rooms)} training rooms, {len(val_rooms)} validation rooms, {len(val_crops)} val crops")
        start = time.time()
        last_save, last_time, losses, first_step = start, start, [], self.step
        self.model.train()
        stopped = "steps"
        while self.step < config.steps:
            if config.max_minutes is not None and time.time() - start > 60.0 * config.max_minutes:
                stopped = "max-minutes"
                break
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(config, self.step)
            points, mask, queries, labels = collate(sample_batch(train_rooms, config, self.rng), self.device)
            loss = F.binary_cross_entropy_with_logits(self.model(points, queries, mask), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {float(loss)} at step {self.step}")
            losses.append(loss.item())
            self.step += 1
            now = time.time()
            self.wall_seconds += now - last_time
            last_time = now
            if self.step % config.log_every == 0:
                self.log(f"step {self.step}/{config.steps} loss {np.mean(losses):.4f} "
                         f"lr {learning_rate(config, self.step - 1):.2e} "
                         f"{(now - start) / (self.step - first_step):.2f} s/step wall {self.wall_seconds / 60:.1f} min")
                losses = []
            if self.step % config.val_every == 0 or self.step == config.steps:
                self.validate(val_crops)
            if now - last_save > 60.0 * config.checkpoint_minutes:
                self.save()
                last_save = time.time()
        if not self.history or self.history[-1]["step"] != self.step:
            self.validate(val_crops)
        self.save()
        self.log(f"stopped ({stopped}) at step {self.step}; best val IoU {self.best['iou']:.4f} "
                 f"at step {self.best['step']}; {self.wall_seconds / 60:.1f} min")
        return {"step": self.step, "best_iou": self.best["iou"], "stopped": stopped}

    def validate(self, crops: list[Crop]) -> dict:
        metrics = evaluate(self.model, crops, self.device, self.config.batch_size)
        entry = {"step": self.step, "wall_minutes": round(self.wall_seconds / 60, 2), **metrics}
        self.history.append(entry)
        if metrics["iou"] > self.best["iou"]:
            self.best = {"iou": metrics["iou"], "step": self.step,
                         "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
        self.log(f"val step {self.step} IoU {metrics['iou']:.4f} (uniform {metrics['iou_uniform']:.4f}, "
                 f"near {metrics['iou_near']:.4f}) loss {metrics['loss']:.4f} "
                 f"(best {self.best['iou']:.4f} at {self.best['step']})")
        return metrics


def export(run_dir: str | Path, path: str | Path, command: str | None = None) -> Path:
    """Write the best-validation model of a run as a shipped checkpoint (`model.save_model`) with metadata."""
    state = torch.load(Path(run_dir) / "last.pt", map_location="cpu", weights_only=False)
    config = TrainConfig.from_dict(state["config"])
    model = ConvONet(config.model)
    best = state["best"]
    model.load_state_dict(best["state"] if best["state"] is not None else state["model"])
    name = config.name
    metadata = {
        "trained_by": "sa_convonet_ros.train",
        "data": {"generator": "sa_convonet_ros.data.rooms.generate_room",
                 "train_seeds": list(config.train_seeds), "val_seeds": list(config.val_seeds),
                 "inputs": "simulate_scans dense + sparse, noisy surface samples",
                 "crop_size_m": config.grid.crop_size, "window_size_m": config.window_size,
                 "margin_m": config.margin},
        "steps": int(state["step"]),
        "best_step": int(best["step"]),
        "batch_size": config.batch_size,
        "val_iou": float(best["iou"]),
        "val_history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}
                        for h in state["history"]],
        "wall_minutes": round(float(state["wall_seconds"]) / 60.0, 1),
        "hardware": state.get("hardware") or hardware(),
        "train_config": state["config"],
        "command": command or " && ".join(
            [*(state.get("commands") or [_training_command(config)]),
             f"python -m sa_convonet_ros.train --name {name} --out-dir {config.out_dir} --export {path}"]),
        "torch": torch.__version__,
    }
    metadata = json.loads(json.dumps(metadata, default=float))  # plain Python types only (safe to load)
    return save_model(model, path, **metadata)


def _training_command(config: TrainConfig) -> str:
    """The training command of a run that did not record its own (default architecture and data)."""
    budget = f" --max-minutes {config.max_minutes:g}" if config.max_minutes is not None else ""
    return f"python -m sa_convonet_ros.train --name {config.name} --steps {config.steps}{budget}"


# ------------------------------------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    """One flag per field of TrainConfig and of its ModelConfig, plus --resume and --export."""
    from .flags import add_flags

    parser = argparse.ArgumentParser(
        prog="python -m sa_convonet_ros.train", description=__doc__.split("\n")[0],
        epilog="With --resume the run keeps its own settings: only --steps (which extends the run), "
               "--max-minutes, --device and --threads apply.")
    add_flags(parser, TrainConfig, TrainConfig())
    parser.add_argument("--resume", action="store_true", help="continue from <out-dir>/<name>/last.pt")
    parser.add_argument("--export", metavar="PATH", help="write the run's best model to PATH and exit")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig's defaults, with the settings given on the command line."""
    from .flags import given

    defaults = TrainConfig()
    values = given(args, TrainConfig)
    model = dataclasses.replace(defaults.model, **values.pop("model", {}))
    return dataclasses.replace(defaults, model=model, **values)


def main(argv: list[str] | None = None) -> dict | Path:
    from .errors import SettingError
    from .flags import flag

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except SettingError as error:
        parser.error(error.describe(flag))
    if args.export:
        path = export(Path(config.out_dir) / config.name, args.export)
        print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return path
    if args.resume:  # keep the run's own settings (and lr schedule); only the wall-time budget and device change
        saved = torch.load(Path(config.out_dir) / config.name / "last.pt", map_location="cpu", weights_only=False)
        config = dataclasses.replace(TrainConfig.from_dict(saved["config"]), max_minutes=config.max_minutes,
                                     device=config.device, threads=config.threads)
        if args.steps is not None:
            config.steps = args.steps
    trainer = Trainer(config, resume=args.resume)
    words = argv if argv is not None else sys.argv[1:]
    command = "python -m sa_convonet_ros.train " + " ".join(shlex.quote(word) for word in words)
    return trainer.train(command=command)


if __name__ == "__main__":
    main()
