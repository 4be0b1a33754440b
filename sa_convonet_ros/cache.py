"""What earlier reconstructions computed per window, and the fingerprints that say when it still applies.

A window's field block is reused as it is when its input points and the settings did not change; its
adapted state warm-starts the window when only its points changed.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .config import ReconstructionConfig
from .model import ConvONet
from .optimize import WindowState

WindowKey = tuple[int, int, int]


class WindowCache:
    """Field blocks and adapted states of windows from earlier runs, by window position."""

    def __init__(self, max_state_bytes: int = 1 << 30) -> None:
        self._entries: dict[WindowKey, tuple[str, np.ndarray]] = {}
        self._states: dict[WindowKey, tuple[str, WindowState]] = {}
        self.max_state_bytes = max_state_bytes  # the least recently stored states go first beyond this
        self._state_bytes = 0
        self.noise = None  # the map's measured noise (NoiseEstimate): a growing map keeps being denoised alike

    def get_state(self, key: WindowKey, settings_id: str) -> WindowState | None:
        entry = self._states.get(key)
        return entry[1] if entry is not None and entry[0] == settings_id else None

    def put_state(self, key: WindowKey, settings_id: str, state: WindowState) -> None:
        self._drop_state(key)
        self._states[key] = (settings_id, state)
        self._state_bytes += _state_size(state)
        while self._state_bytes > self.max_state_bytes and self._states:
            self._drop_state(next(iter(self._states)))

    def _drop_state(self, key: WindowKey) -> None:
        entry = self._states.pop(key, None)
        if entry is not None:
            self._state_bytes -= _state_size(entry[1])

    def get(self, key: WindowKey, fingerprint: str) -> np.ndarray | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == fingerprint else None

    def put(self, key: WindowKey, fingerprint: str, block: np.ndarray) -> None:
        self._entries[key] = (fingerprint, block)

    def __len__(self) -> int:
        return len(self._entries)


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
    settings.pop("device", None)
    return hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()


def window_fingerprint(points: np.ndarray, settings_id: str) -> str:
    digest = hashlib.sha1(settings_id.encode())
    digest.update(np.ascontiguousarray(np.round(points, 4)).tobytes())
    return digest.hexdigest()
