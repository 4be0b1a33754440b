"""A window's occupancy field on its block of the global grid: every grid point, or coarse to fine.

Marching cubes needs the exact field only where the surface can pass. Coarse to fine decodes every second
grid point first; a coarse cell whose corners all lie farther than `margin` logits from the threshold, on
the same side, cannot hold the surface (unless the field bends by more than `margin` inside one cell), so
its grid points take the trilinear interpolation of its corners. The grid points of every other coarse
cell are decoded exactly, and so are the block's outer layers and both ends of every grid edge the surface
crosses: marching cubes then sees exactly the values a full decode gives wherever it places a vertex. In
the band of a 1 cm grid (13 layers around the points) this decodes about half of the points.
The field the UCE loss leaves on a wall seen from afar dips to the level in a valley narrower than two
cells, which bends by more than any margin that saves decodes: holes opened there, so every profile
decodes every grid point (docs/decisions.md).

`lift_crests` then gives a surface to thin parts whose field stops just short of the level.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .meshing import EMPTY_LOGIT
from .windows import cell_corners, grow_marks, marked_indices

Decoder = Callable[[np.ndarray], np.ndarray]  # grid indices [M, 3] -> logits [M]


def evaluate_block(decode: Decoder, mask: np.ndarray, threshold_logit: float, margin: float = 0.0) -> np.ndarray:
    """Logits of a block's grid points where `mask` (cells,)*3 is set (EMPTY_LOGIT elsewhere): every one
    decoded when `margin` is 0, else coarse to fine (module doc). `decode` takes grid indices, which may
    reach one layer past the block."""
    block = np.full(mask.shape, EMPTY_LOGIT, dtype=np.float32)
    if margin <= 0:
        block[mask] = _decode_at(decode, marked_indices(mask))
        return _unlike_empty(block, mask)
    coarse = _coarse_field(decode, mask)
    block[mask] = _upsample(coarse)[tuple(slice(0, n) for n in mask.shape)][mask]
    exact = mask & (_cells_near_surface(coarse, threshold_logit, margin, mask.shape) | _faces(mask.shape))
    block[exact] = _decode_at(decode, marked_indices(exact))
    # Marching cubes places a vertex from both ends of an edge: decode the interpolated ends too.
    ends = mask & ~exact & _edge_ends_across(block, threshold_logit)
    block[ends] = _decode_at(decode, marked_indices(ends))
    return _unlike_empty(block, mask)


def _unlike_empty(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The block, with an evaluated value that happens to equal EMPTY_LOGIT moved by one float32 step: the
    mesher tells the grid points nobody evaluated by that value."""
    block[mask & (block == EMPTY_LOGIT)] = np.nextafter(np.float32(EMPTY_LOGIT), np.float32(0))
    return block


def _decode_at(decode: Decoder, index: np.ndarray) -> np.ndarray:
    return decode(index) if len(index) else np.zeros(0, dtype=np.float32)


def _coarse_field(decode: Decoder, mask: np.ndarray) -> np.ndarray:
    """Logits at every second grid point (one more layer past the block's end where needed), decoded where a
    coarse cell holds a masked grid point; EMPTY_LOGIT elsewhere."""
    shape = tuple(n // 2 + 1 for n in mask.shape)  # coarse point c sits on grid point 2c; the last covers cells - 1
    needed = cell_corners(_coarse_cells_holding(mask, shape))
    coarse = np.full(shape, EMPTY_LOGIT, dtype=np.float32)
    coarse_index = marked_indices(needed)
    coarse[needed] = _decode_at(decode, 2 * coarse_index)
    return coarse


def _coarse_cells_holding(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """Which coarse cells (grid points 2c and 2c + 1 on each axis) hold a marked grid point."""
    padded = np.zeros(tuple(2 * n for n in shape), dtype=bool)
    padded[tuple(slice(0, n) for n in mask.shape)] = mask
    cells = np.zeros(shape, dtype=bool)
    for offset in np.ndindex(2, 2, 2):  # ORs of strided views: 20x faster than the marks' indices
        cells |= padded[tuple(slice(o, None, 2) for o in offset)]
    return cells


def _upsample(coarse: np.ndarray) -> np.ndarray:
    """Trilinear interpolation onto the grid twice as fine (2 n - 1 points per axis): linear on each axis."""
    out = coarse
    for axis in range(3):
        n = out.shape[axis]
        shape = list(out.shape)
        shape[axis] = 2 * n - 1
        fine = np.empty(shape, dtype=np.float32)
        even = [slice(None)] * 3
        even[axis] = slice(0, None, 2)
        odd = [slice(None)] * 3
        odd[axis] = slice(1, None, 2)
        fine[tuple(even)] = out
        fine[tuple(odd)] = 0.5 * (np.take(out, range(n - 1), axis=axis) + np.take(out, range(1, n), axis=axis))
        out = fine
    return out


def _cells_near_surface(coarse: np.ndarray, threshold_logit: float, margin: float, shape: tuple) -> np.ndarray:
    """Grid points (of `shape`) inside or on the border of a coarse cell whose corners come within `margin`
    of the threshold or lie on both sides of it."""
    offset = coarse - threshold_logit
    n = [size - 1 for size in coarse.shape]  # cell c spans coarse points c and c + 1
    corners = [offset[a:a + n[0], b:b + n[1], c:c + n[2]] for a, b, c in np.ndindex(2, 2, 2)]
    low, high = np.minimum.reduce(corners), np.maximum.reduce(corners)
    return _dilate_cells((low < margin) & (high > -margin), shape)


def _faces(shape: tuple) -> np.ndarray:
    """The block's outer grid layers: edges to the neighbouring blocks start there."""
    faces = np.ones(shape, dtype=bool)
    faces[1:-1, 1:-1, 1:-1] = False
    return faces


def _edge_ends_across(block: np.ndarray, threshold_logit: float) -> np.ndarray:
    """Grid points with a neighbour (along an axis) on the other side of the threshold."""
    side = block > threshold_logit
    ends = np.zeros_like(side)
    for axis in range(3):
        lower = [slice(None)] * 3
        lower[axis] = slice(0, -1)
        upper = [slice(None)] * 3
        upper[axis] = slice(1, None)
        across = side[tuple(lower)] != side[tuple(upper)]
        ends[tuple(lower)] |= across
        ends[tuple(upper)] |= across
    return ends


def _dilate_cells(cells: np.ndarray, shape: tuple) -> np.ndarray:
    """Grid points 2c .. 2c + 2 (per axis) of every marked coarse cell c, cropped to `shape`."""
    marks = np.zeros(tuple(2 * n + 1 for n in cells.shape), dtype=bool)
    marks[1::2, 1::2, 1::2] = cells  # the cell's centre point, then grown by one grid point on every side
    return grow_marks(marks, 1)[tuple(slice(0, n) for n in shape)]


# A crest's two neighbours lie together at least this many logits below it: a thin part's valley (about 2 on
# the rooms' table tops) rather than the gentle bend of the field beside a curved surface (a few tenths).
CREST_FALL = 1.0


def lift_crests(block: np.ndarray, level: float, depth: float, near: np.ndarray, decode: Decoder,
                above: float = 0.1, trough_depth: float | None = None) -> int:
    """Move across the level, in place, the grid points `near` an input point (bool mask of the block) where
    the field peaks or dips just short of it: a crest within `depth` logits under the level is raised to
    `level + above`, a trough within `trough_depth` (default: `depth`; 0: none) over it lowered to
    `level - above`. A crest (trough) is no lower (higher) than either neighbour along the axis where the field
    falls (rises) most, by CREST_FALL at least. Neighbours past the block's faces come from `decode`. Returns
    how many were moved.

    The UCE loss only asks the field to reach the level at the observed points, from either side. Where a part
    is thinner than the prior resolves (a table top, a curtain) the field often only touches the level from
    below, and where a wall's field came out inside on both of its sides, only from above: a crest or a trough
    marching cubes never crosses, and the surface vanishes there. A moved grid point gives a sheet through
    it, which the snap then lays on the points. Decided per grid point by the block that owns it, so
    neighbouring blocks read the same values (no seam)."""
    raised = _extrema_near_level(block, level, depth, near, decode, side=1.0)
    trough_depth = depth if trough_depth is None else trough_depth
    lowered = _extrema_near_level(block, level, trough_depth, near, decode, side=-1.0)
    block[tuple(raised.T)] = level + above
    block[tuple(lowered.T)] = level - above
    return len(raised) + len(lowered)


def _extrema_near_level(block: np.ndarray, level: float, depth: float, near: np.ndarray, decode: Decoder,
                        side: float) -> np.ndarray:
    """Grid indices of the crests (side 1) or troughs (side -1) within `depth` of the level on the other side."""
    offset = side * (block - level)  # a trough becomes a crest of the flipped field
    flat = np.flatnonzero(near & (offset <= 0) & (offset > -depth))
    index = np.stack(np.unravel_index(flat, block.shape), axis=1)
    if len(index) == 0:
        return index
    centre = offset.ravel()[flat]
    falls, crests = [], []
    for axis in range(3):
        before = side * (_neighbours(block, flat, index, axis, -1, decode) - level)
        after = side * (_neighbours(block, flat, index, axis, 1, decode) - level)
        falls.append(2 * centre - before - after)
        crests.append((centre >= before) & (centre >= after))
    falls = np.stack(falls)
    steepest = np.argmax(falls, axis=0)
    rows = np.arange(len(index))
    return index[np.stack(crests)[steepest, rows] & (falls[steepest, rows] >= CREST_FALL)]


def _neighbours(block: np.ndarray, flat: np.ndarray, index: np.ndarray, axis: int, step: int,
                decode: Decoder) -> np.ndarray:
    """The block's values one grid point along `axis` (by `step`, -1 or 1) from the grid points at flat
    positions `flat` (indices `index`), decoded where that lies one layer past its faces. A flat gather
    needs no index triples built for the in-block neighbours."""
    stride = int(np.prod(block.shape[axis + 1:]))
    outside = index[:, axis] == (0 if step < 0 else block.shape[axis] - 1)
    values = np.empty(len(flat), dtype=np.float32)
    values[~outside] = block.ravel()[flat[~outside] + step * stride]
    beyond = index[outside]
    beyond[:, axis] += step
    values[outside] = _decode_at(decode, beyond)
    return values
