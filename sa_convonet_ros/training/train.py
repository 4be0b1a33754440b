"""Pre-training of the ConvONet grid model on procedural rooms (BCE on occupancy), window crop by window crop.

Every training sample is one sliding-window crop in exactly the frame the reconstruction uses (see
`crops`): the encoder sees simulated scan points inside the crop (the `dense` and `sparse`
settings and random spacings and noise levels, sometimes plain noisy surface samples), the decoder is
supervised with exact occupancy labels of uniform and near-surface queries. Rooms come from the
`training` world (furnished rooms plus the training families of free-form objects) or the `plain` one.

The data is made on the training device: on a GPU the scans are sphere-traced there, on a CPU they are
cast with Open3D and cached under `data_cache/`. A run writes `runs/<name>/last.pt` (model, optimiser,
step, RNG states) every few minutes and on exit, so `--resume` continues it; `--init CHECKPOINT` starts
a new run from a shipped model's weights; `--export PATH` writes the best-validation model as a shipped
checkpoint.

    python -m sa_convonet_ros.training.train --name campaign --init sa_convonet_ros/models/default.pt --max-minutes 120
    python -m sa_convonet_ros.training.train --name campaign --resume --max-minutes 60
    python -m sa_convonet_ros.training.train --name campaign --export sa_convonet_ros/models/default.pt
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import PRECISIONS, MeshingConfig, ModelConfig, WindowConfig, check_settings, setting
from ..devices import resolve_device
from ..errors import SettingError
from ..flags import add_flags, flag, given
from ..model import ConvONet, count_parameters, load_model, save_model
from ..windows import WindowGrid
from .crops import Crop, CropSampler, DataConfig, collate, load_rooms, validation_crops

SHIPPED_FILE_LIMIT = 15 * 2**20  # bytes: larger exports store their weights as float16
DERIVED = ("crop_size",)  # set from the window geometry, not a flag


def default_model_config() -> ModelConfig:
    """The shipped architecture: a 32^3 feature grid with a 3-level U-Net (see models/MODEL_CARD.md)."""
    return ModelConfig(c_dim=32, hidden_dim=32, grid_resolution=32, unet_levels=3, unet_base_channels=16)


@dataclass
class TrainConfig:
    """A training run: the model, its data, the optimisation and the bookkeeping."""

    name: str = setting("default", "run directory: <out_dir>/<name>")
    model: ModelConfig = setting(help="architecture of the model", factory=default_model_config)
    data: DataConfig = setting(help="rooms, scans and crops", factory=DataConfig)
    init: str | None = setting(None, "start from this checkpoint's weights (its architecture replaces --model)")
    steps: int = setting(1500, "optimisation steps of the run (with --resume: extend it to this many)", at_least=1)
    batch_size: int = setting(8, "crops per step", at_least=1)
    lr: float = setting(1e-3, "Adam's learning rate after the warm-up", above=0)
    lr_final_factor: float = setting(0.05, "the cosine decay ends at lr times this", at_least=0, at_most=1)
    warmup_steps: int = setting(50, "steps of linear warm-up", at_least=0)
    lr_schedule: str = setting("steps", "cosine decay over the steps, or over max_minutes of this call",
                               choices=("steps", "time"))
    precision: str = setting("fp32", "the forward pass: fp32, tf32 (CUDA tensor cores) or bf16 (autocast)",
                             choices=PRECISIONS)
    window_size: float = setting(WindowConfig.window_size, "window core reproduced by the crops, metres", above=0)
    margin: float = setting(WindowConfig.margin, "context around the window core, metres", at_least=0)
    voxel_size: float = setting(MeshingConfig.voxel_size, "rounds the window core as in the reconstruction, metres",
                                above=0)
    train_seeds: tuple[int, int] = setting((1000, 1080), "range of training room seeds (seeds below 1000 are "
                                                         "left to tests)")
    val_seeds: tuple[int, int] = setting((5000, 5008), "range of validation room seeds")
    val_crops: int = setting(96, "fixed validation crops", at_least=1)
    val_crop_scales: tuple[float, ...] = setting((1.0,), "validation crops at these multiples of the crop size, "
                                                         "equally many each; the best model has the highest "
                                                         "mean of their IoUs")
    cache_dir: str = setting("data_cache", "cache of the rooms' scans (CPU runs)")
    data_workers: int = setting(1, "processes making the rooms' layouts, surface samples and Open3D scans",
                                at_least=1)
    out_dir: str = setting("runs", "parent folder of run directories")
    log_every: int = setting(10, "steps between log lines", at_least=1)
    val_every: int = setting(100, "steps between validations", at_least=1)
    checkpoint_minutes: float = setting(3.0, "minutes between checkpoints of the run", above=0)
    max_minutes: float | None = setting(None, "stop cleanly (and checkpoint) after this much wall time in this "
                                              "call", above=0)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    threads: int = setting(2, "torch threads on the CPU", at_least=1)
    seed: int = setting(0, "seed of the crops and the initialisation")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.lr_schedule == "time" and not self.max_minutes:
            raise SettingError("lr_schedule", "'steps' unless {0} is set", self.lr_schedule, ("max_minutes",))

    @property
    def grid(self) -> WindowGrid:
        return WindowGrid.from_sizes(self.window_size, self.voxel_size, self.margin)

    @property
    def data_config(self) -> DataConfig:
        """The data settings with the crop edge of the window geometry."""
        return dataclasses.replace(self.data, crop_size=self.grid.crop_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        values["model"] = ModelConfig(**values.get("model", {}))
        values["data"] = DataConfig(**{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in values.get("data", {}).items()})
        for key in ("train_seeds", "val_seeds", "val_crop_scales"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@torch.no_grad()
def evaluate(model: ConvONet, crops: list[Crop], device: torch.device, batch_size: int) -> dict[str, float]:
    """IoU of occupancy (logit > 0) over the validation queries: `iou` is the mean of the IoUs of each crop
    size (`iou_<size>m`, so that no scale outweighs another), also split into uniform / near-surface."""
    was_training = model.training
    model.eval()
    counts = {"uniform": np.zeros(2), "near": np.zeros(2)}
    by_size: dict[float, np.ndarray] = {}
    loss, n = 0.0, 0
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        points, mask, queries, labels = collate(chunk, device)
        logits = model(points, queries, mask)
        loss += float(F.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
        n += labels.numel()
        predicted, truth = (logits > 0).cpu().numpy(), labels.cpu().numpy() > 0.5
        for i, crop in enumerate(chunk):
            size = by_size.setdefault(round(crop.crop_size, 2), np.zeros(2))
            for key, part in (("uniform", slice(0, crop.n_uniform)), ("near", slice(crop.n_uniform, None))):
                p, t = predicted[i, part], truth[i, part]
                both = (np.count_nonzero(p & t), np.count_nonzero(p | t))
                counts[key] += both
                size += both
    model.train(was_training)
    sizes = {f"iou_{size:.2f}m": float(c[0] / max(c[1], 1)) for size, c in sorted(by_size.items())}
    return {"iou": float(np.mean(list(sizes.values()))) if sizes else 0.0,
            "iou_uniform": float(counts["uniform"][0] / max(counts["uniform"][1], 1)),
            "iou_near": float(counts["near"][0] / max(counts["near"][1], 1)), "loss": loss / max(n, 1),
            **(sizes if len(sizes) > 1 else {})}


def learning_rate(config: TrainConfig, step: int, elapsed_minutes: float = 0.0) -> float:
    """Linear warm-up, then cosine decay over the steps (or, with lr_schedule 'time', over max_minutes)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "time":
        progress = min(1.0, elapsed_minutes / config.max_minutes)
    else:
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    low = config.lr * config.lr_final_factor
    return low + 0.5 * (config.lr - low) * (1.0 + math.cos(math.pi * progress))


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return (f"{platform.processor() or platform.machine()} CPU ({os.cpu_count()} cores), "
            f"{torch.get_num_threads()} torch threads")


def forward_precision(precision: str, device: torch.device):
    """Autocast for the training forward pass: bf16 where asked; tf32 tensor cores on CUDA; else fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return contextlib.nullcontext()


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, log_file: bool = True):
        self.run_dir = Path(config.out_dir) / config.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / "train.log" if log_file else None
        torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        if config.init and not resume:
            initial = load_model(config.init)
            config = dataclasses.replace(config, model=initial.config)
            self.model = initial.to(self.device)
        else:
            self.model = ConvONet(config.model).to(self.device)
        self.config = config
        self.sampler = CropSampler(config.data_config, config.seed, self.device)
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
            "numpy_rng": self.sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "sampler_rng": self.sampler.generator.get_state(),
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
        self.commands = list(state.get("commands") or [])
        self.sampler.rng.bit_generator.state = state["numpy_rng"]
        self.sampler.generator.set_state(state["sampler_rng"].to(self.sampler.generator.get_state().device))
        torch.set_rng_state(state["torch_rng"])
        self.log(f"resumed {path} at step {self.step} ({self.wall_seconds / 60:.1f} min trained)")

    # ---- loop
    def load_data(self):
        config, data = self.config, self.config.data_config
        train_rooms = load_rooms(range(*config.train_seeds), data, self.device, config.cache_dir,
                                 config.data_workers, self.log)
        val_rooms = load_rooms(range(*config.val_seeds), data, self.device, config.cache_dir,
                               config.data_workers, self.log)
        return train_rooms, validation_crops(val_rooms, data, config.val_crops, seed=config.seed + 12345,
                                             scales=config.val_crop_scales)

    def train_step(self, rooms, elapsed_minutes: float = 0.0) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step, elapsed_minutes)
        points, mask, queries, labels = collate(self.sampler.batch(rooms, self.config.batch_size), self.device)
        with forward_precision(self.config.precision, self.device):
            logits = self.model(points, queries, mask)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {self.step}")
        self.step += 1
        return value

    def train(self, command: str = "") -> dict:
        config = self.config
        if command:
            self.commands.append(command)
        self.log(f"config {json.dumps(config.to_dict())}")
        self.log(f"model {count_parameters(self.model)} parameters on {self.device} ({hardware()}); "
                 f"crop {config.grid.crop_size:.3f} m")
        data_start = time.time()
        train_rooms, val_crops = self.load_data()
        data_seconds = time.time() - data_start
        self.log(f"{len(train_rooms)} training rooms, {len(val_crops)} val crops ({data_seconds:.0f} s)")
        if self.step == 0 and config.init:  # the starting model's own score: the bar to beat
            self.validate(val_crops)
        start = last_save = last_time = time.time()
        losses, first_step, stopped = [], self.step, "steps"
        self.model.train()
        while self.step < config.steps:
            if config.max_minutes is not None and time.time() - start > 60.0 * config.max_minutes:
                stopped = "max-minutes"
                break
            losses.append(self.train_step(train_rooms, (time.time() - start) / 60.0))
            now = time.time()
            self.wall_seconds, last_time = self.wall_seconds + now - last_time, now
            if self.step % config.log_every == 0:
                self.log(f"step {self.step}/{config.steps} loss {np.mean(losses):.4f} "
                         f"lr {learning_rate(config, self.step - 1, (now - start) / 60.0):.2e} "
                         f"{(now - start) / (self.step - first_step):.3f} s/step wall {self.wall_seconds / 60:.1f} min")
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
        return {"step": self.step, "steps_this_call": self.step - first_step, "best_iou": self.best["iou"],
                "best_step": self.best["step"], "stopped": stopped, "data_seconds": round(data_seconds, 1),
                "train_seconds": round(time.time() - start, 1), "history": self.history[-5:]}

    def validate(self, crops: list[Crop]) -> dict:
        metrics = evaluate(self.model, crops, self.device, self.config.batch_size)
        entry = {"step": self.step, "wall_minutes": round(self.wall_seconds / 60, 2), **metrics}
        self.history.append(entry)
        if metrics["iou"] > self.best["iou"]:
            self.best = {"iou": metrics["iou"], "step": self.step,
                         "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
        sizes = "".join(f", {key[4:]} {value:.4f}" for key, value in metrics.items() if key[4:5].isdigit())
        self.log(f"val step {self.step} IoU {metrics['iou']:.4f} (uniform {metrics['iou_uniform']:.4f}, "
                 f"near {metrics['iou_near']:.4f}{sizes}) loss {metrics['loss']:.4f} "
                 f"(best {self.best['iou']:.4f} at {self.best['step']})")
        return metrics


def export(run_dir: str | Path, path: str | Path, command: str | None = None, latest: bool = False) -> Path:
    """Write the best-validation model of a run (or, with `latest`, its last weights: the validation IoU
    does not foretell the mesh after the test-time optimisation) as a shipped checkpoint with metadata."""
    state = torch.load(Path(run_dir) / "last.pt", map_location="cpu", weights_only=False)
    config = TrainConfig.from_dict(state["config"])
    model = ConvONet(config.model)
    best = state["best"]
    model.load_state_dict(best["state"] if best["state"] is not None and not latest else state["model"])
    metadata = {
        "trained_by": "sa_convonet_ros.training.train",
        "data": {"generator": "sa_convonet_ros.training.crops (rooms of sa_convonet_ros.synthetic.rooms)",
                 "world": config.data.world, "train_seeds": list(config.train_seeds),
                 "val_seeds": list(config.val_seeds),
                 "inputs": f"scans dense + sparse + {config.data.random_scans} random per room "
                           f"(spacing {config.data.scan_voxel_range} m, noise {config.data.scan_noise_range} m), "
                           "noisy surface samples",
                 "crop_size_m": config.grid.crop_size, "crop_scale_range": list(config.data.crop_scale_range),
                 "val_crop_scales": list(config.val_crop_scales),
                 "window_size_m": config.window_size, "margin_m": config.margin, "init": config.init},
        "steps": int(state["step"]),
        "best_step": int(best["step"]),
        "weights": "last" if latest else "best",
        "batch_size": config.batch_size,
        "val_iou": float(best["iou"]),
        "val_history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}
                        for h in state["history"]],
        "wall_minutes": round(float(state["wall_seconds"]) / 60.0, 1),
        "hardware": state.get("hardware") or hardware(),
        "train_config": state["config"],
        "command": command or " && ".join(
            [*state.get("commands", []),
             f"python -m sa_convonet_ros.training.train --name {config.name} --out-dir {config.out_dir} "
             f"--export{'-last' if latest else ''} {path}"]),
        "torch": torch.__version__,
    }
    metadata = json.loads(json.dumps(metadata, default=float))  # plain Python types only (safe to load)
    written = save_model(model, path, **metadata)
    if written.stat().st_size > SHIPPED_FILE_LIMIT:  # keep shipped files small: half precision is plenty
        written = save_model(model, path, weights_dtype=torch.float16, **metadata)
    return written


# ------------------------------------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    """One flag per setting of TrainConfig (and of its model and data sections), plus the actions."""
    parser = argparse.ArgumentParser(
        prog="python -m sa_convonet_ros.training.train", description=__doc__.split("\n")[0],
        epilog="With --resume the run keeps its own settings: only --steps (which extends the run), "
               "--max-minutes, --device and --threads apply.")
    add_flags(parser, TrainConfig, TrainConfig(), skip=DERIVED)
    parser.add_argument("--resume", action="store_true", help="continue from <out-dir>/<name>/last.pt")
    parser.add_argument("--export", metavar="PATH", help="write the run's best model to PATH and exit")
    parser.add_argument("--export-last", metavar="PATH", help="write the run's last weights to PATH and exit")
    parser.add_argument("--report", metavar="JSON", help="also write the run's summary (steps, IoU, timings) here")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig's defaults, with the settings given on the command line."""
    defaults = TrainConfig()
    values = given(args, TrainConfig, skip=DERIVED)
    sections = {name: dataclasses.replace(getattr(defaults, name), **values.pop(name, {}))
                for name in ("model", "data")}
    return dataclasses.replace(defaults, **sections, **values)


def main(argv: list[str] | None = None) -> dict | Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except SettingError as error:
        parser.error(error.describe(flag))
    if args.export or args.export_last:
        path = export(Path(config.out_dir) / config.name, args.export or args.export_last,
                      latest=not args.export)
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
    command = "python -m sa_convonet_ros.training.train " + " ".join(shlex.quote(word) for word in words)
    result = trainer.train(command=command)
    if args.report:
        Path(args.report).write_text(json.dumps({**result, "hardware": hardware(),
                                                 "parameters": count_parameters(trainer.model)}, indent=2))
    return result


if __name__ == "__main__":
    main()
