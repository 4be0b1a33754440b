"""The core's errors: what they say, and under which names."""
import pytest

from sa_convonet_ros.errors import ReconstructionCancelled, ReconstructionError, SettingError


def test_a_setting_error_speaks_the_users_names():
    error = SettingError("windows.margin", "smaller than {0}", 2.0, ("windows.window_size",))
    assert str(error) == "windows.margin must be smaller than windows.window_size, got 2.0"
    to_flag = {"windows.margin": "--margin", "windows.window_size": "--window-size"}.get
    assert error.describe(to_flag) == "--margin must be smaller than --window-size, got 2.0"
    assert error.describe(lambda path: path.split(".")[-1], " (or -1)") == \
        "margin must be smaller than window_size (or -1), got 2.0"


def test_within_a_section():
    error = SettingError("margin", "smaller than {0}", 2.0, ("window_size",)).within("windows")
    assert (error.setting, error.related) == ("windows.margin", ("windows.window_size",))
    assert str(SettingError("precision", "one of 'fp32', 'bf16'")) == "precision must be one of 'fp32', 'bf16'"


def test_failures_and_cancellation_are_told_apart():
    assert issubclass(ReconstructionError, ValueError) and issubclass(SettingError, ValueError)
    assert not issubclass(ReconstructionCancelled, ValueError)
    with pytest.raises(ValueError):
        raise SettingError("iterations", ">= 0", -1)
