"""The node's settings: validated by the settings' own dataclasses, errors in the parameters' names."""
import pytest

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.ros.settings import PARAMETERS, settings_from_parameters

DEFAULTS = {name: default for name, (default, _, _) in PARAMETERS.items()}


def test_defaults_give_the_profile():
    settings = settings_from_parameters(DEFAULTS)
    assert settings.config.updated(device="auto") == get_profile("auto", device="cpu")
    assert settings.options.max_points == 0 and settings.checkpoint is None


@pytest.mark.parametrize("change, message", [
    ({"voxel_size": -5.0}, "parameter voxel_size must be in [0.001, 10] (or -1 for the profile's value), got -5.0"),
    ({"margin": 5.0}, "parameter margin must be smaller than window_size (or -1 for the profile's value), got 5.0"),
    ({"window_batch": 0}, "parameter window_batch must be in [1, 256] (or -1 for the profile's value), got 0"),
    ({"profile": "slow"}, "parameter profile must be one of 'auto', 'fast', 'paper', 'feedforward', got 'slow'"),
    ({"max_points": 10}, "parameter max_points must be 0 (no cap) or >= 1000, got 10"),
    ({"voxel_size": 1e-6}, "parameter voxel_size must be in [0.001, 10] (or -1 for the profile's value), got 1e-06"),
    ({"auto_min_period": -1.0}, "parameter auto_min_period must be >= 0, got -1.0"),
    ({"device": "tpu"}, "parameter device: invalid device 'tpu'"),
    ({"iterations": 20_000}, "parameter iterations must be at most max_iterations (10000), got 20000"),
    ({"max_iterations": 500, "profile": "paper"}, "parameter iterations must be at most max_iterations (500), got 720"),
    ({"max_seconds": -2.0}, "parameter max_seconds must be >= 0, got -2.0"),
    ({"ray_threads": 0}, "parameter ray_threads must be in [1, 1024], got 0"),
    ({"ray_workers": -1}, "parameter ray_workers must be in [0, 100,000], got -1"),
    ({"cpu_workers": -1}, "parameter cpu_workers must be in [0, 256], got -1"),
])
def test_invalid_values_are_named_by_their_parameter(change, message):
    with pytest.raises(ValueError) as caught:
        settings_from_parameters({**DEFAULTS, **change})
    assert str(caught.value).startswith(message)


def test_values_set_the_configuration():
    settings = settings_from_parameters({**DEFAULTS, "voxel_size": 0.05, "trim_distance": 0.0, "iterations": 3,
                                         "device": "cpu", "checkpoint": " model.pt ", "profile": "paper"})
    config = settings.config
    assert config.profile == "paper" and config.meshing.voxel_size == 0.05 and config.meshing.trim_distance is None
    assert config.optimization.iterations == 3 and config.optimization.learning_rate == 3e-5
    assert settings.device == "cpu" and settings.checkpoint == "model.pt"


def test_the_ray_parameters_set_where_the_windows_run():
    assert settings_from_parameters(DEFAULTS).config.ray_address == ""
    values = {**DEFAULTS, "ray_address": "head:6379", "ray_workers": 8, "ray_threads": 2}
    config = settings_from_parameters(values).config
    assert (config.ray_address, config.ray_workers, config.ray_threads) == ("head:6379", 8, 2)
    assert settings_from_parameters({**DEFAULTS, "cpu_workers": 3}).config.cpu_workers == 3
