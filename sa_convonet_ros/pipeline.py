"""`reconstruct(points, config) -> Result`: the one entry point of the reconstruction.

points (N x 3, metres) -> windows -> per-window UCE optimisation (batched) -> logits on one global grid
-> block-wise marching cubes -> one seamless mesh (trimmed, coloured) + statistics.
"""
from __future__ import annotations

import copy
import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import trimesh

from .config import ReconstructionConfig, get_profile
from .meshing import EMPTY_LOGIT, BlockField, color_from_points, extract_mesh, trim_far_faces
from .errors import ReconstructionCancelled, ReconstructionError
from .model import ConvONet, load_model, resolve_devices, synchronized_time
from .optimize import WindowBatch, WindowState, optimize_windows
from .windows import WindowGrid, core_band_mask, select_windows

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class ReconstructionStats:
    input_points: int = 0
    points_used: int = 0
    non_finite_removed: int = 0
    windows_run: int = 0
    windows_skipped: int = 0
    windows_reused: int = 0
    windows_warm_started: int = 0
    iterations: int = 0
    batches_run: int = 0
    steps_run: int = 0  # optimisation steps taken, over all batches (fewer than planned after an early stop)
    final_loss: float = float("nan")
    device: str = ""
    profile: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    vertices: int = 0
    faces: int = 0
    bbox_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bbox_max: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def as_dict(self) -> dict:
        values = asdict(self)
        values["total_seconds"] = self.total_seconds
        return values


@dataclass
class Result:
    mesh: trimesh.Trimesh
    stats: ReconstructionStats


class WindowCache:
    """What earlier runs computed per window: field blocks, reused as they are for windows whose input
    points and settings did not change, and adapted states, which warm-start windows whose points did."""

    def __init__(self, max_state_bytes: int = 1 << 30) -> None:
        self._entries: dict[tuple[int, int, int], tuple[str, np.ndarray]] = {}
        self._states: dict[tuple[int, int, int], tuple[str, WindowState]] = {}
        self.max_state_bytes = max_state_bytes  # the least recently stored states go first beyond this
        self._state_bytes = 0

    def get_state(self, key: tuple[int, int, int], settings_id: str) -> WindowState | None:
        entry = self._states.get(key)
        return entry[1] if entry is not None and entry[0] == settings_id else None

    def put_state(self, key: tuple[int, int, int], settings_id: str, state: WindowState) -> None:
        self._drop_state(key)
        self._states[key] = (settings_id, state)
        self._state_bytes += _state_size(state)
        while self._state_bytes > self.max_state_bytes and self._states:
            self._drop_state(next(iter(self._states)))

    def _drop_state(self, key: tuple[int, int, int]) -> None:
        entry = self._states.pop(key, None)
        if entry is not None:
            self._state_bytes -= _state_size(entry[1])

    def get(self, key: tuple[int, int, int], fingerprint: str) -> np.ndarray | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == fingerprint else None

    def put(self, key: tuple[int, int, int], fingerprint: str, block: np.ndarray) -> None:
        self._entries[key] = (fingerprint, block)

    def __len__(self) -> int:
        return len(self._entries)


def _state_size(state: WindowState) -> int:
    tensors = list(state.parameters.values()) + ([state.feature_delta] if state.feature_delta is not None else [])
    return sum(t.numel() * t.element_size() for t in tensors)


def validate_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N x 3 finite float64 points, and the mask of the input rows they came from (non-finite rows dropped)."""
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ReconstructionError(f"points must be an N x 3 array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ReconstructionError(f"points must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array).all(axis=1)
    if len(array) == 0:
        raise ReconstructionError("the point cloud is empty")
    if not finite.any():
        raise ReconstructionError(f"all {len(array)} points are NaN or infinite")
    return array[finite], finite


def crop_to_region(points: np.ndarray, region) -> np.ndarray:
    """Indices of the points inside an axis-aligned box (min_xyz, max_xyz)."""
    low, high = (np.asarray(v, dtype=np.float64).reshape(3) for v in region)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ReconstructionError("the region bounds must be finite")
    if np.any(high <= low):
        raise ReconstructionError(f"the region is empty or inverted: min {low.tolist()} must be below max {high.tolist()}")
    return np.flatnonzero(np.all((points >= low) & (points <= high), axis=1))


def subsample_evenly(points: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of at most `max_points` points: the first point of each voxel of a grid.

    A voxel grid (rather than a random draw) keeps the density even and picks the same points when
    an unchanged part of the map is seen again, which lets automatic mode reuse those windows.
    """
    low = points.min(axis=0)
    extent = np.maximum(points.max(axis=0) - low, 1e-3)
    # Start finer than a filled volume would need; maps are surfaces, whose count drops with size^2.
    size = float(np.prod(extent) / max_points) ** (1.0 / 3.0) / 4.0
    while True:
        shape = np.floor(extent / size).astype(np.int64) + 1
        cells = np.minimum(np.floor((points - low) / size).astype(np.int64), shape - 1)
        keys = np.ravel_multi_index(cells.T, shape)
        _, first = np.unique(keys, return_index=True)
        if len(first) <= max_points:
            return np.sort(first)
        size *= max(1.05, float(np.sqrt(len(first) / max_points)))


class _Clock:
    def __init__(self, devices: list[torch.device], seconds: dict[str, float]):
        self.devices, self.seconds = devices, seconds

    def lap(self, stage: str, start: float) -> float:
        now = max(synchronized_time(device) for device in self.devices)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - start
        return now


def _run_jobs(jobs: list, replicas: list[ConvONet], run_job, stop: threading.Event) -> list:
    """Run `run_job(number, job, replica)` for every job: in order on one device, or with one worker
    thread per device pulling the next job (torch releases the GIL inside its kernels)."""
    if len(replicas) == 1:
        return [run_job(number, job, replicas[0]) for number, job in enumerate(jobs)]
    queue = list(enumerate(jobs))[::-1]
    lock, results, errors = threading.Lock(), {}, []

    def worker(replica):
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                number, job = queue.pop()
            try:
                results[number] = run_job(number, job, replica)
            except BaseException as error:  # re-raised in the caller's thread
                errors.append(error)
                stop.set()

    threads = [threading.Thread(target=worker, args=(replica,), daemon=True) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[number] for number in range(len(jobs))]


def reconstruct(points: np.ndarray, config: ReconstructionConfig | None = None, *,
                colors: np.ndarray | None = None, model: ConvONet | None = None, region=None,
                iterations: int | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, cache: WindowCache | None = None) -> Result:
    """Reconstruct one mesh from a metric point cloud.

    points: N x 3 (metres, any origin); colors: optional N x 3 in [0, 1] for vertex colours;
    model: a loaded model (default: `config.checkpoint`, or the shipped model); region: optional
    (min_xyz, max_xyz) crop; iterations: overrides the profile's optimisation steps (0 = feed-forward);
    progress(stage, done, total) is called as work advances; setting `cancel` aborts between steps;
    `cache` reuses the field of windows whose points did not change since an earlier call.
    """
    config = config or get_profile("fast")
    stats = ReconstructionStats(profile=config.profile)
    start = time.perf_counter()
    report = progress or (lambda stage, done, total: None)

    pts, finite = validate_points(points)
    stats.input_points, stats.non_finite_removed = len(finite), int(len(finite) - len(pts))
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float64)
        if colors.shape != (len(finite), 3):
            raise ReconstructionError(f"colors must be N x 3 like the points, got {colors.shape}")
        colors = colors[finite]
    if region is not None:
        inside = crop_to_region(pts, region)
        if len(inside) == 0:
            raise ReconstructionError("the requested region holds no points")
        pts = pts[inside]
        colors = colors[inside] if colors is not None else None
    stats.points_used = len(pts)
    mesh_cfg, opt_cfg = config.meshing, config.optimization
    extent = pts.max(axis=0) - pts.min(axis=0)
    if len(pts) < config.windows.min_points or extent.max() < 2 * mesh_cfg.voxel_size:
        raise ReconstructionError(
            f"too few distinct points to reconstruct a surface: {len(pts)} point(s) spanning "
            f"{extent.max():.4g} m (need at least {config.windows.min_points} points in one window, "
            f"spanning more than two voxels of {mesh_cfg.voxel_size} m)")

    devices = resolve_devices(config.device)
    stats.device = ",".join(str(d) for d in devices)
    clock = _Clock(devices, stats.seconds)
    model = load_model(config.checkpoint, device=devices[0]) if model is None else model.to(devices[0])
    # One model per worker, even on the same device: functional_call swaps a module's parameters
    # while it runs, so two threads must never share one.
    replicas = [model] + [copy.deepcopy(model).to(d) for d in devices[1:]]
    start = clock.lap("prepare", start)

    grid = WindowGrid.from_sizes(config.windows.window_size, mesh_cfg.voxel_size, config.windows.margin)
    band = None if mesh_cfg.trim_distance is None else mesh_cfg.trim_distance + 2 * mesh_cfg.voxel_size
    windows = select_windows(pts, grid, config.windows.min_points, band if band is not None else grid.margin)
    stats.windows_skipped = windows.skipped
    if len(windows) == 0:
        raise ReconstructionError(
            f"no window holds {config.windows.min_points} or more points near its core; "
            f"the cloud is too sparse for windows of {grid.core_size:.3g} m")
    start = clock.lap("windows", start)

    steps = opt_cfg.iterations if iterations is None else int(iterations)
    if steps < 0:
        raise ReconstructionError(f"iterations must be >= 0, got {steps}")
    stats.iterations = steps
    model_id = _model_fingerprint(model)
    settings_id = _settings_fingerprint(config, steps, model_id)
    warm_steps = min(opt_cfg.warm_start_iterations, steps) if cache is not None else 0
    field = BlockField(grid)
    cold, warm = [], []
    for w in range(len(windows)):
        key = tuple(int(v) for v in windows.index[w])
        fingerprint = _window_fingerprint(pts[windows.crop_points[w]], settings_id) if cache is not None else ""
        reused = cache.get(key, fingerprint) if cache is not None else None
        if reused is not None:
            field.blocks[key] = reused
            stats.windows_reused += 1
        elif warm_steps and cache.get_state(key, settings_id) is not None:
            warm.append((w, key, fingerprint))
        else:
            cold.append((w, key, fingerprint))
    stats.windows_run, stats.windows_warm_started = len(cold) + len(warm), len(warm)

    size = opt_cfg.window_batch
    jobs = ([(cold[i:i + size], steps, False) for i in range(0, len(cold), size)]
            + [(warm[i:i + size], warm_steps, True) for i in range(0, len(warm), size)])
    total_steps, done = sum(job[1] for job in jobs), [0, 0]  # optimisation steps, field blocks
    lock, stop = threading.Lock(), cancel if cancel is not None else threading.Event()

    def run_job(number: int, job, replica: ConvONet) -> tuple[float, float, float, int]:
        """Optimise one batch of windows on the replica's device and write their field blocks."""
        job_windows, job_steps, warm_start = job
        device = next(replica.parameters()).device
        began = time.perf_counter()
        rng = np.random.default_rng([opt_cfg.seed, number])  # the same points whichever device runs it
        clouds = [grid.to_unit(pts[windows.crop_points[w]], windows.index[w]) for w, _, _ in job_windows]
        batch = WindowBatch.from_arrays(clouds, device, opt_cfg.max_points_per_window, rng,
                                        max_samples=opt_cfg.max_samples_per_window)
        initial = [cache.get_state(key, settings_id) for _, key, _ in job_windows] if warm_start else None

        def on_step(step, total, loss):
            with lock:
                done[0] += 1
                report("optimize", done[0], total_steps)

        ensemble = optimize_windows(replica, batch, opt_cfg, iterations=job_steps, seed=opt_cfg.seed + number,
                                    on_step=on_step, cancel=stop, initial=initial)
        optimized = synchronized_time(device)
        with torch.no_grad():
            for slot, (w, key, fingerprint) in enumerate(job_windows):
                block = _evaluate_block(ensemble, slot, grid, windows.index[w], pts[windows.crop_points[w]],
                                        band, mesh_cfg.eval_chunk, device)
                field.blocks[key] = block
                if cache is not None:
                    cache.put(key, fingerprint, block)
                    if job_steps:
                        cache.put_state(key, settings_id, ensemble.window_state(slot))
        with lock:
            done[1] += 1
            report("field", done[1], len(jobs))
        if stop.is_set():
            raise ReconstructionCancelled("reconstruction cancelled")
        loss = ensemble.loss_history[-1] if ensemble.loss_history else float("nan")
        return loss, optimized - began, synchronized_time(device) - optimized, len(ensemble.loss_history)

    results = _run_jobs(jobs, replicas, run_job, stop)
    # With several devices the jobs overlap: share the wall time out in proportion to the work.
    wall = time.perf_counter() - start
    busy = sum(r[1] + r[2] for r in results) or 1.0
    stats.seconds["optimize"] = wall * sum(r[1] for r in results) / busy
    stats.seconds["field"] = wall * sum(r[2] for r in results) / busy
    start = time.perf_counter()
    stats.batches_run, stats.steps_run = len(results), sum(r[3] for r in results)
    losses = [r[0] for r in results if np.isfinite(r[0])]
    stats.final_loss = float(np.mean(losses)) if losses else float("nan")

    report("mesh", 0, 1)
    mesh = extract_mesh(field, mesh_cfg.threshold)
    start = clock.lap("marching_cubes", start)
    if mesh_cfg.trim_distance is not None:
        mesh = trim_far_faces(mesh, pts, mesh_cfg.trim_distance)
    if colors is not None and mesh_cfg.color_from_input:
        color_from_points(mesh, pts, colors)
    clock.lap("trim_color", start)
    report("mesh", 1, 1)

    stats.vertices, stats.faces = len(mesh.vertices), len(mesh.faces)
    if len(mesh.vertices):
        stats.bbox_min = tuple(float(v) for v in mesh.vertices.min(axis=0))
        stats.bbox_max = tuple(float(v) for v in mesh.vertices.max(axis=0))
    return Result(mesh=mesh, stats=stats)


def _evaluate_block(ensemble, slot: int, grid: WindowGrid, window: np.ndarray, crop_points: np.ndarray,
                    band: float | None, chunk: int, device: torch.device) -> np.ndarray:
    """Logits of one window's core grid points (within the band of its points; the rest stays empty)."""
    mask = core_band_mask(grid, window, crop_points, band)
    block = np.full(mask.shape, EMPTY_LOGIT, dtype=np.float32)
    queries = torch.from_numpy(grid.core_unit_points(window)[mask]).to(device)
    values = [ensemble.decode_window(slot, queries[i:i + chunk], ensemble.features).float().cpu()
              for i in range(0, len(queries), chunk)]
    if values:
        block[mask] = torch.cat(values).numpy()
    return block


def _model_fingerprint(model: ConvONet) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().sum().cpu().numpy().tobytes())
    return digest.hexdigest()


def _settings_fingerprint(config: ReconstructionConfig, steps: int, model_id: str) -> str:
    settings = {**config.to_dict(), "steps": steps, "model": model_id}
    settings.pop("device", None)
    return hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()


def _window_fingerprint(points: np.ndarray, settings_id: str) -> str:
    digest = hashlib.sha1(settings_id.encode())
    digest.update(np.ascontiguousarray(np.round(points, 4)).tobytes())
    return digest.hexdigest()
