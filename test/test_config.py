"""Configuration dataclasses, profiles, their declarations and their validation."""
import dataclasses
import re

import pytest

from sa_convonet_ros.config import (
    MeshingConfig,
    ModelConfig,
    OptimizationConfig,
    Range,
    ReconstructionConfig,
    WindowConfig,
    get_profile,
)
from sa_convonet_ros.errors import SettingError


def test_profiles_are_complete_and_distinct():
    fast, paper, feedforward = get_profile("fast"), get_profile("paper"), get_profile("feedforward")
    assert fast.profile == "fast" and paper.profile == "paper"
    assert paper.optimization.iterations == 720 and paper.optimization.optimized_parts == "all"
    assert paper.optimization.learning_rate == 3e-5 and paper.optimization.decay_factor == 0.3
    assert paper.optimization.sigma == 0.1
    assert fast.optimization.optimized_parts == "decoder"
    assert feedforward.optimization.iterations == 0
    assert get_profile("fast") is not get_profile("fast")  # fresh copies
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("slow")


def test_round_trip_and_updates():
    config = get_profile("fast")
    again = ReconstructionConfig.from_dict(config.to_dict())
    assert again == config
    changed = config.updated(optimization={"iterations": 7}, device="cpu")
    assert changed.optimization.iterations == 7 and changed.device == "cpu"
    assert changed.optimization.learning_rate == config.optimization.learning_rate
    assert config.optimization.iterations != 7  # the original is untouched


@pytest.mark.parametrize("values, message", [
    ({"optimization": {"iterations": -1}}, "iterations"),
    ({"optimization": {"optimized_parts": "head"}}, "optimized_parts"),
    ({"optimization": {"learning_rate": 0}}, "learning_rate"),
    ({"windows": {"window_size": -1}}, "window_size"),
    ({"windows": {"window_size": 0.5, "margin": 0.6}}, "margin"),
    ({"meshing": {"voxel_size": 0}}, "voxel_size"),
    ({"meshing": {"threshold": 1.5}}, "threshold"),
    ({"meshing": {"voxel_sise": 0.1}}, "unknown key"),
    ({"colour": "red"}, "unknown configuration key"),
])
def test_nonsense_is_rejected_with_a_clear_message(values, message):
    with pytest.raises(ValueError, match=message):
        get_profile("fast").updated(**values)


def test_model_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(grid_resolution=30, unet_levels=3)
    with pytest.raises(ValueError, match="c_dim"):
        ModelConfig(c_dim=0)


SECTIONS = (ModelConfig, OptimizationConfig, WindowConfig, MeshingConfig)


@pytest.mark.parametrize("cls", SECTIONS)
def test_every_setting_is_declared_with_its_help(cls):
    for item in dataclasses.fields(cls):
        assert len(item.metadata["help"]) > 10, f"{cls.__name__}.{item.name}"


@pytest.mark.parametrize("cls", SECTIONS)
def test_the_defaults_lie_in_their_ranges(cls):
    for item in dataclasses.fields(cls):
        limits = item.metadata["range"]
        if limits is not None and item.default is not None:
            assert item.default in limits, f"{cls.__name__}.{item.name}"


def test_ranges():
    assert 0.5 in Range(0, 1, open_low=True) and 0 not in Range(0, 1, open_low=True) and 1 in Range(0, 1)
    assert float("nan") not in Range(0) and 5 in Range(0) and -1 not in Range(0)
    assert str(Range(0, open_low=True)) == "> 0" and str(Range(1)) == ">= 1"
    assert str(Range(0, 1, open_low=True, open_high=True)) == "in (0, 1)" and str(Range(0, 1)) == "in [0, 1]"


def test_the_error_names_the_setting_in_its_section():
    with pytest.raises(SettingError) as caught:
        get_profile("fast").updated(meshing={"voxel_size": -0.5})
    assert caught.value.setting == "meshing.voxel_size" and caught.value.value == -0.5
    assert str(caught.value) == "meshing.voxel_size must be in [0.001, 10], got -0.5"
    with pytest.raises(SettingError, match=r"optimization.decay_factor must be in \(0, 1\]"):
        get_profile("fast").updated(optimization={"decay_factor": 1.5})


def test_none_can_be_said_with_zero_or_empty():
    config = get_profile("fast").updated(meshing={"trim_distance": 0.0}, checkpoint=" ")
    assert config.meshing.trim_distance is None and config.checkpoint is None


def test_auto_is_the_best_the_device_affords(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with a GPU
    cpu, gpu = get_profile("auto", device="cpu"), get_profile("auto", device="cuda:0")
    assert cpu.profile == "auto:cpu" and gpu.profile == "auto:gpu"
    assert gpu.meshing.voxel_size <= cpu.meshing.voxel_size < get_profile("fast").meshing.voxel_size
    assert gpu.optimization.iterations > cpu.optimization.iterations
    assert gpu.optimization.surface_samples > cpu.optimization.surface_samples
    assert cpu.denoise.denoise and gpu.denoise.denoise
    paper = get_profile("paper")  # the published method's mesh stays as marched
    assert cpu.meshing.smooth_iterations == gpu.meshing.smooth_iterations > 0 == paper.meshing.smooth_iterations
    assert cpu.meshing.grid_per_spacing > 0 == gpu.meshing.grid_per_spacing  # only a CPU coarsens sparse maps
    assert get_profile("auto:gpu") == gpu  # a run's resolved profile can be asked for by name
    with pytest.raises(ValueError, match="choose one of auto, fast, paper, feedforward"):
        get_profile("slow")


@pytest.mark.parametrize("section, values, message", [
    ("meshing", {"voxel_size": 1e-6}, "meshing.voxel_size must be in [0.001, 10]"),
    ("meshing", {"voxel_size": 0.004}, "meshing.voxel_size must be at least windows.window_size / 256"),
    ("optimization", {"window_batch": 100_000}, "optimization.window_batch must be in [1, 256]"),
    ("optimization", {"iterations": 4_000_000_000}, "optimization.iterations must be in [0, 1,000,000]"),
    ("windows", {"window_size": 1000.0}, "windows.window_size must be in (0, 100]"),
])
def test_sizes_that_would_not_fit_in_memory_are_refused_when_set(section, values, message):
    with pytest.raises(SettingError, match=re.escape(message)):
        get_profile("fast").updated(**{section: values})
