"""The windows of a map, planned: which windows hold enough points, which of them the cache still has, and
the batches the others are optimised in (cold ones, then those that start warm from a cached state).

Windows and batches go in slabs along the map's longest axis (`sweep_axis`), so that the field blocks of a
slab are complete, meshed and released early (`meshing.StreamingMesher`). A runner (runners.py) runs the
batches; this module only decides them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cache import WindowCache, WindowKey, model_fingerprint, settings_fingerprint, window_fingerprint
from .config import ReconstructionConfig
from .errors import ReconstructionError
from .model import ConvONet
from .optimize import WindowState
from .window_batch import ClearancePlanes
from .windows import WindowGrid, WindowSet, select_windows

# The field's band reaches this many grid cells past the trim: the cube of a kept face lies wholly inside it.
BAND_CELLS = 2


@dataclass
class PlannedBatch:
    """Windows optimised together: which, for how many steps, from which states."""

    number: int  # seeds the batch's sampling, so it draws the same points wherever it runs
    windows: list[int]  # indices into the plan's WindowSet
    keys: list[WindowKey]
    fingerprints: list[str]  # of each window's points and the settings ('' without a cache)
    steps: int
    initial: list[WindowState] | None = None  # a warm start: each window's cached state


@dataclass
class WindowPlan:
    """The windows on the grid, and what becomes of each: reused from the cache, or optimised in a batch.

    Windows and batches go in slabs along `sweep_axis` (the map's longest), so that the field blocks of a
    slab are complete, meshed and released early (see `StreamingMesher`)."""

    grid: WindowGrid
    windows: WindowSet
    # grid points farther than about this from every point stay empty: one distance, or one per point of the
    # cloud the plan was made for (each point's trim reach and two cells); None: none stays empty
    band: float | np.ndarray | None
    reused: dict[WindowKey, np.ndarray]  # field blocks taken from the cache as they are
    batches: list[PlannedBatch]
    settings_id: str | None = None  # fingerprint of the settings and the model; None without a cache
    sweep_axis: int = 0
    loss_margin: float = 0.0  # metres around the cores the UCE samples come from (0: the whole crops)
    clearance: ClearancePlanes | None = None  # the planes off-surface samples keep clear of, at the cloud's points

    def block_keys(self) -> list[WindowKey]:
        """Every window's key: the blocks the field will consist of."""
        return list(self.reused) + [key for batch in self.batches for key in batch.keys]

    @property
    def windows_run(self) -> int:
        return sum(len(batch.windows) for batch in self.batches)

    def crop_band(self, window: int) -> float | np.ndarray | None:
        """The band around the points of a window's crop (one per point where the band is per point)."""
        if isinstance(self.band, np.ndarray):
            return self.band[self.windows.crop_points[window]]
        return self.band

    def crop_reach(self, window: int) -> np.ndarray | None:
        """How far from each point of a window's crop its faces are kept (its trim reach), where that differs
        per point; None where one distance holds for all."""
        if not isinstance(self.band, np.ndarray):
            return None
        return self.crop_band(window) - BAND_CELLS * self.grid.voxel_size

    def crop_normals(self, window: int) -> np.ndarray | None:
        """The clearance planes' normals at the points of a window's crop (zero rows: none); None: none."""
        return None if self.clearance is None else self.clearance.at(self.windows.crop_points[window])

    def loss_mask(self, window: int, unit_points: np.ndarray) -> np.ndarray | None:
        """Which of a window's crop points (in its unit frame) the UCE loss draws from: those within
        `loss_margin` of the core, or within their own band of it (a face they keep may lie in the core);
        None: all of them."""
        if not self.loss_margin or self.loss_margin >= self.grid.margin:
            return None
        band = self.crop_band(window)
        reach = self.loss_margin if band is None else np.maximum(self.loss_margin, band)
        keep = self.grid.outside_core(unit_points) <= reach
        return keep if keep.any() else None

    @property
    def windows_warm_started(self) -> int:
        return sum(len(batch.windows) for batch in self.batches if batch.initial is not None)




def plan_windows(points: np.ndarray, config: ReconstructionConfig, steps: int, cache: WindowCache | None = None,
                 model: ConvONet | None = None, workers: int = 1, trim_reach: np.ndarray | None = None,
                 clearance: ClearancePlanes | None = None) -> WindowPlan:
    """The windows that hold enough points, split into blocks the cache still has, windows that start
    warm from a cached state, and cold ones; the last two batched (cold first), as many batches as a
    multiple of the `workers` that run them side by side. `trim_reach`: how far from each point faces are
    kept, where that differs per point (meshing.trim_reach); else the trim distance. `clearance`: the planes
    the windows' off-surface samples keep clear of."""
    meshing, optimization = config.meshing, config.optimization
    grid = WindowGrid.from_sizes(config.windows.window_size, meshing.voxel_size, config.windows.margin)
    band = None if meshing.trim_distance is None else meshing.trim_distance + BAND_CELLS * meshing.voxel_size
    windows = select_windows(points, grid, config.windows.min_points, band if band is not None else grid.margin)
    if band is not None and trim_reach is not None:
        band = trim_reach + BAND_CELLS * meshing.voxel_size
    if len(windows) == 0:
        raise ReconstructionError(
            f"no window holds {config.windows.min_points} or more points near its core; "
            f"the cloud is too sparse for windows of {grid.core_size:.3g} m")
    axis = sweep_axis(windows.index)
    windows = windows.ordered_along(axis)
    if cache is None:
        every = [(w, tuple(int(v) for v in windows.index[w]), "", None) for w in range(len(windows))]
        batches = _batched(every, steps, optimization.window_batch, workers=workers)
        return WindowPlan(grid, windows, band, {}, batches, sweep_axis=axis, loss_margin=config.windows.loss_margin,
                          clearance=clearance)
    settings_id = settings_fingerprint(config, steps, model_fingerprint(model))
    warm_steps = min(optimization.warm_start_iterations, steps)
    reused, cold, warm = _split_by_cache(points, windows, cache, settings_id, warm_start=warm_steps > 0)
    batches = _batched(cold, steps, optimization.window_batch, workers=workers)
    batches += _batched(warm, warm_steps, optimization.window_batch, first_number=len(batches), workers=workers)
    batches.sort(key=lambda batch: windows.index[batch.windows[0], axis])  # cold and warm ones, slab by slab
    return WindowPlan(grid, windows, band, reused, batches, settings_id, axis, config.windows.loss_margin, clearance)


def sweep_axis(window_index: np.ndarray) -> int:
    """The axis along which the windows span the most slabs: sweeping it keeps the fewest blocks alive."""
    return int(np.argmax(np.ptp(window_index, axis=0)))


def _split_by_cache(points: np.ndarray, windows: WindowSet, cache: WindowCache, settings_id: str,
                    warm_start: bool) -> tuple[dict[WindowKey, np.ndarray], list[tuple], list[tuple]]:
    """Cached blocks that still apply, and (window, key, fingerprint, state) of the cold and warm windows."""
    reused, cold, warm = {}, [], []
    for w in range(len(windows)):
        key = tuple(int(v) for v in windows.index[w])
        fingerprint = window_fingerprint(points[windows.crop_points[w]], settings_id)
        block = cache.get(key, fingerprint)
        state = cache.get_state(key, settings_id) if warm_start else None
        if block is not None:
            reused[key] = block
        elif state is not None:
            warm.append((w, key, fingerprint, state))
        else:
            cold.append((w, key, fingerprint, None))
    return reused, cold, warm


def _batched(windows: list[tuple], steps: int, size: int, first_number: int = 0,
             workers: int = 1) -> list[PlannedBatch]:
    # As few batches as `size` allows, of even sizes: a last batch of a few windows would cost nearly
    # as many steps as a full one. Their number a multiple of the workers, so no round leaves one idle.
    count = -(-len(windows) // size)
    count = min(len(windows), -(-count // workers) * workers)
    bounds = [len(windows) * i // count for i in range(count + 1)] if count else [0]
    batches = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        chunk = windows[start:end]
        states = [state for _, _, _, state in chunk]
        batches.append(PlannedBatch(first_number + len(batches), [w for w, _, _, _ in chunk],
                                    [key for _, key, _, _ in chunk], [fingerprint for _, _, fingerprint, _ in chunk],
                                    steps, None if states[0] is None else states))
    return batches
