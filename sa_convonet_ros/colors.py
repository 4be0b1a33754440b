"""How meshes are coloured: the colour modes of the RViz markers, and one colour ramp for heights, shared by
the PNG previews and the markers."""
from __future__ import annotations

import numpy as np

# rgb: the input's colours where it has them, else height; confidence: how close each vertex lies to a point.
COLOR_MODES = ("rgb", "height", "uniform", "confidence")
# Anchor colours of the ramp (dark blue -> cyan -> green -> yellow -> red), evenly spaced over [0, 1];
# chosen by eye to stay readable on RViz's dark background as on the previews' white one.
_RAMP_ANCHORS = np.array([
    [0.19, 0.07, 0.35],
    [0.16, 0.40, 0.95],
    [0.10, 0.80, 0.85],
    [0.35, 0.95, 0.35],
    [0.95, 0.85, 0.15],
    [0.95, 0.40, 0.10],
    [0.60, 0.05, 0.05],
], dtype=np.float64)


def height_colors(z) -> np.ndarray:
    """(N, 3) float32 RGB in [0, 1]: the ramp spread over the 1-99 % range of the heights `z`, so that a
    few outliers (a lamp, a stray point) do not squeeze everything else into one colour."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    finite = z[np.isfinite(z)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 0.0)
    # A flat mesh gets the middle of the ramp rather than a division by zero.
    t = np.clip((z - low) / (high - low), 0.0, 1.0) if high > low else np.full_like(z, 0.5)
    t = np.nan_to_num(t, nan=0.5)
    stops = np.linspace(0.0, 1.0, len(_RAMP_ANCHORS))
    return np.stack([np.interp(t, stops, _RAMP_ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.float32)
