"""The node's parameter descriptors: descriptions and ROS ranges made from the settings."""
import math

from sa_convonet_ros.ros.parameters import descriptor
from sa_convonet_ros.ros.settings import OVERRIDES, PARAMETERS, PROFILE_VALUE

DEFAULTS = {name: default for name, (default, _, _) in PARAMETERS.items()}


def test_overrides_default_to_the_profiles_value_within_their_ranges():
    for name in OVERRIDES:
        spec = descriptor(name)
        assert DEFAULTS[name] == PROFILE_VALUE and "-1 = the profile's value" in spec.description
        if isinstance(DEFAULTS[name], float):
            (limits,) = spec.floating_point_range
        else:
            (limits,) = spec.integer_range
        assert limits.from_value == PROFILE_VALUE, name
    (threshold,) = descriptor("threshold").floating_point_range
    assert (threshold.from_value, threshold.to_value) == (-1.0, 1.0)
    assert descriptor("threshold").additional_constraints == "in (0, 1), or -1 for the profile's value"
    (voxel,) = descriptor("voxel_size").floating_point_range
    assert (voxel.from_value, voxel.to_value) == (-1.0, 10.0)  # ROS refuses 1e3; the settings refuse 1e-6
    (auto_period,) = descriptor("auto_min_period").floating_point_range
    assert math.isinf(auto_period.to_value)
    (points,) = descriptor("max_points").integer_range
    assert (points.from_value, points.to_value) == (0, 1_000_000_000)
    assert descriptor("color_mode").additional_constraints == "one of rgb, height, uniform, confidence"
    assert descriptor("input_topic").read_only and not descriptor("voxel_size").read_only
