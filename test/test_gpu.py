"""The CUDA path gives what the CPU path gives. Runs where CUDA exists; skipped elsewhere."""
import numpy as np
import pytest
import torch

from sa_convonet_ros.config import ModelConfig, OptimizationConfig, get_profile
from sa_convonet_ros.model import ConvONet
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
