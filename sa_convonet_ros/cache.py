"""What earlier reconstructions computed per window, and the fingerprints that say when it still applies.

A window's field block is reused as it is when its input points and the settings did not change; its
adapted state warm-starts the window when only its points changed.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Generic, TypeVar

import numpy as np

from .config import ReconstructionConfig
from .model import ConvONet
from .optimize import WindowState

WindowKey = tuple[int, int, int]
V = TypeVar("V")


class _BoundedEntries(Generic[V]):
    """Values by window key, each stored with the fingerprint it is valid for, within a byte budget: beyond
    it the least recently used entries (stored or read) are dropped first."""

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        self.max_bytes, self._size = max_bytes, size
        self._entries: dict[WindowKey, tuple[str, V]] = {}
        self.bytes = 0

    def get(self, key: WindowKey, fingerprint: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != fingerprint:
            return None
        self._entries[key] = self._entries.pop(key)  # now the most recently used
        return entry[1]

    def put(self, key: WindowKey, fingerprint: str, value: V) -> None:
        self._drop(key)
        self._entries[key] = (fingerprint, value)
        self.bytes += self._size(value)
        while self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: WindowKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= self._size(entry[1])

    def __len__(self) -> int:
        return len(self._entries)


class WindowCache:
    """Field blocks and adapted states of windows from earlier runs, by window position.

    Both are bounded in bytes (the least recently used go first): a dropped block or state only means that
    its window is computed again, cold, the next time. A block is `cells`^3 float32 values (0.86 MB with the
    `fast` profile's 1.2 m windows of 2 cm voxels, 6.9 MB at the `paper` profile's 1 cm), so the default
    2 GiB keeps about 2,400 `fast` windows, a floor of roughly 1,000 m^2; a state holds the adapted decoder
    and, with `optimize_features`, how far its feature grid moved (float16, about 17 MB for the shipped model).
    """

    def __init__(self, max_state_bytes: int = 1 << 30, max_block_bytes: int = 2 << 30) -> None:
        self._blocks = _BoundedEntries[np.ndarray](max_block_bytes, lambda block: block.nbytes)
        self._states = _BoundedEntries[WindowState](max_state_bytes, _state_size)
        self.noise = None  # the map's measured noise (NoiseEstimate): a growing map keeps being denoised alike

    def get_state(self, key: WindowKey, settings_id: str) -> WindowState | None:
        return self._states.get(key, settings_id)

    def put_state(self, key: WindowKey, settings_id: str, state: WindowState) -> None:
        self._states.put(key, settings_id, state)

    def get(self, key: WindowKey, fingerprint: str) -> np.ndarray | None:
        """The field block of the window, if it was computed from points and settings of this fingerprint."""
        return self._blocks.get(key, fingerprint)

    def put(self, key: WindowKey, fingerprint: str, block: np.ndarray) -> None:
        self._blocks.put(key, fingerprint, block)

    def __len__(self) -> int:
        return len(self._blocks)


def _state_size(state: WindowState) -> int:
    tensors = list(state.parameters.values()) + ([state.feature_delta] if state.feature_delta is not None else [])
    return sum(t.numel() * t.element_size() for t in tensors)


def model_fingerprint(model: ConvONet) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().sum().cpu().numpy().tobytes())
    return digest.hexdigest()


def settings_fingerprint(config: ReconstructionConfig, steps: int, model_id: str) -> str:
    """The same for two runs whose windows would come out the same from the same points."""
    settings = {**config.to_dict(), "steps": steps, "model": model_id}
    for where in ("device", "cpu_workers", "ray_address", "ray_workers", "ray_threads"):  # where it runs
        settings.pop(where, None)
    return hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()


def window_fingerprint(points: np.ndarray, settings_id: str) -> str:
    digest = hashlib.sha1(settings_id.encode())
    digest.update(np.ascontiguousarray(np.round(points, 4)).tobytes())
    return digest.hexdigest()
