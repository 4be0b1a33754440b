"""The runner seam: what runs the batches of a plan, and what any runner does with one batch.

A runner takes a `WindowPlan` (planning.py) and yields one `BatchResult` per batch, in the plan's order, as
they finish; `reconstruct` meshes the blocks as they come. Two runners keep this contract:

    LocalRunner (local_runner.py)   this process's devices: GPUs, or CPU workers side by side
    RayRunner   (ray_runner.py)     Ray workers, on this machine or a cluster

Both run a batch the same way, `optimize_batch` then `evaluate_batch`, with the batch's own seed on the same
points, so the mesh does not depend on where the batches ran.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from .config import MeshingConfig, OptimizationConfig, ReconstructionConfig
from .devices import synchronized_time
from .errors import ReconstructionCancelled
from .field import evaluate_block, lift_crests
from .meshing import logit
from .model import ConvONet, load_model
from .optimize import WindowEnsemble, WindowState, optimize_windows
from .planning import PlannedBatch, WindowPlan
from .window_batch import WindowBatch
from .windows import WindowGrid, core_band_mask

Progress = Callable[[str, int, int], None]  # (stage, done, total)
STAGES = ("prepare", "windows", "optimize", "field", "marching_cubes", "trim_color")
# Grid points per decoder call where `eval_chunk` is 0. On a CPU a call's layers stay in the caches: 0.7x the
# time of 200,000-point calls for a field decode, and less memory (docs/benchmarks.md, "Work off the steps");
# a GPU wants few, large calls.
CPU_EVAL_CHUNK, GPU_EVAL_CHUNK = 4_096, 200_000


class BatchRunner(Protocol):
    """Runs the batches of a plan, wherever it runs them."""

    devices: list[torch.device]  # where this process holds the model; the stage clock waits for them
    round_size: int  # batches run side by side: plans come in whole rounds of this many

    def load(self, model: ConvONet | None, checkpoint: str | None) -> ConvONet:
        """The model the batches adapt (the given one, else the checkpoint's), ready to run."""

    def run(self, plan: WindowPlan, points: np.ndarray, config: ReconstructionConfig, tally: "ProgressTally",
            stop: threading.Event, clock: "StageClock", encoder_points: np.ndarray | None = None,
            deadline: float | None = None) -> Iterator["BatchResult"]:
        """Every batch of the plan, in the plan's order, optimised (until `deadline`, or ReconstructionCancelled
        once `stop` is set) and evaluated: its field blocks."""

    def describe(self) -> str:
        """Where the batches ran, for the statistics: 'cpu,cpu', 'local Ray runtime: 2 worker(s) ...'."""

    def traffic(self) -> dict:
        """What the last run moved between machines and what it cost ({} in one process)."""


def load_on(model: ConvONet | None, checkpoint: str | None, device: torch.device) -> ConvONet:
    """The given model moved to `device`, else the checkpoint's (or the shipped one) loaded there."""
    return load_model(checkpoint, device=device) if model is None else model.to(device)


@dataclass
class BatchResult:
    """The field blocks of a batch's windows and what its optimisation ended with (the blocks and states are
    emptied once they are meshed and cached)."""

    batch: PlannedBatch
    blocks: list[np.ndarray]  # one (cells,)^3 block of logits per window of the batch
    states: list[WindowState] | None  # adapted states to warm-start the windows later (kept for a cache)
    final_loss: float
    steps_run: int
    out_of_time: bool = False  # its optimisation stopped at the deadline: not the settings' result
    window_steps: int = 0  # steps summed over its windows (fewer than windows x steps_run where some stopped early)


class StageClock:
    """Wall-clock seconds per stage; a stage ends once the devices have finished its queued work."""

    def __init__(self, devices: list[torch.device], stages: tuple[str, ...] = STAGES) -> None:
        self.devices = devices
        self.seconds = dict.fromkeys(stages, 0.0)

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        end = max(synchronized_time(device) for device in self.devices)
        self.seconds[name] = self.seconds.get(name, 0.0) + end - start


class ProgressTally:
    """Units of work done per stage, reported as progress(stage, done, total); safe from any thread."""

    def __init__(self, report: Progress, totals: dict[str, int]) -> None:
        self._report, self._totals = report, totals
        self._done = dict.fromkeys(totals, 0)
        self._lock = threading.Lock()

    def advance(self, stage: str) -> None:
        with self._lock:
            self._done[stage] += 1
            self._report(stage, self._done[stage], self._totals[stage])

    def on_step(self, step: int, total: int, loss: float) -> None:
        """`optimize_windows`' step callback: one optimisation step done."""
        self.advance("optimize")


def optimize_batch(batch: PlannedBatch, replica: ConvONet, plan: WindowPlan, points: np.ndarray,
                   config: OptimizationConfig, on_step: Callable[[int, int, float], None] | None = None,
                   cancel: threading.Event | None = None, encoder_points: np.ndarray | None = None,
                   deadline: float | None = None) -> WindowEnsemble:
    """The adapted networks of the batch's windows, on the replica's device, optimised until `deadline` (the
    encoder sees `encoder_points` where given, aligned with `points`)."""
    device = next(replica.parameters()).device
    rng = np.random.default_rng([config.seed, batch.number])
    clouds = [plan.grid.to_unit(points[plan.windows.crop_points[w]], plan.windows.index[w]) for w in batch.windows]
    targets = None
    if encoder_points is not None:  # the encoder sees the measured points, the loss the denoised ones
        clouds, targets = [plan.grid.to_unit(encoder_points[plan.windows.crop_points[w]], plan.windows.index[w])
                           for w in batch.windows], clouds
    loss_masks = [plan.loss_mask(w, cloud) for w, cloud in zip(batch.windows, targets or clouds)]
    if any(mask is not None for mask in loss_masks):  # the loss sees the points near the cores only
        targets = on_loss_points(targets or clouds, loss_masks)
    weights = sample_areas(plan, batch.windows, loss_masks) if config.samples_by_area else None
    normals = clearance_normals(plan, batch.windows, loss_masks) if config.off_surface_clearance else None
    tensors = WindowBatch.from_arrays(clouds, device, config.max_points_per_window, rng,
                                      max_samples=config.max_samples_per_window, targets=targets, weights=weights,
                                      normals=normals)
    return optimize_windows(replica, tensors, config, iterations=batch.steps, seed=config.seed + batch.number,
                            on_step=on_step, cancel=cancel, initial=batch.initial, deadline=deadline,
                            fit_cell=plan.grid.voxel_size / plan.grid.crop_size)


def on_loss_points(per_crop: list[np.ndarray], loss_masks: list[np.ndarray | None]) -> list[np.ndarray]:
    """Per window, the rows of an array over its crop's points that belong to the points the loss samples
    from (`WindowPlan.loss_mask`; None: all of them)."""
    return [rows if mask is None else rows[mask] for rows, mask in zip(per_crop, loss_masks)]


def sample_areas(plan: WindowPlan, windows: list[int], loss_masks: list[np.ndarray | None]) -> list[np.ndarray] | None:
    """The area each point the loss samples from keeps, per window: its trim reach squared. None where one
    reach holds for every point (no `trim_spacing`, or no trim): there, drawing by area is drawing alike."""
    reaches = [plan.crop_reach(w) for w in windows]
    if any(reach is None for reach in reaches):
        return None
    return [np.square(reach) for reach in on_loss_points(reaches, loss_masks)]


def clearance_normals(plan: WindowPlan, windows: list[int],
                      loss_masks: list[np.ndarray | None]) -> list[np.ndarray] | None:
    """The planes the off-surface samples of each point the loss samples from keep clear of, per window
    (zero rows: none); None where the plan holds no planes."""
    if plan.clearance is None:
        return None
    return on_loss_points([plan.crop_normals(w) for w in windows], loss_masks)


def evaluate_batch(batch: PlannedBatch, ensemble: WindowEnsemble, plan: WindowPlan, points: np.ndarray,
                   meshing: MeshingConfig, keep_states: bool = False,
                   cancel: threading.Event | None = None) -> BatchResult:
    """The field blocks of the batch's windows under their adapted networks (and their states if kept);
    ReconstructionCancelled between two windows once `cancel` is set."""
    blocks = [window_block(batch, ensemble, slot, plan, points, meshing, cancel) for slot in range(len(batch.windows))]
    return batch_result(batch, ensemble, blocks, keep_states)


def window_block(batch: PlannedBatch, ensemble: WindowEnsemble, slot: int, plan: WindowPlan, points: np.ndarray,
                 meshing: MeshingConfig, cancel: threading.Event | None = None) -> np.ndarray:
    """The field block of the batch's window in `slot` (any thread may decode any window: decoding reads the
    ensemble only); ReconstructionCancelled once `cancel` is set."""
    if cancel is not None and cancel.is_set():
        raise ReconstructionCancelled("reconstruction cancelled")
    w = batch.windows[slot]
    with torch.no_grad():
        return _evaluate_block(ensemble, slot, plan.grid, plan.windows.index[w], points[plan.windows.crop_points[w]],
                               plan.crop_band(w), meshing, ensemble.batch.points.device)


def batch_result(batch: PlannedBatch, ensemble: WindowEnsemble, blocks: list[np.ndarray],
                 keep_states: bool = False) -> BatchResult:
    """The batch's result from its windows' blocks (and their states if kept)."""
    states = ([ensemble.window_state(slot) for slot in range(len(batch.windows))]
              if keep_states and batch.steps else None)
    history = ensemble.loss_history
    return BatchResult(batch, blocks, states, history[-1] if history else float("nan"), len(history),
                       ensemble.out_of_time, sum(ensemble.window_steps))


def _evaluate_block(ensemble: WindowEnsemble, slot: int, grid: WindowGrid, window: np.ndarray,
                    crop_points: np.ndarray, band: float | np.ndarray | None, meshing: MeshingConfig,
                    device: torch.device) -> np.ndarray:
    """Logits of one window's core grid points (within the band of its points; the rest stays empty)."""
    chunk = meshing.eval_chunk or (CPU_EVAL_CHUNK if device.type == "cpu" else GPU_EVAL_CHUNK)

    def decode(index: np.ndarray) -> np.ndarray:
        queries = torch.from_numpy(grid.unit_points_at(index)).to(device)
        values = [ensemble.decode_window(slot, queries[i:i + chunk], ensemble.features).float().cpu()
                  for i in range(0, len(queries), chunk)]
        return torch.cat(values).numpy()

    mask = core_band_mask(grid, window, crop_points, band)
    level = logit(meshing.threshold)
    block = evaluate_block(decode, mask, level, meshing.coarse_to_fine_margin)
    if meshing.crest_depth > 0 or meshing.trough_depth > 0:
        lift_crests(block, level, meshing.crest_depth, lift_candidates(grid, window, crop_points, meshing), decode,
                    trough_depth=meshing.trough_depth)
    return block


def lift_candidates(grid: WindowGrid, window: np.ndarray, crop_points: np.ndarray,
                    meshing: MeshingConfig) -> np.ndarray:
    """The core grid points `lift_crests` may move: within `crest_reach` grid cells of an input point."""
    return core_band_mask(grid, window, crop_points, meshing.crest_reach * grid.voxel_size)
