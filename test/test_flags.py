"""Command-line flags generated from the config dataclasses."""
import argparse
import dataclasses

from sa_convonet_ros.config import SECTIONS, ModelConfig, ReconstructionConfig
from sa_convonet_ros.flags import add_flags, flag, given


def _parser():
    parser = argparse.ArgumentParser()
    add_flags(parser, ReconstructionConfig, skip=("profile",))
    return parser


def test_every_setting_of_every_section_has_a_flag():
    options = {option for action in _parser()._actions for option in action.option_strings}
    for section in SECTIONS.values():
        for item in dataclasses.fields(section):
            assert flag(item.name) in options, item.name
    assert {"--device", "--checkpoint"} <= options and "--profile" not in options


def test_only_the_flags_given_are_collected_in_their_sections():
    args = _parser().parse_args(["--voxel-size", "0.05", "--no-freeze-norm", "--optimized-parts", "all",
                                 "--device", "cpu"])
    assert given(args, ReconstructionConfig) == {
        "optimization": {"optimized_parts": "all", "freeze_norm": False},
        "meshing": {"voxel_size": 0.05}, "device": "cpu"}
    assert given(_parser().parse_args([]), ReconstructionConfig) == {}


def test_defaults_in_the_help_and_tuples():
    @dataclasses.dataclass
    class Example:
        sizes: tuple[int, int] = (1, 2)
        scales: tuple[float, ...] = (1.0,)
        model: ModelConfig = dataclasses.field(default_factory=ModelConfig)

    parser = argparse.ArgumentParser()
    add_flags(parser, Example, Example())
    assert "(default: 32)" in parser.format_help() and "default: (1, 2)" in parser.format_help()
    args = parser.parse_args(["--sizes", "3", "4", "--c-dim", "8"])
    assert given(args, Example) == {"sizes": (3, 4), "model": {"c_dim": 8}}
    assert given(parser.parse_args(["--scales", "1", "2", "3"]), Example) == {"scales": (1.0, 2.0, 3.0)}
