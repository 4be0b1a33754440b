"""`reconstruct(points, config) -> Result`: the one entry point of the reconstruction.

It runs these stages, each a function of plain inputs and outputs:

    prepare_points   finite points (cropped to a region) with their colours   -> PreparedPoints
    plan_windows     the windows on the grid: reused from the cache, or batched into jobs (cold / warm)
                                                                              -> WindowPlan
    run_jobs         per job, on one of the devices: the UCE optimisation of its windows, then their
                     field blocks                                  -> JobResults, as the jobs finish
    mesh_blocks      the blocks into the cache and into block-wise marching cubes (meshing.py) as they
                     come, each released once meshed, its far faces trimmed    -> the merged mesh
    finish_mesh      snapped and coloured

Memory: the windows are planned and run in slabs along the map's longest axis, and a block lives only
until the cubes that read it are polygonised, so the field costs about two slabs of blocks whatever the
map's length; what grows with the map is the points (and their window crops) and the mesh itself (see
docs/memory.md).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from .cache import WindowCache, WindowKey, model_fingerprint, settings_fingerprint, window_fingerprint
from .config import DenoiseConfig, MeshingConfig, OptimizationConfig, ReconstructionConfig, get_profile
from .denoise import NoiseEstimate, estimate_noise, project_to_local_surfaces
from .errors import ReconstructionCancelled, ReconstructionError
from .field import evaluate_block, lift_crests
from .memory import release_freed_memory
from .meshing import StreamingMesher, color_from_points, logit, near_points, snap_to_points
from .model import ConvONet, load_model, resolve_devices, synchronized_time
from .optimize import WindowBatch, WindowEnsemble, WindowState, optimize_windows
from .window_scale import scaled_to_map
from .windows import WindowGrid, WindowSet, core_band_mask, select_windows

Progress = Callable[[str, int, int], None]  # (stage, done, total)
STAGES = ("prepare", "windows", "optimize", "field", "marching_cubes", "trim_color")
T = TypeVar("T")


@dataclass
class RunStats:
    """What one reconstruction did: counts, devices, seconds per stage, the mesh's size."""

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
    steps_planned: int = 0  # optimisation steps the batches were given
    out_of_time: bool = False  # the deadline stopped the optimisation of some batch before its last step
    final_loss: float = float("nan")
    device: str = ""
    profile: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    peak_field_blocks: int = 0  # the most field blocks held at once while meshing
    faces_marched: int = 0  # faces marching cubes made, before trimming
    vertices: int = 0
    faces: int = 0
    bbox_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bbox_max: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spacing: float = float("nan")  # metres between neighbouring points, as measured (nan: not measured)
    noise: float = float("nan")  # metres, the map's measured noise (nan: not measured)
    window_size: float = float("nan")  # metres, the edge of the windows' cores as run (after the window scale)
    voxel_size: float = float("nan")  # metres, the mesh grid as run (after the window scale and grid_per_spacing)
    distributed: dict = field(default_factory=dict)  # a Ray run: what travelled, the workers' time (Traffic)

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
    stats: RunStats


@dataclass
class PreparedPoints:
    """The points the reconstruction works on."""

    points: np.ndarray  # (N, 3) float64, finite, inside the region (denoised when configured)
    colors: np.ndarray | None  # (N, 3) in [0, 1], or None
    input_points: int  # rows handed in
    non_finite_removed: int
    encoder_points: np.ndarray | None = None  # the points as measured, when the encoder should see them
    noise: NoiseEstimate | None = None  # the map's measured spacing and noise


@dataclass
class WindowJob:
    """One batch of windows optimised together: which windows, for how many steps, from which states."""

    number: int  # seeds the job's sampling, so it draws the same points on whichever device runs it
    windows: list[int]  # indices into the plan's WindowSet
    keys: list[WindowKey]
    fingerprints: list[str]  # of each window's points and the settings ('' without a cache)
    steps: int
    initial: list[WindowState] | None = None  # a warm start: each window's cached state


@dataclass
class WindowPlan:
    """The windows on the grid, and what becomes of each: reused from the cache, or run in a job.

    Windows and jobs go in slabs along `sweep_axis` (the map's longest), so that the field blocks of a
    slab are complete, meshed and released early (see `StreamingMesher`)."""

    grid: WindowGrid
    windows: WindowSet
    band: float | None  # grid points farther than about this from every point stay empty (None: all)
    reused: dict[WindowKey, np.ndarray]  # field blocks taken from the cache as they are
    jobs: list[WindowJob]
    settings_id: str | None = None  # fingerprint of the settings and the model; None without a cache
    sweep_axis: int = 0

    def block_keys(self) -> list[WindowKey]:
        """Every window's key: the blocks the field will consist of."""
        return list(self.reused) + [key for job in self.jobs for key in job.keys]

    @property
    def windows_run(self) -> int:
        return sum(len(job.windows) for job in self.jobs)

    @property
    def windows_warm_started(self) -> int:
        return sum(len(job.windows) for job in self.jobs if job.initial is not None)


@dataclass
class JobResult:
    """The field blocks of a job's windows and what its optimisation ended with (the blocks and states are
    emptied once they are meshed and cached)."""

    job: WindowJob
    blocks: list[np.ndarray]  # one (cells,)^3 block of logits per window of the job
    states: list[WindowState] | None  # adapted states to warm-start the windows later (kept for a cache)
    final_loss: float
    steps_run: int
    out_of_time: bool = False  # its optimisation stopped at the deadline: not the settings' result


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


def reconstruct(points: np.ndarray, config: ReconstructionConfig | None = None, *,
                colors: np.ndarray | None = None, model: ConvONet | None = None, region=None,
                iterations: int | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, cache: WindowCache | None = None,
                deadline: float | None = None) -> Result:
    """Reconstruct one mesh from a metric point cloud.

    points: N x 3 (metres, any origin); colors: optional N x 3 in [0, 1] for vertex colours;
    model: a loaded model (default: `config.checkpoint`, or the shipped model); region: optional
    (min_xyz, max_xyz) crop; iterations: overrides the profile's optimisation steps (0 = feed-forward);
    progress(stage, done, total) is called as work advances; setting `cancel` aborts between steps;
    `cache` reuses the field of windows whose points did not change since an earlier call;
    at `deadline` (a time.monotonic() value) the optimisation stops: each batch keeps the state it
    reached, later batches run feed-forward, and the stats count the steps run (`out_of_time`).
    """
    config = config or get_profile("fast")
    steps = config.optimization.iterations if iterations is None else int(iterations)
    if steps < 0:
        raise ReconstructionError(f"iterations must be >= 0, got {steps}")
    report = progress or _ignore_progress
    devices, threads, runner = resolve_devices(config.device), None, None
    if config.ray_address:  # the jobs on Ray workers; reached (or failing) before any work is done
        from .distributed import connect

        runner = connect(config)
    else:
        devices, threads = cpu_workers(devices, config.cpu_workers)
    clock = StageClock(devices)
    with clock.stage("prepare"):
        cloud = prepare_points(points, config, colors, region, known_noise=cache.noise if cache else None)
        if cache is not None:
            cache.noise = cloud.noise
        config = scaled_to_map(config, cloud.points, cloud.noise)
        replicas = model_replicas(model, config.checkpoint, devices)
    with clock.stage("windows"):
        plan = plan_windows(cloud.points, config, steps, cache, replicas[0], workers=len(replicas))
    report("windows", len(plan.windows), len(plan.windows))
    tally = ProgressTally(report, {"optimize": sum(job.steps for job in plan.jobs), "field": len(plan.jobs)})
    stop = cancel if cancel is not None else threading.Event()
    if runner is None:
        finished = run_jobs(plan, cloud.points, replicas, config, tally, stop, clock, cloud.encoder_points, deadline)
    else:
        finished = runner.run_jobs(plan, cloud.points, replicas[0], config, tally, stop, clock, cloud.encoder_points,
                                   deadline)
    # One KD-tree of the points (about 35 B each) trims every block's faces as it is marched, so only the
    # kept faces are held until the mesh is assembled; snapping and colouring reuse it.
    tree = cKDTree(cloud.points)
    trim = config.meshing.trim_distance
    mesher = StreamingMesher(plan.grid, plan.block_keys(), config.meshing.threshold, axis=plan.sweep_axis,
                             keep_faces=None if trim is None else near_points(tree, trim))
    with torch_threads(threads):  # the jobs run as mesh_blocks takes them
        results = mesh_blocks(plan, finished, mesher, cache, clock)
    report("mesh", 0, 1)
    with clock.stage("marching_cubes"):
        mesh = mesher.mesh()
    release_freed_memory()  # the pieces, freed as the mesh was assembled: back to the system before snapping
    with clock.stage("trim_color"):
        mesh = finish_mesh(mesh, cloud, config.meshing, tree)
    report("mesh", 1, 1)
    stats = run_stats(cloud, plan, results, mesh, profile=config.profile, iterations=steps, devices=devices,
                      seconds=clock.seconds)
    stats.peak_field_blocks, stats.faces_marched = mesher.peak_blocks, mesher.faces_marched
    if runner is not None:
        stats.device, stats.distributed = runner.describe(), asdict(runner.traffic)
    return Result(mesh=mesh, stats=stats)


def _ignore_progress(stage: str, done: int, total: int) -> None:
    pass


# --------------------------------------------------------------------------------------------- points

def prepare_points(points: np.ndarray, config: ReconstructionConfig, colors: np.ndarray | None = None,
                   region=None, known_noise: NoiseEstimate | None = None) -> PreparedPoints:
    """The finite points inside `region` (min_xyz, max_xyz) and their colours; ReconstructionError when
    they cannot make a surface."""
    pts, finite = validate_points(points)
    non_finite = int(len(finite) - len(pts))
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
    extent = pts.max(axis=0) - pts.min(axis=0)
    min_points, voxel_size = config.windows.min_points, config.meshing.voxel_size
    if len(pts) < min_points or extent.max() < 2 * voxel_size:
        raise ReconstructionError(
            f"too few distinct points to reconstruct a surface: {len(pts)} point(s) spanning "
            f"{extent.max():.4g} m (need at least {min_points} points in one window, "
            f"spanning more than two voxels of {voxel_size} m)")
    cloud = PreparedPoints(pts, colors, input_points=len(finite), non_finite_removed=non_finite)
    return denoised(cloud, config.denoise, known_noise) if config.denoise.denoise else cloud


def denoised(cloud: PreparedPoints, config: DenoiseConfig, known_noise: NoiseEstimate | None = None) -> PreparedPoints:
    """The cloud with its noise measured and, where the noise is a sizeable fraction of the spacing, its
    points moved onto their local planes or, where curved, quadrics (at most `max_shift` noise levels per
    pass); the measured points kept for the encoder if it should see them.

    `known_noise`, an earlier estimate of the same map, is kept while the new one agrees with it within
    25 %: the points of an unchanged part of a growing map then move exactly as before."""
    if len(cloud.points) <= max(config.denoise_neighbours, 16):
        return cloud
    noise = estimate_noise(cloud.points)
    if known_noise is not None and abs(noise.noise - known_noise.noise) <= 0.25 * known_noise.noise:
        noise = known_noise
    if noise.noise < config.denoise_min_noise_ratio * noise.spacing:
        return dataclasses.replace(cloud, noise=noise)
    moved = project_to_local_surfaces(cloud.points, config.denoise_max_shift * noise.noise, config.denoise_neighbours,
                                      config.denoise_passes, noise.noise, config.denoise_curved_ratio)
    return dataclasses.replace(cloud, points=moved, noise=noise,
                               encoder_points=None if config.denoise_encoder_input else cloud.points)


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
        raise ReconstructionError(f"the region is empty or inverted: min {low.tolist()} must be below max "
                                  f"{high.tolist()}")
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


# Batches of windows side by side on a 2-core CPU, one torch thread each: 0.79x the time of one batch at a
# time on both threads in one process, 0.87x for the whole CLI run (sparse room 100001; docs/benchmarks.md):
# the steps' small operations leave two threads waiting on each other. Two workers at two threads gain nothing.
AUTO_CPU_WORKERS = 2


def cpu_workers(devices: list[torch.device], workers: int) -> tuple[list[torch.device], int | None]:
    """The devices the jobs run on, one worker each, and torch's threads while they run (None: as they are).
    A lone CPU gets `workers` workers (0: AUTO_CPU_WORKERS, at most one per torch thread); on a list of CPUs
    (`cpu,cpu`) each item is a worker. CPU workers share torch's threads out among them."""
    if any(device.type != "cpu" for device in devices):
        return devices, None
    threads = torch.get_num_threads()
    if len(devices) == 1:
        devices = devices * (workers or max(1, min(AUTO_CPU_WORKERS, threads)))
    return devices, (max(1, threads // len(devices)) if len(devices) > 1 else None)


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's intra-op threads set to `count` inside the block (None: left alone), restored after it."""
    saved = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def model_replicas(model: ConvONet | None, checkpoint: str | None, devices: list[torch.device]) -> list[ConvONet]:
    """One model per device (the given one, else the checkpoint's, on the first)."""
    model = load_model(checkpoint, device=devices[0]) if model is None else model.to(devices[0])
    # One model per worker, even on the same device: functional_call swaps a module's parameters
    # while it runs, so two threads must never share one.
    return [model] + [copy.deepcopy(model).to(d) for d in devices[1:]]


# -------------------------------------------------------------------------------------------- windows

def plan_windows(points: np.ndarray, config: ReconstructionConfig, steps: int, cache: WindowCache | None = None,
                 model: ConvONet | None = None, workers: int = 1) -> WindowPlan:
    """The windows that hold enough points, split into blocks the cache still has, windows that start
    warm from a cached state, and cold ones; the last two batched into jobs (cold first), as many as a
    multiple of the `workers` that run them side by side."""
    meshing, optimization = config.meshing, config.optimization
    grid = WindowGrid.from_sizes(config.windows.window_size, meshing.voxel_size, config.windows.margin)
    band = None if meshing.trim_distance is None else meshing.trim_distance + 2 * meshing.voxel_size
    windows = select_windows(points, grid, config.windows.min_points, band if band is not None else grid.margin)
    if len(windows) == 0:
        raise ReconstructionError(
            f"no window holds {config.windows.min_points} or more points near its core; "
            f"the cloud is too sparse for windows of {grid.core_size:.3g} m")
    axis = sweep_axis(windows.index)
    windows = windows.ordered_along(axis)
    if cache is None:
        every = [(w, tuple(int(v) for v in windows.index[w]), "", None) for w in range(len(windows))]
        jobs = _batch_jobs(every, steps, optimization.window_batch, workers=workers)
        return WindowPlan(grid, windows, band, {}, jobs, sweep_axis=axis)
    settings_id = settings_fingerprint(config, steps, model_fingerprint(model))
    warm_steps = min(optimization.warm_start_iterations, steps)
    reused, cold, warm = _split_by_cache(points, windows, cache, settings_id, warm_start=warm_steps > 0)
    jobs = _batch_jobs(cold, steps, optimization.window_batch, workers=workers)
    jobs += _batch_jobs(warm, warm_steps, optimization.window_batch, first_number=len(jobs), workers=workers)
    jobs.sort(key=lambda job: windows.index[job.windows[0], axis])  # cold and warm jobs, slab by slab
    return WindowPlan(grid, windows, band, reused, jobs, settings_id, axis)


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


def _batch_jobs(windows: list[tuple], steps: int, size: int, first_number: int = 0,
                workers: int = 1) -> list[WindowJob]:
    # As few batches as `size` allows, of even sizes: a last batch of a few windows would cost nearly
    # as many steps as a full one. Their number a multiple of the workers, so no round leaves one idle.
    count = -(-len(windows) // size)
    count = min(len(windows), -(-count // workers) * workers)
    bounds = [len(windows) * i // count for i in range(count + 1)] if count else [0]
    jobs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        chunk = windows[start:end]
        states = [state for _, _, _, state in chunk]
        jobs.append(WindowJob(first_number + len(jobs), [w for w, _, _, _ in chunk], [key for _, key, _, _ in chunk],
                              [fingerprint for _, _, fingerprint, _ in chunk], steps,
                              None if states[0] is None else states))
    return jobs


# ------------------------------------------------------------------------------------------------ jobs

def run_jobs(plan: WindowPlan, points: np.ndarray, replicas: list[ConvONet], config: ReconstructionConfig,
             tally: ProgressTally, stop: threading.Event, clock: StageClock,
             encoder_points: np.ndarray | None = None, deadline: float | None = None) -> Iterator[JobResult]:
    """Every job of the plan, in its order, as it finishes: the UCE optimisation of its windows (until
    `deadline`), then their field blocks. With several devices the jobs go in rounds of one job per device,
    run side by side."""
    keep_states = plan.settings_id is not None
    for first in range(0, len(plan.jobs), len(replicas)):
        jobs = plan.jobs[first:first + len(replicas)]
        with clock.stage("optimize"):
            ensembles = _side_by_side([partial(optimize_job, job, replica, plan, points, config.optimization,
                                               on_step=tally.on_step, cancel=stop, deadline=deadline,
                                               encoder_points=encoder_points)
                                       for job, replica in zip(jobs, replicas)], stop)
        with clock.stage("field"):
            results = _side_by_side([partial(evaluate_job, job, ensemble, plan, points, config.meshing, keep_states)
                                     for job, ensemble in zip(jobs, ensembles)], stop)
        del ensembles  # the round's networks go before the next round's are made
        for _ in jobs:
            tally.advance("field")
        if stop.is_set():
            raise ReconstructionCancelled("reconstruction cancelled")
        yield from results


def _side_by_side(tasks: list[Callable[[], T]], stop: threading.Event) -> list[T]:
    """The results of the tasks, run at once in one thread each (torch releases the GIL in its kernels).
    When one fails, `stop` tells the others to end at their next step, and its error is raised."""
    if len(tasks) == 1:
        return [tasks[0]()]
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(task) for task in tasks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in done if future.exception() is not None]
        if failed:
            stop.set()
            raise failed[0].exception()
        return [future.result() for future in futures]


def optimize_job(job: WindowJob, replica: ConvONet, plan: WindowPlan, points: np.ndarray,
                 config: OptimizationConfig, on_step: Callable[[int, int, float], None] | None = None,
                 cancel: threading.Event | None = None, encoder_points: np.ndarray | None = None,
                 deadline: float | None = None) -> WindowEnsemble:
    """The adapted networks of the job's windows, on the replica's device, optimised until `deadline` (the
    encoder sees `encoder_points` where given, aligned with `points`)."""
    device = next(replica.parameters()).device
    rng = np.random.default_rng([config.seed, job.number])
    clouds = [plan.grid.to_unit(points[plan.windows.crop_points[w]], plan.windows.index[w]) for w in job.windows]
    targets = None
    if encoder_points is not None:  # the encoder sees the measured points, the loss the denoised ones
        clouds, targets = [plan.grid.to_unit(encoder_points[plan.windows.crop_points[w]], plan.windows.index[w])
                           for w in job.windows], clouds
    batch = WindowBatch.from_arrays(clouds, device, config.max_points_per_window, rng,
                                    max_samples=config.max_samples_per_window, targets=targets)
    return optimize_windows(replica, batch, config, iterations=job.steps, seed=config.seed + job.number,
                            on_step=on_step, cancel=cancel, initial=job.initial, deadline=deadline)


def evaluate_job(job: WindowJob, ensemble: WindowEnsemble, plan: WindowPlan, points: np.ndarray,
                 meshing: MeshingConfig, keep_states: bool = False) -> JobResult:
    """The field blocks of the job's windows under their adapted networks (and their states if kept)."""
    device = ensemble.batch.points.device
    with torch.no_grad():
        blocks = [_evaluate_block(ensemble, slot, plan.grid, plan.windows.index[w],
                                  points[plan.windows.crop_points[w]], plan.band, meshing, device)
                  for slot, w in enumerate(job.windows)]
    states = ([ensemble.window_state(slot) for slot in range(len(job.windows))]
              if keep_states and job.steps else None)
    history = ensemble.loss_history
    return JobResult(job, blocks, states, history[-1] if history else float("nan"), len(history),
                     ensemble.out_of_time)


def _evaluate_block(ensemble: WindowEnsemble, slot: int, grid: WindowGrid, window: np.ndarray,
                    crop_points: np.ndarray, band: float | None, meshing: MeshingConfig,
                    device: torch.device) -> np.ndarray:
    """Logits of one window's core grid points (within the band of its points; the rest stays empty)."""
    chunk = meshing.eval_chunk

    def decode(index: np.ndarray) -> np.ndarray:
        queries = torch.from_numpy(grid.unit_points_at(index)).to(device)
        values = [ensemble.decode_window(slot, queries[i:i + chunk], ensemble.features).float().cpu()
                  for i in range(0, len(queries), chunk)]
        return torch.cat(values).numpy()

    mask = core_band_mask(grid, window, crop_points, band)
    level = logit(meshing.threshold)
    block = evaluate_block(decode, mask, level, meshing.coarse_to_fine_margin)
    if meshing.crest_depth > 0:
        lift_crests(block, level, meshing.crest_depth, core_band_mask(grid, window, crop_points, 0.0), decode)
    return block

# ----------------------------------------------------------------------------------------- field, mesh

def mesh_blocks(plan: WindowPlan, results: Iterable[JobResult], mesher: StreamingMesher,
                cache: WindowCache | None = None, clock: StageClock | None = None) -> list[JobResult]:
    """The reused blocks, then each job's blocks as it finishes, into the mesher (which releases them once
    meshed) and into the cache (a block cut short by the deadline is not the settings' result: only its
    state is kept, to continue from). Returns the results, emptied of their blocks and states."""
    clock = clock or StageClock([torch.device("cpu")])
    with clock.stage("marching_cubes"):
        for key, block in plan.reused.items():
            mesher.add(key, block)
    done = []
    for result in results:
        with clock.stage("marching_cubes"):
            for slot, (key, fingerprint) in enumerate(zip(result.job.keys, result.job.fingerprints)):
                if cache is not None:
                    if not result.out_of_time:
                        cache.put(key, fingerprint, result.blocks[slot])
                    if result.states is not None:
                        cache.put_state(key, plan.settings_id, result.states[slot])
                mesher.add(key, result.blocks[slot])
        result.blocks, result.states = [], None
        done.append(result)
    return done


def finish_mesh(mesh: trimesh.Trimesh, cloud: PreparedPoints, meshing: MeshingConfig,
                tree: cKDTree | None = None) -> trimesh.Trimesh:
    """The (trimmed) mesh with its vertices snapped onto the points' planes when configured, and coloured
    from the input's colours. `tree`: the points' KD-tree, when the caller has one."""
    if tree is None and len(mesh.faces):
        tree = cKDTree(cloud.points)  # one tree for both (built once, ~35 B/point)
    if snaps(meshing.snap_distance, cloud.noise):
        mesh = snap_to_points(mesh, cloud.points, meshing.snap_distance, meshing.snap_neighbours, tree=tree,
                              anchors=meshing.snap_anchors)
    if cloud.colors is not None and meshing.color_from_input:
        color_from_points(mesh, cloud.points, cloud.colors, tree)
    return mesh


def snaps(distance: float, noise: NoiseEstimate | None) -> bool:
    # The points' planes only beat the field's surface where they are accurate to well within the move.
    return distance > 0 and (noise is None or noise.noise <= 0.5 * distance)


def run_stats(cloud: PreparedPoints, plan: WindowPlan, results: list[JobResult], mesh: trimesh.Trimesh, *,
              profile: str, iterations: int, devices: list[torch.device], seconds: dict[str, float]) -> RunStats:
    losses = [r.final_loss for r in results if np.isfinite(r.final_loss)]
    stats = RunStats(
        input_points=cloud.input_points, points_used=len(cloud.points), non_finite_removed=cloud.non_finite_removed,
        windows_run=plan.windows_run, windows_skipped=plan.windows.skipped, windows_reused=len(plan.reused),
        windows_warm_started=plan.windows_warm_started, iterations=iterations, batches_run=len(results),
        steps_run=sum(r.steps_run for r in results), steps_planned=sum(job.steps for job in plan.jobs),
        out_of_time=any(r.out_of_time for r in results), final_loss=float(np.mean(losses)) if losses else float("nan"),
        device=",".join(str(d) for d in devices), profile=profile, seconds=seconds,
        vertices=len(mesh.vertices), faces=len(mesh.faces), window_size=plan.grid.core_size,
        voxel_size=plan.grid.voxel_size)
    if cloud.noise is not None:
        stats.spacing, stats.noise = cloud.noise.spacing, cloud.noise.noise
    if len(mesh.vertices):
        stats.bbox_min = tuple(float(v) for v in mesh.vertices.min(axis=0))
        stats.bbox_max = tuple(float(v) for v in mesh.vertices.max(axis=0))
    return stats
