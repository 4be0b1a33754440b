"""Configuration of the reconstruction: model architecture, test-time optimisation, windows, meshing.

Every knob lives in a dataclass, declared once with `setting(default, help, range or choices)`; that
declaration is what the command lines (`flags.py`) and the ROS node's parameters are generated from, and
the dataclasses' own validation is the one place where ranges are checked (`SettingError` names the
setting). Named profiles (`fast`, `paper`, ...) are complete configurations; `ReconstructionConfig.from_dict`
/ `to_dict` let the CLI, YAML files and the ROS node share them.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import SettingError

OptimizedParts = Literal["all", "encoder", "decoder"]
# Grid points along a window's edge at most: its field block is this cubed in float32 (67 MB at 256), and the
# field holds about two slabs of blocks at once.
MAX_WINDOW_CELLS = 256
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class Range:
    """The values a number may take: bounds (None: unbounded), each inclusive unless open."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        above = self.low is None or value > self.low or (value == self.low and not self.open_low)
        below = self.high is None or value < self.high or (value == self.high and not self.open_high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {_number(self.low)}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {_number(self.high)}"
        return (f"in {'(' if self.open_low else '['}{_number(self.low)}, {_number(self.high)}"
                f"{')' if self.open_high else ']'}")


def _number(value: float) -> str:
    """1000000 as 1,000,000; 0.001 as 0.001."""
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 10_000 else f"{value:g}"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
            above: float | None = None, at_least: float | None = None, below: float | None = None,
            at_most: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with what a user needs to know about it: help text, and the range or the choices
    that validation (`check_settings`) enforces."""
    low, high = (above if above is not None else at_least), (below if below is not None else at_most)
    limits = None if low is None and high is None else Range(low, high, above is not None, below is not None)
    metadata = {"help": help, "range": limits, "choices": choices}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_settings(config: Any) -> None:
    """Raise SettingError for the first field of a config dataclass outside its range or choices."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        limits, choices = item.metadata.get("range"), item.metadata.get("choices")
        if value is None:
            continue
        if limits is not None and value not in limits:
            raise SettingError(item.name, str(limits), value)
        if choices is not None and value not in choices:
            raise SettingError(item.name, "one of " + ", ".join(map(repr, choices)), value)


def typed_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of a dataclass with their resolved types (annotations are strings in this package)."""
    hints = typing.get_type_hints(cls)
    return [(item, hints[item.name]) for item in dataclasses.fields(cls)]


def base_type(annotation: Any) -> Any:
    """`float` for `float | None`; any other annotation as it is."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    is_optional = type(None) in typing.get_args(annotation) and len(arguments) == 1
    return arguments[0] if is_optional else annotation


@dataclass
class ModelConfig:
    """Architecture of the ConvONet grid model (defaults: the published `room_grid64`)."""

    c_dim: int = setting(32, "feature channels of the grid", at_least=1)
    hidden_dim: int = setting(32, "width of the point encoder blocks and of the decoder", at_least=1)
    grid_resolution: int = setting(64, "R: the feature volume is R^3", at_least=1)
    unet_levels: int = setting(4, "levels of the 3D U-Net", at_least=1)
    unet_base_channels: int = setting(32, "U-Net channels at full resolution, doubled per level", at_least=1)
    encoder_blocks: int = setting(5, "residual blocks of the point encoder", at_least=1)
    decoder_blocks: int = setting(5, "residual blocks of the decoder", at_least=1)
    padding: float = setting(0.1, "the unit cube [-0.5, 0.5]^3 is padded by this before voxelisation",
                             at_least=0)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.grid_resolution % (2 ** (self.unet_levels - 1)) != 0:
            raise SettingError("grid_resolution", f"divisible by {2 ** (self.unet_levels - 1)} (2 to the power "
                               "{0} - 1) so that every U-Net level halves it exactly", self.grid_resolution,
                               ("unet_levels",))


@dataclass
class OptimizationConfig:
    """Sign-agnostic test-time optimisation (UCE loss) of each window's copy of the network."""

    iterations: int = setting(200, "optimisation steps per window (0 = feed-forward only)", at_least=0,
                              at_most=1_000_000)
    optimized_parts: OptimizedParts = setting("decoder", "the part of each window's network that adapts",
                                              choices=typing.get_args(OptimizedParts))
    freeze_norm: bool = setting(True, "keep GroupNorm scale/shift at their pretrained values")
    learning_rate: float = setting(3e-4, "Adam's learning rate of the network's parameters", above=0)
    optimize_features: bool = setting(False, "also adapt each window's encoded feature grid "
                                             "(needs optimized_parts='decoder')")
    feature_learning_rate: float = setting(1e-2, "Adam's learning rate of the feature grids", above=0)
    decay_every: int = setting(100, "multiply the learning rates by decay_factor every this many steps",
                               at_least=1)
    decay_factor: float = setting(0.3, "learning-rate decay factor", above=0, at_most=1)
    surface_samples: int = setting(1536, "UCE samples per window and step drawn from the observed points",
                                   at_least=1, at_most=1_000_000)
    off_surface_samples: int = setting(512, "UCE samples per window and step: observed points + Gaussian noise",
                                       at_least=0, at_most=1_000_000)
    residual_sampling: float = setting(0.0, "fraction of surface samples drawn where the fit is worst "
                                            "(0 = uniform)", at_least=0, at_most=1)
    samples_by_area: bool = setting(False, "draw each observed point as a surface sample in proportion to the "
                                           "area it keeps (its trim reach squared; with meshing.trim_spacing): "
                                           "a surface seen from afar gets as many samples per square metre as "
                                           "one seen close up (off: each point alike)")
    sigma: float = setting(0.1, "noise std of off-surface samples, in unit-cube units of a window", above=0)
    off_surface_clearance: float = setting(0.0, "off-surface samples centred on a point of a sparse surface (see "
                                                "clearance_gap) lie at least this share of sigma off the point's "
                                                "plane: none lands on the surface between its points (0 = off)",
                                           at_least=0, at_most=1)
    clearance_gap: float = setting(3.0, "a surface counts as sparse for off_surface_clearance where a point's "
                                        "third-nearest neighbour lies at least this many grid cells away",
                                   above=0)
    max_points_per_window: int = setting(4096, "input points fed to the encoder per window (as in training)",
                                         at_least=1, at_most=1_000_000)
    max_samples_per_window: int = setting(100_000, "observed points the UCE loss samples from, per window",
                                          at_least=1, at_most=10_000_000)
    # A window in a batch holds its adapted feature grid with Adam's state, 16 MB for the shipped model and
    # 130 MB for the published one: a batch of 256 of those already fills a large GPU.
    window_batch: int = setting(8, "windows optimised together as one batch (memory vs. speed)", at_least=1,
                                at_most=256)
    early_stop_patience: int = setting(0, "a window stops adapting when its own loss has not improved for this "
                                          "many steps, and the rest of its batch goes on without it (0 = never)",
                                          at_least=0)
    early_stop_tolerance: float = setting(1e-3, "relative loss improvement that counts for early stopping",
                                          at_least=0)
    fit_tolerance: float = setting(0.0, "a window stops adapting once fit_share of its observed points lie within "
                                        "this many grid cells of its surface, checked every fit_check_every steps; "
                                        "one that does not fit keeps its steps (0 = every window runs them all)",
                                   at_least=0)
    # A few outliers (a stray return) must not keep a window going, but a thin part's few points among a wall's
    # thousands must: the share is high.
    fit_share: float = setting(0.995, "the share of a window's observed points that must fit (fit_tolerance)",
                               above=0, at_most=1)
    fit_check_every: int = setting(10, "steps between two checks of the windows' fit (fit_tolerance)", at_least=1)
    warm_start_iterations: int = setting(0, "steps for a window whose earlier result is cached "
                                            "(0 = always cold)", at_least=0, at_most=1_000_000)
    precision: str = setting("fp32", "numerics of the optimisation steps", choices=PRECISIONS)
    fused_adam: bool = setting(True, "one fused Adam kernel per step where the device has one (CPU, CUDA)")
    seed: int = setting(0, "seed of the sampling of points and UCE queries")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.optimize_features and self.optimized_parts != "decoder":
            raise SettingError("optimize_features", "False unless {0} is 'decoder' (an adapted encoder "
                               "recomputes the features)", self.optimize_features, ("optimized_parts",))


@dataclass
class WindowConfig:
    """Sliding windows in metric units. Each window owns a cubic core; its network also sees a margin."""

    window_size: float = setting(1.2, "edge of a window's core, metres (rounded to a multiple of the voxel "
                                      "size; at most 256 voxels)", above=0, at_most=100.0)
    margin: float = setting(0.2, "context around the core fed to the encoder, metres", at_least=0, at_most=100.0)
    # The encoder needs the context; the loss only the points whose fit reaches the core's faces: UCE samples
    # drawn from the rest of the margin are mostly spent on surfaces other windows own.
    loss_margin: float = setting(0.0, "the UCE loss draws its samples from the points within this many metres of "
                                      "the core, or within their own trim band of it (0: the whole margin)",
                                 at_least=0, at_most=100.0)
    min_points: int = setting(50, "windows with fewer points near their core are skipped", at_least=1)
    window_scale: float = setting(0.0, "multiply window_size, margin and the mesh grid's lengths by this "
                                       "(0 = auto: from the measured point spacing, 1 up to 2 cm between points, "
                                       "its ratio to 2 cm to the power 0.8 beyond; supported 5 mm to 20 cm)",
                                  at_least=0)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class MeshingConfig:
    """Extraction of one mesh from the occupancy field on one global metric grid."""

    voxel_size: float = setting(0.02, "spacing of the global grid, metres", at_least=0.001, at_most=10.0)
    threshold: float = setting(0.5, "occupancy probability of the surface level", above=0, below=1)
    trim_distance: float | None = setting(0.04, "drop faces farther than this from every input point, metres "
                                                "(0: keep every face)", at_least=0)
    trim_spacing: float = setting(0.0, "where the points are sparser, keep faces up to this many times the "
                                        "distance from their nearest point to its third-nearest neighbour (at most 3 "
                                        "x trim_distance): the gaps between the points of a surface seen at a "
                                        "grazing angle or from afar stay closed (0: trim_distance everywhere)",
                                  at_least=0)
    trim_surround: float = setting(0.0, "faces kept only by trim_spacing's wider reach must lie among their 8 "
                                        "nearest points, not beyond them: the points' mean offset from the face "
                                        "at most this share of their mean distance (0: no test)", at_least=0,
                                   at_most=1)
    eval_chunk: int = setting(0, "grid points decoded per network call (0 = auto: 4,096 on a CPU, whose caches "
                                 "hold their layers, 200,000 on a GPU)", at_least=0, at_most=10_000_000)
    coarse_to_fine_margin: float = setting(0.0, "decode every second grid point first, then exactly only the "
                                                "coarse cells within this many logits of the threshold; the "
                                                "rest is interpolated (0: decode every grid point). Misses a dip "
                                                "of the field narrower than two cells, as on walls seen from "
                                                "afar: off in every profile", at_least=0)
    grid_per_spacing: float = setting(0.0, "on a sparser map the grid is this many times the measured point "
                                           "spacing (rounded to 5 mm) where that is coarser than voxel_size, and "
                                           "the UCE samples per window shrink with the square of the ratio "
                                           "(0: voxel_size as set)", at_least=0)
    snap_distance: float = setting(0.0, "move each vertex onto the plane of its nearest (denoised) points by at "
                                        "most this many metres, for detail finer than the grid; skipped on maps "
                                        "whose measured noise exceeds half of it (0: off)", at_least=0)
    snap_neighbours: int = setting(6, "points whose plane each vertex is snapped onto (its normal)", at_least=3)
    snap_anchors: int = setting(3, "the plane passes through the mean of this many nearest of them (fewer: curved "
                                   "parts flattened less; at most snap_neighbours)", at_least=1)
    snap_reach: float = setting(6.0, "a vertex is snapped only where its snap_neighbours points lie within this many "
                                     "times snap_distance (farther: completed surface, left as the field made it); "
                                     "beyond 4 times, a vertex on the mesh's border moves along its own normal only",
                                above=0, at_most=100)
    smooth_iterations: int = setting(0, "Taubin smoothing passes over the finished (snapped) mesh, its borders held "
                                        "in place: faces tilted by the grid's steps and by each vertex's own snap "
                                        "plane even out without the mesh shrinking (0: off)", at_least=0, at_most=100)
    crest_depth: float = setting(0.0, "grid points next to an input point where the field peaks at most this many "
                                      "logits below the level are raised onto it: thin parts whose field only "
                                      "touches the level get a surface (0: off)", at_least=0)
    trough_depth: float = setting(0.0, "grid points next to an input point where the field dips at most this many "
                                       "logits above the level are lowered across it: walls whose field came out "
                                       "inside on both of their sides get their surface back (0: off)", at_least=0)
    crest_reach: float = setting(0.0, "grid points within this many grid cells of an input point may be raised or "
                                      "lowered (crest_depth, trough_depth): the gaps between the sparse points of a "
                                      "wall seen at a grazing angle too (0: the corners of a point's own cell)",
                                 at_least=0, at_most=10)
    color_from_input: bool = setting(True, "colour vertices from the nearest input point when it has colours")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.trim_distance == 0:
            self.trim_distance = None  # how a command line or a ROS parameter says None
        if self.snap_anchors > self.snap_neighbours:
            raise SettingError("snap_anchors", "at most {0}", self.snap_anchors, ("snap_neighbours",))


@dataclass
class DenoiseConfig:
    """Noise-aware surface targets: the map's noise and spacing are measured (`denoise.estimate_noise`) and
    its points moved onto the planes of their neighbours by at most a few noise levels before the windows
    see them, so the test-time optimisation fits the surface, not the sensor noise."""

    denoise: bool = setting(True, "measure the map's noise and denoise its points before the optimisation")
    denoise_neighbours: int = setting(8, "neighbours of the local plane each point moves onto", at_least=3)
    denoise_max_shift: float = setting(2.5, "a point moves at most this many measured noise levels per pass",
                                       above=0)
    denoise_passes: int = setting(2, "projection passes", at_least=1)
    denoise_curved_ratio: float = setting(2.0, "where the neighbours' plane leaves a residual variance above this "
                                               "many times the measured noise's, points move onto a quadric "
                                               "fitted to them instead: folds and rounded parts keep their shape "
                                               "(0: planes everywhere)", at_least=0)
    # Below this the points are already accurate against their spacing (a voxel filter averages many returns):
    # moving them by a few noise levels onto planes that span several spacings rounds edges and thin sheets
    # more than it removes noise (docs/decisions.md, "Snapping and denoising").
    denoise_min_noise_ratio: float = setting(0.25, "denoise only maps whose measured noise is at least this "
                                                   "fraction of their point spacing", at_least=0)
    # On the tuning rooms the encoder's feed-forward guess was as good or better from the measured points.
    denoise_encoder_input: bool = setting(False, "the encoder sees the denoised points too (else only the UCE "
                                                 "targets are denoised)")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class ReconstructionConfig:
    """Everything `pipeline.reconstruct` needs besides the points and the model."""

    profile: str = setting("custom", "name of the profile the settings came from")
    optimization: OptimizationConfig = setting(factory=OptimizationConfig)
    windows: WindowConfig = setting(factory=WindowConfig)
    meshing: MeshingConfig = setting(factory=MeshingConfig)
    denoise: DenoiseConfig = setting(factory=DenoiseConfig)
    device: str = setting("auto", "compute device(s): auto (every visible GPU, else the CPU) | cpu | cuda | "
                                  "cuda:N | a comma-separated list such as cuda:0,cuda:1 (windows are spread over "
                                  "them)")
    checkpoint: str | None = setting(None, "model checkpoint file; empty or None: the model shipped with the "
                                           "package")
    cpu_workers: int = setting(0, "on a CPU, batches of windows run side by side in this many threads that share "
                                  "torch's threads out among them (0 = auto: two where torch has two threads or "
                                  "more; 1 = one batch at a time on every thread)", at_least=0, at_most=256)
    ray_address: str = setting("", "run the windows as tasks of Ray workers (pip install sa_convonet_ros[ray]): "
                                   "'' = off (in this process), 'local' = a local Ray runtime on this machine, else "
                                   "the address of a running Ray cluster ('auto', 'HOST:6379', 'ray://HOST:10001'); "
                                   "the mesh is the same. Ray is reached when a run starts: not installed or not "
                                   "reachable fails the run with that reason")
    ray_workers: int = setting(0, "Ray workers, each holding the model once (0 = as many as the cluster's CPUs "
                                  "allow at ray_threads each)", at_least=0, at_most=100_000)
    ray_threads: int = setting(1, "CPUs (and torch threads) of each Ray worker", at_least=1, at_most=1024)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.checkpoint is not None and not str(self.checkpoint).strip():
            self.checkpoint = None  # how a command line or a ROS parameter says None
        if self.windows.margin >= self.windows.window_size:
            raise SettingError("windows.margin", "smaller than {0}", self.windows.margin, ("windows.window_size",))
        if self.windows.window_size < 2 * self.meshing.voxel_size:
            raise SettingError("windows.window_size", "at least two voxels of {0}", self.windows.window_size,
                               ("meshing.voxel_size",))
        if self.windows.window_size > MAX_WINDOW_CELLS * self.meshing.voxel_size:
            raise SettingError("meshing.voxel_size", f"at least {{0}} / {MAX_WINDOW_CELLS} (a window's field block "
                               f"holds (window_size / voxel_size)^3 grid points of 4 bytes)", self.meshing.voxel_size,
                               ("windows.window_size",))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ReconstructionConfig":
        """Build from a nested dict (e.g. YAML). Unknown keys are an error, so typos do not pass silently."""
        values = dict(values)
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in SECTIONS:
                kwargs[key] = _build(SECTIONS[key], value, key)
            elif key in TOP_LEVEL:
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


SECTIONS = {"optimization": OptimizationConfig, "windows": WindowConfig, "meshing": MeshingConfig,
            "denoise": DenoiseConfig}
TOP_LEVEL = {item.name for item in dataclasses.fields(ReconstructionConfig)} - set(SECTIONS)


def _build(cls, values: dict[str, Any] | Any, section: str):
    if isinstance(values, cls):
        return values
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown key(s) in {section}: {sorted(unknown)}; known: {sorted(names)}")
    try:
        return cls(**values)
    except SettingError as error:
        raise error.within(section) from None


def setting_field(path: str) -> tuple[dataclasses.Field, Any]:
    """The field of a dotted path of ReconstructionConfig ('meshing.voxel_size', 'device') and its type."""
    *section, name = path.split(".")
    cls = SECTIONS[section[0]] if section else ReconstructionConfig
    return next((item, kind) for item, kind in typed_fields(cls) if item.name == name)


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


def _auto_cpu() -> ReconstructionConfig:
    # The tuning rooms' best within a CPU's budget (docs/decisions.md, "The auto profile"): UCE targets
    # denoised on noisy maps, a 1 cm grid, 80 steps with the feature grids' learning rate doubled (as good
    # as 100 steps at fast's rate), vertices snapped onto the points.
    config = _fast()
    config.profile = "auto:cpu"
    config.optimization.iterations = 80
    config.optimization.feature_learning_rate = 2e-2
    # The loss draws from the points near each core only (5 cm, or a point's trim band): a third fewer samples
    # per step keep the cores' sample density, and the validation rooms' meshes (docs/decisions.md).
    config.windows.loss_margin = 0.05
    config.optimization.surface_samples = 640
    config.optimization.off_surface_samples = 320
    config.optimization.window_batch = 8  # per window, the cheapest step on a CPU's caches
    # Dense maps hold their far walls' points 4 cm apart and the floor's 1 cm: by point, the far walls got a
    # sixteenth of the samples per square metre and fitted worse (docs/decisions.md).
    config.optimization.samples_by_area = True
    # A far wall's points lie 4 grid cells apart: off-surface samples kept off the wall between them close a
    # little more of the validation rooms' observed surface (docs/decisions.md).
    config.optimization.off_surface_clearance = 0.2
    config.meshing.voxel_size = 0.01
    config.meshing.trim_distance = 0.02  # two grid cells; a sparse map's coarser grid takes its trim along
    config.meshing.snap_distance = 0.02  # two grid cells: the field's surface strays that far on coarse parts
    config.meshing.crest_depth = 1.0  # table tops and curtains whose field stops just short of the level
    config.meshing.trough_depth = 1.0  # and walls whose field dips just short of it from inside
    config.meshing.crest_reach = 2.0  # also between the points of a wall seen at a grazing angle
    config.meshing.trim_spacing = 1.0  # surfaces seen at a grazing angle keep the gaps between their points
    config.meshing.trim_surround = 0.6  # but not the surface prolonged past their last points
    config.meshing.smooth_iterations = 6  # faces tilted by the grid and by each vertex's own snap plane
    config.meshing.grid_per_spacing = 0.6  # sparse maps: 1.5 cm and fewer samples, 1.7x faster (same doc)
    return config


def _auto_gpu() -> ReconstructionConfig:
    # What wins on quality where the optimisation is cheap: the CPU's choice with fast's full samples, more
    # steps and larger batches.
    config, fast = _auto_cpu(), _fast().optimization
    config.profile = "auto:gpu"
    config.optimization.iterations = 150
    config.optimization.feature_learning_rate = fast.feature_learning_rate
    config.optimization.surface_samples = fast.surface_samples
    config.optimization.off_surface_samples = fast.off_surface_samples
    config.optimization.window_batch = 64
    config.optimization.precision = "tf32"
    config.meshing.grid_per_spacing = 0.0  # the finer grid and full samples are affordable on every map
    # With the 1 cm grid kept on sparse maps (points 2.5 cm apart), a 2 cm trim would cut between points.
    config.meshing.trim_distance = 0.03
    return config


PROFILES = {"fast": _fast, "paper": _paper, "feedforward": _feedforward,
            "auto:cpu": _auto_cpu, "auto:gpu": _auto_gpu}
# What users choose from (auto:* are auto's picks), each described once for every front end.
PROFILE_DESCRIPTIONS = {
    "auto": "the best this device affords: auto:cpu within a CPU's time budget, auto:gpu with more steps and "
            "samples where CUDA is available",
    "fast": "CPU friendly: adapts each window's feature grid and the decoder",
    "paper": "the published settings, slow without a GPU",
    "feedforward": "no test-time optimisation",
}
PROFILE_NAMES = tuple(PROFILE_DESCRIPTIONS)
PROFILE_HELP = "reconstruction profile: " + "; ".join(f"{name} ({text})" for name, text in PROFILE_DESCRIPTIONS.items())


def get_profile(name: str, device: str = "auto") -> ReconstructionConfig:
    """A fresh copy of a named profile. `auto` is the best the device affords: `auto:gpu` where `device`
    computes on CUDA, else `auto:cpu` (the returned config's `profile` says which)."""
    if name == "auto":
        from .devices import uses_cuda  # torch, only for `auto`

        name = "auto:gpu" if uses_cuda(device) else "auto:cpu"
    try:
        return PROFILES[name]()
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}") from None
