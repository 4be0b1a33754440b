"""The CUDA path gives what the CPU path gives. Runs where CUDA exists; skipped elsewhere."""
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from sa_convonet_ros.config import ModelConfig, OptimizationConfig, get_profile
from sa_convonet_ros.model import ConvONet, load_model
from sa_convonet_ros.optimize import optimize_windows
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.window_batch import WindowBatch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = ModelConfig(c_dim=16, hidden_dim=16, grid_resolution=16, unet_levels=2, unet_base_channels=8)


def cloud(seed):
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-0.4, 0.4, (2000, 2)), 0.1 * rng.standard_normal(2000)].astype(np.float32)


@pytest.mark.parametrize("parts", ["decoder", "all"])
def test_batched_optimisation_matches_the_cpu(parts):
    config = OptimizationConfig(iterations=10, optimized_parts=parts, learning_rate=1e-3,
                                surface_samples=256, off_surface_samples=128)
    results = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = ConvONet(SMALL).to(device)
        batch = WindowBatch.from_arrays([cloud(0), cloud(1)], torch.device(device), 4000, np.random.default_rng(0))
        results[device] = optimize_windows(model, batch, config, seed=0).loss_history
    # the random streams differ between devices; the losses must still agree closely
    assert np.allclose(results["cpu"][0], results["cuda"][0], rtol=0.05)
    assert results["cuda"][-1] < results["cuda"][0]


def test_pipeline_runs_on_cuda():
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(0, 2, (20000, 2)), np.full(20000, 0.3)]
    torch.manual_seed(0)
    model = ConvONet(SMALL)
    config = get_profile("fast").updated(device="cuda", optimization={"iterations": 5})
    result = reconstruct(points, config, model=model)
    assert result.stats.device.startswith("cuda") and result.stats.faces > 0


def room_corner(n=30_000, seed=0):
    """A floor, two walls and a 0.4 m box on the floor, 1.6 m across: a few windows of the auto profile."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 1.6, (2, n))
    side = rng.integers(0, 4, n)
    box = np.c_[0.6 + 0.4 * rng.random(n), 0.6 + 0.4 * rng.random(n), 0.4 * rng.random(n)]
    points = np.select([side[:, None] == k for k in range(3)],
                       [np.c_[u, v, np.zeros(n)], np.c_[np.zeros(n), u, v], np.c_[u, np.zeros(n), v]], box)
    return points + rng.normal(0, 0.002, points.shape)


@pytest.mark.parametrize("iterations", [0, 30])
def test_the_gpu_mesh_is_the_cpu_mesh_of_the_same_scene(iterations):
    """The same scene, model and settings (fp32) on both devices. Feed-forward the meshes agree up to float
    rounding; optimised, the steps' random draws come from each device's own generator, so the surfaces agree
    within a fifth of a grid cell on average and half a cell for 95 % of the vertices."""
    points = room_corner()
    meshes = {}
    for device in ("cpu", "cuda"):
        config = get_profile("auto:gpu").updated(device=device, optimization={"precision": "fp32"})
        meshes[device] = reconstruct(points, config, model=load_model(device=device), iterations=iterations)
    voxel = meshes["cpu"].stats.voxel_size
    assert meshes["cuda"].stats.device.startswith("cuda") and meshes["cuda"].stats.voxel_size == voxel
    cpu, gpu = (np.asarray(meshes[d].mesh.vertices) for d in ("cpu", "cuda"))
    gaps = np.concatenate([cKDTree(cpu).query(gpu)[0], cKDTree(gpu).query(cpu)[0]])
    faces = [meshes[d].stats.faces for d in ("cpu", "cuda")]
    if iterations == 0:
        assert abs(faces[0] - faces[1]) <= 0.005 * faces[0]
        assert np.quantile(gaps, 0.99) < 1e-3 * voxel
    else:
        assert abs(faces[0] - faces[1]) <= 0.05 * faces[0]
        assert gaps.mean() < 0.2 * voxel and np.quantile(gaps, 0.95) < 0.5 * voxel


def test_bf16_and_tf32_keep_the_mesh_of_float32():
    pytest.importorskip("open3d", reason="the exact mesh metrics need Open3D (absent on the device-round machine)")
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(0, 2, (20000, 2)), np.full(20000, 0.3)]
    torch.manual_seed(0)
    model = ConvONet(SMALL)
    meshes = {}
    for precision in ("fp32", "tf32", "bf16"):
        config = get_profile("fast").updated(device="cuda", optimization={"iterations": 20, "precision": precision})
        meshes[precision] = reconstruct(points, config, model=model).mesh
    from sa_convonet_ros.metrics import evaluate_mesh, sample_mesh

    reference = sample_mesh(meshes["fp32"], 50_000)
    for precision in ("tf32", "bf16"):
        scores = evaluate_mesh(meshes[precision], *reference, taus=(0.01,))
        assert scores["fscore@0.01"] > 0.95, precision


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_auto_spreads_windows_over_every_gpu():
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(0, 3, (30000, 2)), np.full(30000, 0.3)]
    torch.manual_seed(0)
    model = ConvONet(SMALL)
    config = get_profile("fast").updated(device="auto", optimization={"iterations": 5, "window_batch": 2})
    result = reconstruct(points, config, model=model)
    assert result.stats.device.count("cuda") == torch.cuda.device_count() and result.stats.faces > 0


def test_auto_resolves_to_the_gpu_settings_and_the_run_says_so():
    config = get_profile("auto")
    assert config.profile == "auto:gpu" and config.meshing.voxel_size == get_profile("auto:gpu").meshing.voxel_size
    plane = np.c_[np.random.default_rng(0).uniform(-0.3, 0.3, (3000, 2)), np.zeros(3000)]
    result = reconstruct(plane, config.updated(optimization={"iterations": 2}))
    assert result.stats.profile == "auto:gpu" and result.stats.device.startswith("cuda")
