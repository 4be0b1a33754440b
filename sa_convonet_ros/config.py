"""Configuration of the reconstruction: model architecture, test-time optimisation, windows, meshing.

Every knob lives in a dataclass; named profiles (`fast`, `paper`, ...) are complete configurations.
`ReconstructionConfig.from_dict` / `to_dict` let the CLI, YAML files and the ROS node share them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

OptimizedParts = Literal["all", "encoder", "decoder"]
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass
class ModelConfig:
    """Architecture of the ConvONet grid model (defaults: the published `room_grid64`)."""

    c_dim: int = 32  # feature channels of the grid
    hidden_dim: int = 32  # width of the point encoder blocks and of the decoder
    grid_resolution: int = 64  # R: the feature volume is R^3
    unet_levels: int = 4
    unet_base_channels: int = 32  # U-Net channels at full resolution, doubled per level
    encoder_blocks: int = 5
    decoder_blocks: int = 5
    padding: float = 0.1  # the unit cube [-0.5, 0.5]^3 is padded by this before voxelisation

    def __post_init__(self) -> None:
        for name in ("c_dim", "hidden_dim", "grid_resolution", "unet_levels", "unet_base_channels",
                     "encoder_blocks", "decoder_blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.grid_resolution % (2 ** (self.unet_levels - 1)) != 0:
            raise ValueError(
                f"grid_resolution {self.grid_resolution} must be divisible by 2^(unet_levels-1) = "
                f"{2 ** (self.unet_levels - 1)} so every U-Net level halves it exactly")
        if self.encoder_blocks < 1 or self.padding < 0:
            raise ValueError("encoder_blocks must be >= 1 and padding >= 0")


@dataclass
class OptimizationConfig:
    """Sign-agnostic test-time optimisation (UCE loss) of each window's copy of the network."""

    iterations: int = 200
    optimized_parts: OptimizedParts = "decoder"
    freeze_norm: bool = True  # keep GroupNorm scale/shift at their pretrained values
    learning_rate: float = 3e-4
    optimize_features: bool = False  # also adapt each window's encoded feature grid (needs optimized_parts='decoder')
    feature_learning_rate: float = 1e-2
    decay_every: int = 100  # multiply the learning rate by `decay_factor` every this many steps
    decay_factor: float = 0.3
    surface_samples: int = 1536  # per window and step, drawn from the observed points
    off_surface_samples: int = 512  # observed points + Gaussian noise
    residual_sampling: float = 0.0  # fraction of surface samples drawn where the fit is worst (0 = uniform)
    sigma: float = 0.1  # noise std of off-surface samples, in unit-cube units of a window
    max_points_per_window: int = 4096  # input points fed to the encoder per window (as in training)
    max_samples_per_window: int = 100_000  # observed points the UCE loss samples from, per window
    window_batch: int = 8  # windows optimised together as one batch
    early_stop_patience: int = 0  # stop a batch when its loss has not improved for this many steps (0 = never)
    early_stop_tolerance: float = 1e-3  # relative improvement that counts
    warm_start_iterations: int = 0  # steps for a window whose earlier result is cached (0 = always cold)
    precision: str = "fp32"  # fp32 | tf32 | bf16 (autocast) for the optimisation steps
    fused_adam: bool = True  # one fused Adam kernel per step where the device has one (CPU, CUDA)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.optimized_parts not in ("all", "encoder", "decoder"):
            raise ValueError(f"optimized_parts must be 'all', 'encoder' or 'decoder', got {self.optimized_parts!r}")
        if self.learning_rate <= 0 or self.sigma <= 0 or self.decay_every < 1 or not 0 < self.decay_factor <= 1:
            raise ValueError("learning_rate and sigma must be > 0, decay_every >= 1, 0 < decay_factor <= 1")
        if not 0.0 <= self.residual_sampling <= 1.0:
            raise ValueError(f"residual_sampling must be in [0, 1], got {self.residual_sampling}")
        if self.surface_samples < 1 or self.off_surface_samples < 0:
            raise ValueError("surface_samples must be >= 1 and off_surface_samples >= 0")
        if self.optimize_features and self.optimized_parts != "decoder":
            raise ValueError("optimize_features needs optimized_parts='decoder' (an adapted encoder recomputes the features)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.warm_start_iterations < 0:
            raise ValueError(f"warm_start_iterations must be >= 0, got {self.warm_start_iterations}")
        if self.feature_learning_rate <= 0:
            raise ValueError(f"feature_learning_rate must be > 0, got {self.feature_learning_rate}")
        if self.max_points_per_window < 1 or self.max_samples_per_window < 1 or self.window_batch < 1:
            raise ValueError("max_points_per_window, max_samples_per_window and window_batch must be >= 1")


@dataclass
class WindowConfig:
    """Sliding windows in metric units. Each window owns a cubic core; its network also sees a margin."""

    window_size: float = 1.2  # edge of a window's core, metres (rounded to a multiple of the voxel size)
    margin: float = 0.2  # context around the core fed to the encoder, metres
    min_points: int = 50  # windows with fewer points near their core are skipped

    def __post_init__(self) -> None:
        if self.window_size <= 0 or self.margin < 0:
            raise ValueError(f"window_size must be > 0 and margin >= 0 (got {self.window_size}, {self.margin})")
        if self.min_points < 1:
            raise ValueError(f"min_points must be >= 1, got {self.min_points}")


@dataclass
class MeshingConfig:
    """Extraction of one mesh from the occupancy field on one global metric grid."""

    voxel_size: float = 0.02  # spacing of the global grid, metres
    threshold: float = 0.5  # occupancy probability of the surface
    trim_distance: float | None = 0.04  # drop faces farther than this from any input point (None: keep all)
    eval_chunk: int = 200_000  # grid points decoded per network call
    color_from_input: bool = True  # colour vertices from the nearest input point when it has colours

    def __post_init__(self) -> None:
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.trim_distance is not None and self.trim_distance <= 0:
            raise ValueError(f"trim_distance must be > 0 or None, got {self.trim_distance}")
        if self.eval_chunk < 1:
            raise ValueError("eval_chunk must be >= 1")


@dataclass
class ReconstructionConfig:
    """Everything `pipeline.reconstruct` needs besides the points and the model."""

    profile: str = "custom"
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    meshing: MeshingConfig = field(default_factory=MeshingConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint: str | None = None  # None: the shipped default model

    def __post_init__(self) -> None:
        if self.windows.margin >= self.windows.window_size:
            raise ValueError("windows.margin must be smaller than windows.window_size")
        if self.windows.window_size < 2 * self.meshing.voxel_size:
            raise ValueError("windows.window_size must hold at least two voxels of meshing.voxel_size")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ReconstructionConfig":
        """Build from a nested dict (e.g. YAML). Unknown keys are an error, so typos do not pass silently."""
        values = dict(values)
        sections = {"optimization": OptimizationConfig, "windows": WindowConfig, "meshing": MeshingConfig}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key in {"profile", "device", "checkpoint"}:
                kwargs[key] = value
            else:
                raise ValueError(f"unknown configuration key {key!r}")
        return cls(**kwargs)

    def updated(self, **sections: dict[str, Any]) -> "ReconstructionConfig":
        """A copy with some fields replaced, e.g. `cfg.updated(optimization={'iterations': 0})`."""
        merged = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return ReconstructionConfig.from_dict(merged)


def _build(cls, values: dict[str, Any] | Any, section: str):
    if isinstance(values, cls):
        return values
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown key(s) in {section}: {sorted(unknown)}; known: {sorted(names)}")
    return cls(**values)


def _paper() -> ReconstructionConfig:
    # The release's room settings: the whole network, lr 3e-5 decayed by 0.3 every 300 steps, 720 steps,
    # batch 6 x (1536 surface + 512 off-surface) queries, sigma 0.1. We encode once per step instead of 6 times.
    return ReconstructionConfig(
        profile="paper",
        optimization=OptimizationConfig(
            iterations=720, optimized_parts="all", freeze_norm=False, learning_rate=3e-5, decay_every=300,
            decay_factor=0.3, surface_samples=6 * 1536, off_surface_samples=6 * 512, sigma=0.1,
            window_batch=8),
        meshing=MeshingConfig(voxel_size=0.01, threshold=0.5, trim_distance=0.04),
    )


def _fast() -> ReconstructionConfig:
    # Practical on a CPU: each window is encoded once, then its feature grid and the small decoder adapt
    # (no encoder passes). On the tuning rooms this beat 150 decoder-only steps in 50 steps.
    return ReconstructionConfig(
        profile="fast",
        optimization=OptimizationConfig(
            iterations=50, optimized_parts="decoder", optimize_features=True, learning_rate=3e-4,
            feature_learning_rate=1e-2, decay_every=100, decay_factor=0.3, warm_start_iterations=20,
            surface_samples=2048, off_surface_samples=1024, sigma=0.1, window_batch=16),
        meshing=MeshingConfig(voxel_size=0.02, threshold=0.5, trim_distance=0.03),
    )


def _feedforward() -> ReconstructionConfig:
    config = _fast()
    config.profile = "feedforward"
    config.optimization.iterations = 0
    return config


PROFILES = {"fast": _fast, "paper": _paper, "feedforward": _feedforward}


def get_profile(name: str) -> ReconstructionConfig:
    """A fresh copy of a named profile."""
    try:
        return PROFILES[name]()
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
