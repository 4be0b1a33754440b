"""`reconstruct(points, config) -> Result`: the one entry point of the reconstruction.

It runs these stages, each a function of plain inputs and outputs in a module of its own:

    prepare_points   finite points (cropped to a region) with their colours, denoised   (points.py)
                                                                              -> PreparedPoints
    plan_windows     the windows on the grid: reused from the cache, or batched (cold / warm)  (planning.py)
                                                                              -> WindowPlan
    runner.run       per batch, wherever the runner runs it: the UCE optimisation of its windows, then their
                     field blocks        (runners.py: LocalRunner, RayRunner) -> BatchResults, as they finish
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
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from .cache import WindowCache
from .config import MeshingConfig, ReconstructionConfig, get_profile
from .denoise import NoiseEstimate
from .errors import ReconstructionCancelled, ReconstructionError
from .local_runner import LocalRunner
from .memory import release_freed_memory
from .meshing import StreamingMesher, near_points, point_gaps, trim_reach
from .model import ConvONet
from .planning import WindowPlan, plan_windows
from .points import PreparedPoints, prepare_points
from .ray_runner import connect
from .refine import color_from_points, smooth_inside_borders, snap_to_points
from .runners import BatchResult, BatchRunner, Progress, ProgressTally, StageClock
from .window_batch import ClearancePlanes
from .window_scale import scaled_to_map


@dataclass
class RunStats:
    """What one reconstruction did: counts, devices, seconds per stage, the mesh's size."""

    input_points: int = 0
    points_used: int = 0
    non_finite_removed: int = 0
    stray_points_removed: int = 0  # points far outside the map's own extent, dropped (points.stray_mask)
    windows_run: int = 0
    windows_skipped: int = 0
    windows_reused: int = 0
    windows_warm_started: int = 0
    iterations: int = 0
    batches_run: int = 0
    steps_run: int = 0  # optimisation steps taken, over all batches (fewer than planned after an early stop)
    steps_planned: int = 0  # optimisation steps the batches were given
    window_steps_run: int = 0  # steps summed over the windows (fewer where windows fitted their points early)
    window_steps_planned: int = 0  # steps summed over the windows, as planned
    out_of_time: bool = False  # the deadline stopped the optimisation of some batch before its last step
    skipped_for_time: list[str] = field(default_factory=list)  # the refinements a deadline left out ("snap")
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
    trim_distance: float = float("nan")  # metres, faces' farthest distance from the data as run (nan: no trim)
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


def reconstruct(points: np.ndarray, config: ReconstructionConfig | None = None, *,
                colors: np.ndarray | None = None, model: ConvONet | None = None, region=None,
                iterations: int | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, cache: WindowCache | None = None,
                deadline: float | None = None, runner: BatchRunner | None = None,
                partial: Callable[["PartialMesh"], None] | None = None) -> Result:
    """Reconstruct one mesh from a metric point cloud.

    points: N x 3 (metres, any origin); colors: optional N x 3 in [0, 1] for vertex colours;
    model: a loaded model (default: `config.checkpoint`, or the shipped model); region: optional
    (min_xyz, max_xyz) crop; iterations: overrides the profile's optimisation steps (0 = feed-forward);
    progress(stage, done, total) is called as work advances; setting `cancel` aborts between steps;
    `cache` reuses the field of windows whose points did not change since an earlier call;
    `deadline` (a time.monotonic() value) is when the answer is due: the optimisation stops early enough
    to leave the later stages their estimated time (`optimization_deadline`), each batch keeping the state
    it reached and later batches running feed-forward, and the snap is skipped once the deadline has
    passed; the stats say what was cut (`out_of_time`, `steps_run`, `skipped_for_time`);
    runner: where the batches run (default: `make_runner(config)`, this process or Ray workers);
    partial(PartialMesh) is called whenever more slabs of the mesh are marched, for progressive displays.
    """
    config = config or get_profile("fast")
    steps = config.optimization.iterations if iterations is None else int(iterations)
    if steps < 0:
        raise ReconstructionError(f"iterations must be >= 0, got {steps}")
    report = progress or _ignore_progress
    runner = runner or make_runner(config)
    clock = StageClock(runner.devices)
    with clock.stage("prepare"):
        cloud = prepare_points(points, config, colors, region, known_noise=cache.noise if cache else None)
        if cache is not None:
            cache.noise = cloud.noise
        config = scaled_to_map(config, cloud.points, cloud.noise)
        model = runner.load(model, config.checkpoint)
    trim = config.meshing.trim_distance
    with clock.stage("windows"):
        # One KD-tree of the points (about 35 B each) trims every block's faces as it is marched, so only the
        # kept faces are held until the mesh is assembled; snapping and colouring reuse it.
        tree = cKDTree(cloud.points)
        reach, clearance = spacing_dependents(tree, config, steps)
        plan = plan_windows(cloud.points, config, steps, cache, model, workers=runner.round_size, trim_reach=reach,
                            clearance=clearance)
    report("windows", len(plan.windows), len(plan.windows))
    tally = ProgressTally(report, {"optimize": sum(batch.steps for batch in plan.batches),
                                   "field": len(plan.batches)})
    stop = cancel if cancel is not None else threading.Event()
    # A kept face lies within its trim reach of a point, two grid cells inside the band the field is evaluated
    # in (planning.plan_windows): the cubes with unevaluated corners hold only faces the trim drops.
    mesher = StreamingMesher(plan.grid, plan.block_keys(), config.meshing.threshold, axis=plan.sweep_axis,
                             keep_faces=None if trim is None else near_points(tree, trim, reach,
                                                                              config.meshing.trim_surround),
                             evaluated_cubes_only=trim is not None)
    # The batches run as mesh_blocks takes their results; closing the run ends it at once on an error.
    with contextlib.closing(runner.run(plan, cloud.points, config, tally, stop, clock, cloud.encoder_points,
                                       optimization_deadline(deadline, plan))) as finished:
        results = mesh_blocks(plan, finished, mesher, cache, clock, partial, trim)
    report("mesh", 0, 1)
    _check(stop)
    with clock.stage("marching_cubes"):
        mesh = mesher.mesh()
    release_freed_memory()  # the pieces, freed as the mesh was assembled: back to the system before snapping
    _check(stop)
    late = deadline is not None and time.monotonic() >= deadline
    with clock.stage("trim_color"):
        mesh = finish_mesh(mesh, cloud, config.meshing, tree, refine=not late)
    report("mesh", 1, 1)
    stats = run_stats(cloud, plan, results, mesh, profile=config.profile, iterations=steps,
                      device=runner.describe(), seconds=clock.seconds)
    stats.peak_field_blocks, stats.faces_marched = mesher.peak_blocks, mesher.faces_marched
    stats.skipped_for_time = refinements(config.meshing, cloud.noise) if late else []
    stats.trim_distance = float("nan") if trim is None else float(trim)  # as run: it grows with the grid
    stats.distributed = runner.traffic()
    return Result(mesh=mesh, stats=stats)


def spacing_dependents(tree: cKDTree, config: ReconstructionConfig,
                       steps: int) -> tuple[np.ndarray | None, ClearancePlanes | None]:
    """What follows each point's local spacing, where the settings ask for it: its trim reach
    (meshing.trim_reach), and the planes off-surface samples keep clear of where the points are sparse."""
    meshing, optimization = config.meshing, config.optimization
    wants_reach = meshing.trim_distance is not None and meshing.trim_spacing > 0
    wants_clearance = steps > 0 and optimization.off_surface_clearance > 0
    if not (wants_reach or wants_clearance):
        return None, None
    gaps = point_gaps(tree)
    reach = trim_reach(gaps, meshing.trim_distance, meshing.trim_spacing) if wants_reach else None
    clearance = (ClearancePlanes.where_sparse(tree, gaps, optimization.clearance_gap * meshing.voxel_size)
                 if wants_clearance else None)
    return reach, clearance


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise ReconstructionCancelled("reconstruction cancelled")


# What follows the optimisation (field, marching cubes, trim and snap, and a node's messages) per window:
# about this many seconds per grid point of its core plus a fixed part, on a 2-core CPU. The field, marching
# cubes and trim stages of `sa-convonet reconstruct ROOM.npy -o mesh.ply --json` took 1.08e-7 and 1.13e-7 s
# per window grid point on the dense demo room (seed 7) and sparse room 100001 (auto:cpu); the fixed part
# covers the node's messages.
AFTER_OPTIMIZATION_SECONDS_PER_GRID_POINT = 1.1e-7
AFTER_OPTIMIZATION_SECONDS_PER_WINDOW = 0.04


def optimization_deadline(deadline: float | None, plan: WindowPlan) -> float | None:
    """When the optimisation must stop for the answer to be ready at `deadline`: early enough to leave the
    later stages their estimated time, but never before half of the time left now."""
    if deadline is None:
        return None
    windows = len(plan.windows)
    later = windows * (plan.grid.cells ** 3 * AFTER_OPTIMIZATION_SECONDS_PER_GRID_POINT
                       + AFTER_OPTIMIZATION_SECONDS_PER_WINDOW)
    return deadline - min(later, 0.5 * max(deadline - time.monotonic(), 0.0))


def make_runner(config: ReconstructionConfig) -> BatchRunner:
    """The runner the configuration asks for: Ray workers where `ray_address` is set (reached now, before any
    work, or a ReconstructionError), else this process's devices (`device`, `cpu_workers`)."""
    if config.ray_address:
        return connect(config)
    return LocalRunner.for_config(config)


def _ignore_progress(stage: str, done: int, total: int) -> None:
    pass


# ----------------------------------------------------------------------------------------- field, mesh

@dataclass
class PartialMesh:
    """The mesh marched so far while a run goes on: its faces below `final_below` metres along `axis` are
    those of the run's mesh before snapping and colouring; beyond it nothing is marched yet (`complete`:
    every slab is marched, the finished mesh follows)."""

    axis: int
    final_below: float
    complete: bool
    mesher: StreamingMesher
    window_size: float  # metres, the windows' cores as run
    voxel_size: float  # metres, the grid as run
    trim_distance: float  # metres, the faces' farthest distance from the data (nan: no trim)

    @property
    def share(self) -> float:
        """The share of the mesh's slabs marched so far, 0 to 1."""
        return self.mesher.share_marched

    def mesh(self) -> trimesh.Trimesh:
        return self.mesher.marched_so_far()


def mesh_blocks(plan: WindowPlan, results: Iterable[BatchResult], mesher: StreamingMesher,
                cache: WindowCache | None = None, clock: StageClock | None = None,
                partial: Callable[[PartialMesh], None] | None = None,
                trim_distance: float | None = None) -> list[BatchResult]:
    """The reused blocks, then each batch's blocks as it finishes, into the mesher (which releases them once
    meshed) and into the cache (a block cut short by the deadline is not the settings' result: only its
    state is kept, to continue from); `partial` hears of each advance of the marched slabs (whose faces were
    trimmed at `trim_distance`). Returns the results, emptied of their blocks and states."""
    clock = clock or StageClock([torch.device("cpu")])
    marched = mesher.final_below

    def tell_partial() -> None:
        nonlocal marched
        if partial is not None and mesher.final_below > marched:
            marched = mesher.final_below
            partial(PartialMesh(mesher.axis, marched, mesher.complete, mesher, plan.grid.core_size,
                                plan.grid.voxel_size, float("nan") if trim_distance is None else trim_distance))

    with clock.stage("marching_cubes"):
        for key, block in plan.reused.items():
            mesher.add(key, block)
    tell_partial()
    done = []
    for result in results:
        with clock.stage("marching_cubes"):
            for slot, (key, fingerprint) in enumerate(zip(result.batch.keys, result.batch.fingerprints)):
                if cache is not None:
                    if not result.out_of_time:
                        cache.put(key, fingerprint, result.blocks[slot])
                    if result.states is not None:
                        cache.put_state(key, plan.settings_id, result.states[slot])
                mesher.add(key, result.blocks[slot])
        result.blocks, result.states = [], None
        done.append(result)
        tell_partial()
    return done


def finish_mesh(mesh: trimesh.Trimesh, cloud: PreparedPoints, meshing: MeshingConfig,
                tree: cKDTree | None = None, refine: bool = True) -> trimesh.Trimesh:
    """The (trimmed) mesh with its vertices snapped onto the points' planes and then smoothed, as configured
    (and `refine`: a run past its deadline skips both), and coloured from the input's colours. `tree`: the
    points' KD-tree, when the caller has one."""
    if tree is None and len(mesh.faces):
        tree = cKDTree(cloud.points)  # one tree for both (built once, ~35 B/point)
    steps = refinements(meshing, cloud.noise) if refine else []
    if "snap" in steps:
        mesh = snap_to_points(mesh, cloud.points, meshing.snap_distance, meshing.snap_neighbours, tree=tree,
                              anchors=meshing.snap_anchors, reach=meshing.snap_reach)
    if "smoothing" in steps:
        mesh = smooth_inside_borders(mesh, meshing.smooth_iterations)
    if cloud.colors is not None and meshing.color_from_input:
        color_from_points(mesh, cloud.points, cloud.colors, tree)
    return mesh


def refinements(meshing: MeshingConfig, noise: NoiseEstimate | None) -> list[str]:
    """The optional steps after marching cubes the settings ask for on this map, in their order."""
    return [name for name, wanted in (("snap", snaps(meshing.snap_distance, noise)),
                                      ("smoothing", meshing.smooth_iterations > 0)) if wanted]


def snaps(distance: float, noise: NoiseEstimate | None) -> bool:
    # The points' planes only beat the field's surface where they are accurate to well within the move.
    return distance > 0 and (noise is None or noise.noise <= 0.5 * distance)


def run_stats(cloud: PreparedPoints, plan: WindowPlan, results: list[BatchResult], mesh: trimesh.Trimesh, *,
              profile: str, iterations: int, device: str, seconds: dict[str, float]) -> RunStats:
    losses = [r.final_loss for r in results if np.isfinite(r.final_loss)]
    stats = RunStats(
        input_points=cloud.input_points, points_used=len(cloud.points), non_finite_removed=cloud.non_finite_removed,
        stray_points_removed=cloud.stray_removed,
        windows_run=plan.windows_run, windows_skipped=plan.windows.skipped, windows_reused=len(plan.reused),
        windows_warm_started=plan.windows_warm_started, iterations=iterations, batches_run=len(results),
        steps_run=sum(r.steps_run for r in results), steps_planned=sum(batch.steps for batch in plan.batches),
        window_steps_run=sum(r.window_steps for r in results),
        window_steps_planned=sum(batch.steps * len(batch.windows) for batch in plan.batches),
        out_of_time=any(r.out_of_time for r in results), final_loss=float(np.mean(losses)) if losses else float("nan"),
        device=device, profile=profile, seconds=seconds,
        vertices=len(mesh.vertices), faces=len(mesh.faces), window_size=plan.grid.core_size,
        voxel_size=plan.grid.voxel_size)
    if cloud.noise is not None:
        stats.spacing, stats.noise = cloud.noise.spacing, cloud.noise.noise
    if len(mesh.vertices):
        stats.bbox_min = tuple(float(v) for v in mesh.vertices.min(axis=0))
        stats.bbox_max = tuple(float(v) for v in mesh.vertices.max(axis=0))
    return stats
