"""End to end: points in metres -> one mesh; what bad input gets; and each stage alone."""
import dataclasses
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from sa_convonet_ros import optimize as optimize_module
from sa_convonet_ros import pipeline as pipeline_module
from sa_convonet_ros.config import ModelConfig, get_profile
from sa_convonet_ros.data import generate_room, simulate_scans
from sa_convonet_ros.meshing import BlockField, StreamingMesher, extract_mesh, near_points, trim_far_faces
from sa_convonet_ros.model import DEFAULT_CHECKPOINT, ConvONet, load_model
from sa_convonet_ros.pipeline import (
    STAGES,
    ProgressTally,
    ReconstructionCancelled,
    ReconstructionError,
    StageClock,
    WindowCache,
    _side_by_side,
    cpu_workers,
    evaluate_job,
    finish_mesh,
    mesh_blocks,
    optimize_job,
    plan_windows,
    prepare_points,
    reconstruct,
    run_jobs,
)
from sa_convonet_ros.window_scale import scaled_to_map

TINY = ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=8, unet_levels=2, unet_base_channels=8)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ConvONet(TINY).eval()


@pytest.fixture(scope="module")
def room_corner():
    """A sparse simulated scan of a 2 x 2 m corner of a generated room (walls, floor, furniture)."""
    scene = generate_room(seed=3)
    points, _ = simulate_scans(scene, "sparse", seed=0)
    low = scene.bounds[0]
    keep = np.all((points[:, :2] >= low[:2]) & (points[:, :2] <= low[:2] + 2.0), axis=1)
    return points[keep].astype(np.float64)


def small_config(iterations=0):
    config = get_profile("fast")
    return config.updated(optimization={"iterations": iterations, "surface_samples": 256,
                                        "off_surface_samples": 128},
                          meshing={"voxel_size": 0.04}, windows={"window_size": 0.8, "margin": 0.2})


def test_shipped_model_reconstructs_a_room_corner(room_corner):
    assert DEFAULT_CHECKPOINT.is_file(), "the shipped default model is missing"
    model = load_model(device="cpu")
    config = get_profile("fast")

    def distances(result):
        samples = result.mesh.sample(20000)
        to_input, _ = cKDTree(room_corner).query(samples)  # accuracy side
        to_mesh, _ = cKDTree(samples).query(room_corner)  # completeness side
        return to_input, to_mesh

    feed_forward = reconstruct(room_corner, config, model=model, iterations=0)
    result = reconstruct(room_corner, config, model=model, iterations=30)
    mesh, stats = result.mesh, result.stats
    assert len(mesh.faces) > 1000 and stats.faces == len(mesh.faces)
    assert stats.windows_run > 0 and stats.iterations == 30 and np.isfinite(stats.final_loss)
    assert set(stats.seconds) >= {"prepare", "windows", "optimize", "field", "marching_cubes"}
    to_input, to_mesh = distances(result)
    # the mesh is close to the input (accuracy) and covers most of it (completeness)
    assert np.median(to_input) < 0.03 and np.percentile(to_input, 95) < config.meshing.trim_distance + 0.01
    assert np.median(to_mesh) < 0.03 and np.mean(to_mesh < 0.05) > 0.85
    # the sign-agnostic optimisation improves on its feed-forward start
    _, ff_to_mesh = distances(feed_forward)
    assert to_mesh.mean() < 0.8 * ff_to_mesh.mean()


def test_huge_coordinates_give_the_same_mesh_shifted(tiny_model, room_corner):
    config = small_config()
    window = scaled_to_map(config, room_corner).windows.window_size  # the windows' tiling, as the map scales it
    shift = np.array([1.0, -2.0, 0.5]) * 1e6 // window * window
    base = reconstruct(room_corner, config, model=tiny_model).mesh
    moved = reconstruct(room_corner + shift, config, model=tiny_model).mesh
    assert len(base.faces) == len(moved.faces) > 0
    assert np.allclose(moved.vertices - shift, base.vertices, atol=1e-4)


def test_non_finite_points_are_dropped_and_counted(tiny_model, room_corner):
    noisy = room_corner.copy()
    noisy[::50] = np.nan
    noisy[1::50, 2] = np.inf
    result = reconstruct(noisy, small_config(), model=tiny_model)
    assert result.stats.non_finite_removed == len(noisy[::50]) + len(noisy[1::50])
    assert result.stats.input_points == len(noisy)
    assert result.stats.points_used == len(noisy) - result.stats.non_finite_removed


@pytest.mark.parametrize("points, message", [
    (np.zeros((0, 3)), "empty"),
    (np.full((100, 3), np.nan), "NaN or infinite"),
    (np.array([[1.0, 2.0, 3.0]]), "too few distinct points"),
    (np.tile([[1.0, 2.0, 3.0]], (5000, 1)), "too few distinct points"),
    (np.zeros((10, 2)), "N x 3"),
    (np.array([["a", "b", "c"]]), "numeric"),
])
def test_bad_input_gets_a_clear_error(tiny_model, points, message):
    with pytest.raises(ReconstructionError, match=message):
        reconstruct(points, small_config(), model=tiny_model)


def test_regions(tiny_model, room_corner):
    low = room_corner.min(axis=0)
    with pytest.raises(ReconstructionError, match="inverted"):
        reconstruct(room_corner, small_config(), model=tiny_model, region=(low + 1, low))
    with pytest.raises(ReconstructionError, match="holds no points"):
        reconstruct(room_corner, small_config(), model=tiny_model, region=(low - 10, low - 9))
    result = reconstruct(room_corner, small_config(), model=tiny_model, region=(low, low + [1.0, 1.0, 3.0]))
    assert result.stats.points_used < len(room_corner)
    assert np.all(result.mesh.vertices[:, :2] <= low[:2] + 1.0 + small_config().windows.margin + 0.2)


def test_colours_come_from_the_input(tiny_model, room_corner):
    colours = np.tile([[0.0, 1.0, 0.0]], (len(room_corner), 1))
    result = reconstruct(room_corner, small_config(), model=tiny_model, colors=colours)
    assert np.all(result.mesh.visual.vertex_colors[:, :3] == [0, 255, 0])
    with pytest.raises(ReconstructionError, match="colors"):
        reconstruct(room_corner, small_config(), model=tiny_model, colors=colours[:10])


def test_cache_reuses_unchanged_windows(tiny_model, room_corner):
    cache = WindowCache()
    config = small_config(iterations=2)
    first = reconstruct(room_corner, config, model=tiny_model, cache=cache)
    again = reconstruct(room_corner, config, model=tiny_model, cache=cache)
    assert again.stats.windows_reused == first.stats.windows_run and again.stats.windows_run == 0
    assert np.array_equal(first.mesh.faces, again.mesh.faces)
    # new points in one corner re-run only the windows that see them
    extra = room_corner.min(axis=0) + np.random.default_rng(0).uniform(0, 0.1, (200, 3))
    changed = reconstruct(np.vstack([room_corner, extra]), config, model=tiny_model, cache=cache)
    # a 10 cm cluster touches at most 8 windows (and their margins): everything else is reused
    assert 0 < changed.stats.windows_run <= 8
    assert changed.stats.windows_reused >= first.stats.windows_run - 8


def test_progress_is_reported(tiny_model, room_corner):
    seen = []
    reconstruct(room_corner, small_config(iterations=3), model=tiny_model,
                progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = [s for s, _, _ in seen]
    assert "optimize" in stages and "field" in stages and stages[-1] == "mesh"
    last_optimize = [x for x in seen if x[0] == "optimize"][-1]
    assert last_optimize[1] == last_optimize[2]


def test_even_subsampling_caps_the_count_and_keeps_the_extent():
    from sa_convonet_ros.pipeline import subsample_evenly

    rng = np.random.default_rng(0)
    points = np.vstack([rng.uniform(0, 1, (50000, 3)), rng.uniform(5, 5.1, (50000, 3))])  # two densities
    keep = subsample_evenly(points, 5000)
    assert 1000 < len(keep) <= 5000 and np.all(np.diff(keep) > 0)
    kept = points[keep]
    assert kept[:, 0].min() < 0.1 and kept[:, 0].max() > 5.0  # both clusters survive
    assert np.array_equal(keep, subsample_evenly(points, 5000))  # the same points every time


def test_warm_start_continues_windows_whose_points_changed(tiny_model, room_corner):
    cache = WindowCache()
    config = small_config(iterations=3).updated(optimization={"warm_start_iterations": 1})
    first = reconstruct(room_corner, config, model=tiny_model, cache=cache)
    assert first.stats.windows_warm_started == 0  # nothing to start from yet
    extra = room_corner.min(axis=0) + np.random.default_rng(0).uniform(0, 0.1, (200, 3))
    changed = reconstruct(np.vstack([room_corner, extra]), config, model=tiny_model, cache=cache)
    # windows that existed before start warm; a window the new points create starts cold
    assert 0 < changed.stats.windows_warm_started <= changed.stats.windows_run <= 8
    # other settings: the cached states do not fit, every changed window starts cold
    other = config.updated(optimization={"learning_rate": 1e-3})
    cold = reconstruct(np.vstack([room_corner, extra[:100]]), other, model=tiny_model, cache=cache)
    assert cold.stats.windows_warm_started == 0 and cold.stats.windows_run >= first.stats.windows_run


def test_windows_spread_over_several_devices_give_the_same_mesh(tiny_model, room_corner):
    config = small_config(iterations=2).updated(optimization={"window_batch": 2}, cpu_workers=3)
    one = reconstruct(room_corner, config, model=tiny_model)
    two = reconstruct(room_corner, config.updated(device="cpu,cpu,cpu"), model=tiny_model)
    assert one.stats.device == two.stats.device == "cpu,cpu,cpu" and two.stats.windows_run == one.stats.windows_run
    np.testing.assert_allclose(two.mesh.vertices, one.mesh.vertices, atol=1e-6)
    assert np.array_equal(two.mesh.faces, one.mesh.faces)


def test_cached_states_stay_within_their_memory_budget():
    from sa_convonet_ros.optimize import WindowState

    state = WindowState({"w": torch.zeros(250)}, torch.zeros(500, dtype=torch.float16))  # 2,000 bytes
    cache = WindowCache(max_state_bytes=5_000)
    for i in range(4):
        cache.put_state((i, 0, 0), "settings", state)
    # the two oldest states made room for the newer ones; a re-stored key counts once
    assert cache.get_state((0, 0, 0), "settings") is None and cache.get_state((1, 0, 0), "settings") is None
    assert cache.get_state((3, 0, 0), "settings") is state
    cache.put_state((3, 0, 0), "settings", state)
    assert cache.get_state((2, 0, 0), "settings") is state


# ---- the stages, one by one -------------------------------------------------------------------------

def test_prepare_points_drops_non_finite_rows_crops_and_keeps_colours(room_corner):
    points = room_corner.copy()
    points[::7] = np.nan
    colours = np.random.default_rng(0).random((len(points), 3))
    low = room_corner.min(axis=0)
    config = small_config().updated(denoise={"denoise": False})
    cloud = prepare_points(points, config, colours, region=(low, low + [1.0, 1.0, 3.0]))
    finite = np.isfinite(points).all(axis=1)
    inside = finite & np.all((points >= low) & (points <= low + [1.0, 1.0, 3.0]), axis=1)
    assert cloud.input_points == len(points) and cloud.non_finite_removed == (~finite).sum()
    np.testing.assert_array_equal(cloud.points, points[inside])
    np.testing.assert_array_equal(cloud.colors, colours[inside])
    assert cloud.noise is None and cloud.encoder_points is None


def test_prepare_points_measures_the_noise_and_denoises(room_corner):
    noisy = room_corner + np.random.default_rng(1).normal(scale=0.01, size=room_corner.shape)
    cloud = prepare_points(noisy, small_config().updated(denoise={"denoise_encoder_input": True}))
    assert 0.01 < cloud.noise.noise < 0.025 and cloud.encoder_points is None  # the scan's own + 1 cm
    moved = np.linalg.norm(cloud.points - noisy, axis=1)
    assert 0 < moved.max() <= 2 * 2.5 * cloud.noise.noise + 1e-12  # two passes of at most 2.5 noise levels
    keep_raw = prepare_points(noisy, small_config().updated(denoise={"denoise_encoder_input": False}))
    np.testing.assert_array_equal(keep_raw.encoder_points, noisy)
    np.testing.assert_array_equal(keep_raw.points, cloud.points)
    # an earlier estimate of the same map is kept while it agrees: unchanged parts move as before
    close = dataclasses.replace(cloud.noise, noise=cloud.noise.noise * 1.1)
    again = prepare_points(noisy, small_config().updated(denoise={"denoise_encoder_input": True}), known_noise=close)
    assert again.noise is close


def test_prepare_points_leaves_maps_whose_noise_is_small_against_their_spacing(room_corner):
    # the sparse scan's noise (1.5 cm) is about 0.4 of its 2.5 cm spacing: denoised; the room's surface with
    # 2 mm noise 2.3 cm apart (as a voxel filter averaging many returns leaves a map): measured, left alone
    config = small_config()
    noisy = prepare_points(room_corner, config)
    assert noisy.noise.noise >= config.denoise.denoise_min_noise_ratio * noisy.noise.spacing
    assert not np.array_equal(noisy.points, room_corner)
    scene_points = generate_room(seed=3).sample_surface(40_000, seed=0)[0].astype(np.float64)
    scene_points += np.random.default_rng(0).normal(scale=0.002, size=scene_points.shape)
    clean = prepare_points(scene_points, config)
    assert clean.noise.noise < config.denoise.denoise_min_noise_ratio * clean.noise.spacing
    np.testing.assert_array_equal(clean.points, scene_points)
    assert clean.encoder_points is None


def test_plan_without_a_cache_batches_every_window_cold(room_corner):
    config = small_config(iterations=3).updated(optimization={"window_batch": 4})
    plan = plan_windows(room_corner, config, steps=3)
    assert plan.reused == {} and plan.settings_id is None
    assert [job.number for job in plan.jobs] == list(range(len(plan.jobs)))
    assert all(len(job.windows) <= 4 and job.steps == 3 and job.initial is None for job in plan.jobs)
    assert sorted(w for job in plan.jobs for w in job.windows) == list(range(len(plan.windows)))
    assert plan.windows_run == len(plan.windows) and plan.windows_warm_started == 0
    # as few batches as the batch size allows, of sizes at most one apart (no short last batch)
    sizes = [len(job.windows) for job in plan.jobs]
    assert len(sizes) == -(-len(plan.windows) // 4) and max(sizes) - min(sizes) <= 1


def test_workers_side_by_side_get_whole_rounds_of_jobs(room_corner):
    config = small_config(iterations=3)
    windows = len(plan_windows(room_corner, config, steps=3).windows)
    for workers in (2, 3):
        batch = -(-windows // workers) - 1  # one batch of this size would leave the last round short
        plan = plan_windows(room_corner, config.updated(optimization={"window_batch": batch}), 3, workers=workers)
        sizes = [len(job.windows) for job in plan.jobs]
        assert len(sizes) % workers == 0 and max(sizes) <= batch and max(sizes) - min(sizes) <= 1
        assert sorted(w for job in plan.jobs for w in job.windows) == list(range(windows))
    one_each = plan_windows(room_corner, config.updated(optimization={"window_batch": 1}), 3, workers=windows + 1)
    assert [len(job.windows) for job in one_each.jobs] == [1] * windows  # never an empty job


def test_plan_with_a_cache_reuses_unchanged_windows_and_warm_starts_changed_ones(tiny_model, room_corner):
    cache = WindowCache()
    config = small_config(iterations=3).updated(optimization={"warm_start_iterations": 2, "window_batch": 4})
    reconstruct(room_corner, config, model=tiny_model, cache=cache)
    extra = room_corner.min(axis=0) + np.random.default_rng(0).uniform(0, 0.1, (200, 3))
    grown = prepare_points(np.vstack([room_corner, extra]), config, known_noise=cache.noise)
    plan = plan_windows(grown.points, scaled_to_map(config, grown.points, grown.noise), 3, cache, tiny_model)
    warm = [job for job in plan.jobs if job.initial is not None]
    cold = [job for job in plan.jobs if job.initial is None]
    assert plan.reused and warm and len(plan.reused) + plan.windows_run == len(plan.windows)
    assert all(job.steps == 2 and len(job.initial) == len(job.windows) for job in warm)
    assert all(job.steps == 3 for job in cold) and [job.number for job in cold + warm] == list(range(len(plan.jobs)))


def test_the_stages_one_by_one_make_the_mesh_of_reconstruct(tiny_model, room_corner):
    config = small_config(iterations=2).updated(optimization={"window_batch": 4}, cpu_workers=1)
    cloud = prepare_points(room_corner, config)
    config = scaled_to_map(config, cloud.points, cloud.noise)
    plan = plan_windows(cloud.points, config, steps=2)
    seen = []
    tally = ProgressTally(lambda *update: seen.append(update), {"optimize": 2 * len(plan.jobs),
                                                                "field": len(plan.jobs)})
    clock = StageClock([torch.device("cpu")])
    finished = run_jobs(plan, cloud.points, [tiny_model], config, tally, threading.Event(), clock,
                        cloud.encoder_points)
    assert seen == []  # the jobs run as their results are taken
    cache = WindowCache()
    tree = cKDTree(cloud.points)
    mesher = StreamingMesher(plan.grid, plan.block_keys(), config.meshing.threshold, axis=plan.sweep_axis,
                             keep_faces=near_points(tree, config.meshing.trim_distance))
    results = mesh_blocks(plan, finished, mesher, cache, clock)
    assert [r.job for r in results] == plan.jobs and all(r.steps_run == 2 and r.blocks == [] for r in results)
    assert seen[-1] == ("field", len(plan.jobs), len(plan.jobs)) and clock.seconds["optimize"] > 0
    assert len(cache) == len(plan.windows) and 0 < mesher.peak_blocks <= len(plan.windows)
    assert mesher.field.blocks == {}  # every block released once meshed
    mesh = finish_mesh(mesher.mesh(), cloud, config.meshing, tree)
    whole = reconstruct(room_corner, config, model=tiny_model).mesh
    np.testing.assert_array_equal(mesh.vertices, whole.vertices)
    np.testing.assert_array_equal(mesh.faces, whole.faces)
    assert mesher.faces_marched > len(whole.faces)  # far faces were dropped block by block
    # the same surface as the blocks meshed in one piece and trimmed at the end (the order may differ)
    blocks = BlockField(plan.grid, {key: cache.get(key, fingerprint) for job in plan.jobs
                                    for key, fingerprint in zip(job.keys, job.fingerprints)})
    at_once = finish_mesh(trim_far_faces(extract_mesh(blocks), cloud.points, config.meshing.trim_distance),
                          cloud, config.meshing)
    np.testing.assert_array_equal(np.unique(at_once.triangles.reshape(-1, 9), axis=0),
                                  np.unique(whole.triangles.reshape(-1, 9), axis=0))


@pytest.mark.parametrize("trim", [0.03, 0.1])
def test_the_field_band_around_the_points_keeps_every_face_the_whole_field_gives(tiny_model, room_corner,
                                                                                monkeypatch, trim):
    config = small_config().updated(meshing={"trim_distance": trim})  # a 4 cm grid
    banded = reconstruct(room_corner, config, model=tiny_model).mesh
    monkeypatch.setattr(pipeline_module, "core_band_mask", lambda grid, window, points, band: np.ones(
        (grid.cells,) * 3, dtype=bool))
    whole = reconstruct(room_corner, config, model=tiny_model).mesh
    assert len(whole.faces) > 1000
    np.testing.assert_array_equal(np.unique(banded.triangles.reshape(-1, 9), axis=0),
                                  np.unique(whole.triangles.reshape(-1, 9), axis=0))


def test_a_long_map_holds_about_two_slabs_of_field_blocks(tiny_model):
    """A corridor 9 m long along y: windows run and are meshed slab by slab along it, the field is never whole."""
    rng = np.random.default_rng(0)
    along, up = rng.uniform(0, 9, 40_000), rng.uniform(0, 1.5, 40_000)
    walls = np.c_[np.where(np.arange(40_000) % 2, 0.1, 1.1) + rng.normal(0, 0.003, 40_000), along, up]
    config = small_config().updated(optimization={"window_batch": 4}, denoise={"denoise": False})
    plan = plan_windows(walls, config, steps=0)
    assert plan.sweep_axis == 1
    slab_sizes = np.unique(plan.windows.index[:, 1], return_counts=True)[1]
    result = reconstruct(walls, config, model=tiny_model)
    assert result.stats.windows_run == len(plan.windows) > 4 * slab_sizes.max()
    assert result.stats.peak_field_blocks <= 2 * slab_sizes.max() + 4  # two slabs and one batch
    assert result.stats.faces_marched >= result.stats.faces > 0


def test_one_job_alone(tiny_model, room_corner):
    config = small_config(iterations=2)
    plan = plan_windows(room_corner, config, steps=2)
    job = plan.jobs[0]
    ensemble = optimize_job(job, tiny_model, plan, room_corner, config.optimization)
    result = evaluate_job(job, ensemble, plan, room_corner, config.meshing, keep_states=True)
    cells = plan.grid.cells
    assert len(result.blocks) == len(result.states) == len(job.windows) and result.steps_run == 2
    assert all(block.shape == (cells, cells, cells) and block.max() > block.min() for block in result.blocks)


def test_a_cancelled_run_raises_and_leaves_the_cache_as_it_was(tiny_model, room_corner):
    cache, cancel = WindowCache(), threading.Event()
    cancel.set()
    with pytest.raises(ReconstructionCancelled):
        reconstruct(room_corner, small_config(iterations=3), model=tiny_model, cancel=cancel, cache=cache)
    assert len(cache) == 0


def test_a_deadline_stops_the_optimisation_and_still_gives_a_mesh(tiny_model, room_corner):
    config = small_config(iterations=50)
    cache = WindowCache()
    on_time = reconstruct(room_corner, config, model=tiny_model, iterations=0)
    late = reconstruct(room_corner, config, model=tiny_model, cache=cache, deadline=time.monotonic() - 1.0)
    assert late.stats.out_of_time and late.stats.steps_run == 0
    assert late.stats.steps_planned == 50 * late.stats.batches_run > 50 and late.stats.iterations == 50
    assert np.array_equal(late.mesh.faces, on_time.mesh.faces)  # no step run: the feed-forward mesh
    assert len(cache) == 0  # blocks cut short are not the settings' result: never reused as such



def test_the_optimisation_stops_at_the_deadline_and_later_batches_run_feed_forward(tiny_model, room_corner,
                                                                                  monkeypatch):
    # A clock that advances one second each time the optimisation reads it (once before each step).
    seconds = iter(range(10**6))
    monkeypatch.setattr(optimize_module, "time", SimpleNamespace(monotonic=lambda: next(seconds)))
    config = small_config(iterations=50)
    budget = reconstruct(room_corner, config, model=tiny_model, deadline=7.5)
    assert budget.stats.batches_run > 1 and budget.stats.out_of_time
    assert budget.stats.steps_run == 8  # steps 0..7 of the first batch; the later batches start too late
    assert budget.stats.steps_planned == 50 * budget.stats.batches_run and len(budget.mesh.faces) > 0
    full = reconstruct(room_corner, small_config(iterations=1), model=tiny_model, deadline=10**9)
    assert not full.stats.out_of_time and full.stats.steps_run == full.stats.steps_planned


def test_a_failing_task_stops_the_others():
    stop = threading.Event()

    def fails():
        raise RuntimeError("out of memory")

    def waits():
        assert stop.wait(10)
        return "stopped"

    with pytest.raises(RuntimeError, match="out of memory"):
        _side_by_side([waits, fails], stop)
    assert stop.is_set()
    assert _side_by_side([lambda: 1, lambda: 2], threading.Event()) == [1, 2]


def test_stage_clock_adds_up_each_stage():
    clock = StageClock([torch.device("cpu")])
    assert list(clock.seconds) == list(STAGES) and sum(clock.seconds.values()) == 0
    for _ in range(2):
        with clock.stage("field"):
            time.sleep(0.01)
    assert clock.seconds["field"] >= 0.02 and clock.seconds["optimize"] == 0


def test_snapping_is_skipped_on_maps_noisier_than_half_the_snap():
    from sa_convonet_ros.denoise import NoiseEstimate
    from sa_convonet_ros.pipeline import snaps

    assert snaps(0.01, NoiseEstimate(spacing=0.01, noise=0.004, neighbours=8))
    assert not snaps(0.01, NoiseEstimate(spacing=0.04, noise=0.011, neighbours=8))
    assert snaps(0.01, None)  # unmeasured (denoising off): the setting is the user's
    assert not snaps(0.0, None)


def test_a_cpu_runs_batches_side_by_side_on_shares_of_its_threads(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert cpu_workers([cpu], 0) == ([cpu, cpu], 4)  # auto: two workers
    assert cpu_workers([cpu], 3) == ([cpu] * 3, 2)
    assert cpu_workers([cpu], 1) == ([cpu], None)  # one batch at a time on every thread
    assert cpu_workers([cpu, cpu], 0) == ([cpu, cpu], 4)  # a list names the workers
    assert cpu_workers([cuda, cuda], 4) == ([cuda, cuda], None)  # GPUs: one worker each, threads left alone
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert cpu_workers([cpu], 0) == ([cpu], None)
    assert cpu_workers([cpu], 2) == ([cpu, cpu], 1)


def test_the_run_leaves_torch_threads_as_it_found_them(tiny_model, room_corner):
    threads = torch.get_num_threads()
    seen = []
    config = small_config(iterations=1).updated(cpu_workers=2)
    result = reconstruct(room_corner, config, model=tiny_model,
                         progress=lambda stage, done, total: seen.append(torch.get_num_threads()))
    assert result.stats.device == "cpu,cpu" and torch.get_num_threads() == threads
    assert max(1, threads // 2) in seen  # the jobs ran on a share of the threads
    stop = threading.Event()
    stop.set()
    with pytest.raises(ReconstructionCancelled):
        reconstruct(room_corner, config, model=tiny_model, cancel=stop)
    assert torch.get_num_threads() == threads
