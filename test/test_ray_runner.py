"""The windows on Ray workers (distributed.py): the same mesh as one process; what travels; the errors."""
import sys
import threading
import time

import numpy as np
import pytest
import torch

from sa_convonet_ros import ray_runner
from sa_convonet_ros.config import ModelConfig, get_profile
from sa_convonet_ros.errors import ReconstructionCancelled, ReconstructionError
from sa_convonet_ros.meshing import EMPTY_LOGIT
from sa_convonet_ros.model import ConvONet
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.planning import plan_windows
from sa_convonet_ros.points import prepare_points
from sa_convonet_ros.ray_runner import batch_input, connect, pack_block, unpack_block
from sa_convonet_ros.synthetic import generate_room, simulate_scans
from sa_convonet_ros.window_batch import ClearancePlanes


@pytest.fixture(scope="module")
def tiny_model():
    """A small random network: its weights must reach the workers as they are (no file involved)."""
    torch.manual_seed(0)
    return ConvONet(ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=8, unet_levels=2, unet_base_channels=8)).eval()


@pytest.fixture(scope="module")
def corner():
    """A sparse scan of a 1.6 x 1.6 m corner of a generated room: a few batches of a few windows."""
    scene = generate_room(seed=3)
    points = simulate_scans(scene, "sparse", seed=0)[0].astype(np.float64)
    return points[np.all(points[:, :2] <= scene.bounds[0][:2] + 1.6, axis=1)]


def small_config(**top):
    return get_profile("fast").updated(
        optimization={"iterations": 8, "surface_samples": 256, "off_surface_samples": 128, "window_batch": 4},
        meshing={"voxel_size": 0.04}, windows={"window_size": 0.4, "margin": 0.1}, device="cpu", **top)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray runtime of 2 CPUs for the module (starting one takes seconds)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install sa_convonet_ros[ray]")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray_runner.release_workers()
    ray.shutdown()


def test_a_packed_block_comes_back_exactly():
    rng = np.random.default_rng(0)
    block = np.full((5, 6, 7), EMPTY_LOGIT, dtype=np.float32)
    band = rng.random(block.shape) < 0.3
    block[band] = rng.normal(size=int(band.sum())).astype(np.float32)
    block[0, 0, 0] = -0.0
    packed = pack_block(block)
    assert packed.values.size == int(band.sum()) + 1 and packed.nbytes < block.nbytes / 2
    again = unpack_block(packed)
    assert again.dtype == np.float32 and np.array_equal(again.view(np.uint32), block.view(np.uint32))


def test_a_job_travels_with_only_its_windows_points_in_their_order(corner):
    config = small_config().updated(windows={"loss_margin": 0.05})
    cloud = prepare_points(corner, config)
    every_third = np.arange(0, len(cloud.points), 3)
    normals = np.random.default_rng(0).normal(size=(len(every_third), 3)).astype(np.float32)
    plan = plan_windows(cloud.points, config, steps=8, clearance=ClearancePlanes(every_third, normals))
    batch = plan.batches[1]
    work = batch_input(plan, batch, cloud.points, cloud.encoder_points)
    assert (work.plan.loss_margin, work.plan.sweep_axis, work.plan.grid) == (0.05, plan.sweep_axis, plan.grid)
    assert work.batch.number == batch.number and work.batch.windows == list(range(len(batch.windows)))
    crops = [plan.windows.crop_points[w] for w in batch.windows]
    assert len(work.points) == len(np.unique(np.concatenate(crops))) < len(cloud.points)
    for slot, w in enumerate(batch.windows):
        assert np.array_equal(work.points[work.plan.windows.crop_points[slot]], cloud.points[crops[slot]])
        assert np.array_equal(work.plan.windows.index[slot], plan.windows.index[w])
        assert np.array_equal(work.plan.crop_normals(slot), plan.crop_normals(w))  # the planes travel along
    copies = 1 if cloud.encoder_points is None else 2  # the encoder may see the points as measured
    assert work.nbytes == 24 * copies * len(work.points) + 4 * sum(len(crop) for crop in crops)


def test_without_ray_installed_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ReconstructionError, match=r"Ray is not installed: pip install 'sa_convonet_ros\[ray\]'"):
        connect(small_config(ray_address="local"))


def test_an_unreachable_cluster_fails_at_once_before_any_work(monkeypatch, corner):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init must not be tried"))
    start = time.monotonic()
    with pytest.raises(ReconstructionError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        reconstruct(corner, small_config(ray_address="127.0.0.1:1"))
    assert time.monotonic() - start < ray_runner.CONNECT_TIMEOUT


def test_the_settings_are_checked():
    with pytest.raises(ValueError, match=r"ray_threads must be in \[1, 1024\]"):
        small_config(ray_threads=0)
    assert small_config(ray_address="local", ray_workers=2).ray_workers == 2


def test_ray_workers_give_the_single_process_mesh(local_ray, corner, tiny_model):
    """2 workers of 1 torch thread against this process at 1 thread: the same batches, seeds and points, so the
    same mesh, bit for bit (also at 2 threads here: the CPU kernels reduce the same way)."""
    config = small_config()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = reconstruct(corner, config, model=tiny_model)
    finally:
        torch.set_num_threads(threads)
    reports = []
    on_ray = reconstruct(corner, config.updated(ray_address="local", ray_threads=1), model=tiny_model,
                         progress=lambda stage, done, total: reports.append((stage, done, total)))
    assert alone.stats.batches_run >= 3 and len(alone.mesh.faces) > 500
    assert np.array_equal(on_ray.mesh.vertices, alone.mesh.vertices)
    assert np.array_equal(on_ray.mesh.faces, alone.mesh.faces)
    assert on_ray.stats.steps_run == alone.stats.steps_run and on_ray.stats.final_loss == alone.stats.final_loss
    assert on_ray.stats.device.startswith("local Ray runtime: 2 worker(s) x 1 thread(s)")
    traffic = on_ray.stats.distributed
    assert traffic["workers_started"] == 2
    assert traffic["batches"] == alone.stats.batches_run and traffic["windows"] == alone.stats.windows_run
    assert 0 < traffic["bytes_out"] < traffic["bytes_out_dense"] and traffic["bytes_in"] > 0
    fields = [done for stage, done, _ in reports if stage == "field"]
    assert fields == list(range(1, alone.stats.batches_run + 1))  # per batch, in order
    assert ("optimize", alone.stats.steps_run, alone.stats.steps_run) in reports


def test_cancel_and_deadline_reach_the_workers(local_ray, corner, tiny_model):
    config = small_config(ray_address="local")
    cancel = threading.Event()

    def cancel_after_the_first_job(stage, done, total):
        if stage == "field":
            cancel.set()

    with pytest.raises(ReconstructionCancelled):
        reconstruct(corner, config, model=tiny_model, cancel=cancel, progress=cancel_after_the_first_job)
    # a deadline already past: every batch feed-forward, out of time, as in one process
    past = time.monotonic() - 1.0
    alone = reconstruct(corner, small_config(), model=tiny_model, deadline=past)
    on_ray = reconstruct(corner, config, model=tiny_model, deadline=past)
    again = reconstruct(corner, config, model=tiny_model, iterations=0)  # the same workers, kept up
    assert on_ray.stats.distributed["workers_started"] == 2 and again.stats.distributed["workers_started"] == 0
    assert on_ray.stats.out_of_time and on_ray.stats.steps_run == 0 == alone.stats.steps_run
    assert np.array_equal(on_ray.mesh.vertices, alone.mesh.vertices)
