"""Configuration dataclasses, profiles and their validation."""
import pytest

from sa_convonet_ros.config import ModelConfig, ReconstructionConfig, get_profile


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
