"""The errors of the reconstruction core: bad input or settings, and cancellation.

Callers tell a request that cannot succeed (`ReconstructionError`, `SettingError`) from one that was
stopped on purpose (`ReconstructionCancelled`); anything else is a bug.
"""
from __future__ import annotations

from typing import Any, Callable

_NO_VALUE = object()


class ReconstructionError(ValueError):
    """The input cannot be reconstructed; the message says why."""


class ReconstructionCancelled(RuntimeError):
    """Raised when a reconstruction is cancelled through its cancel event."""


class SettingError(ValueError):
    """A setting breaks its rule, e.g. `meshing.voxel_size must be > 0, got -1`.

    `setting` is the dotted path of the setting in its configuration; `rule` may name other settings
    as `{0}`, `{1}`, ... (their paths in `related`), so that `describe` can put every setting under the
    name the user typed it with: a ROS parameter, a command-line flag, a YAML key.
    """

    def __init__(self, setting: str, rule: str, value: Any = _NO_VALUE, related: tuple[str, ...] = ()):
        self.setting, self.rule, self.value, self.related = setting, rule, value, tuple(related)
        super().__init__(self.describe())

    def describe(self, name: Callable[[str], str] = str, suffix: str = "") -> str:
        """The message with every setting named by `name(path)`; `suffix` follows the rule."""
        rule = self.rule.format(*(name(path) for path in self.related))
        got = "" if self.value is _NO_VALUE else f", got {self.value!r}"
        return f"{name(self.setting)} must be {rule}{suffix}{got}"

    def within(self, section: str) -> "SettingError":
        """The same error with every path prefixed by `section.` (a setting of a nested section)."""
        return SettingError(f"{section}.{self.setting}", self.rule, self.value,
                            tuple(f"{section}.{path}" for path in self.related))
