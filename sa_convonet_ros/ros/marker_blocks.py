"""The mesh's markers as spatial blocks, and after each run only the blocks whose triangles changed.

Each face belongs to the cube of `block_size` metres (half a window by default) that holds its centre; a
block's markers have the namespace `block_I_J_K` and ids 0..k-1, stable across runs. After a run, a block
whose triangles (and colours) are the same as published is not sent again, a changed or new one is sent
whole (its markers replace the published ones of the same namespace and ids), and one that vanished is
deleted. What a mapper's second run changes in one corner of a room then costs that corner's markers.

A display that joins later gets the topic's history (transient local, MARKER_HISTORY messages): every
MARKER_HISTORY-th message is the whole mesh (a DELETEALL first), so that history always holds the last
whole mesh and the updates after it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sa_convonet_ros.ros.markers import UNIFORM_GREY, NumpyMarkerArray, delete_all, deleted, vertex_rgba8

MARKER_HISTORY = 4  # messages the latched topic keeps: the last whole mesh and up to 3 updates after it


@dataclass
class Update:
    """One MarkerArray to publish (`markers.serialized()`), what it carries, and what the topic shows once it is
    published."""

    markers: NumpyMarkerArray
    whole: bool  # it replaces everything (DELETEALL first)
    triangles: int  # triangles it carries
    blocks_sent: int
    blocks_deleted: int
    published: dict[str, tuple[int, int]]  # namespace -> (digest, markers), after it
    frame_id: str
    since_whole: int


@dataclass
class MarkerBlocks:
    """What the marker topic shows, block by block, and the update that turns it into a new mesh. `update`
    changes nothing until `commit` says the update was published (a cancelled job's is not)."""

    history: int = MARKER_HISTORY
    published: dict[str, tuple[int, int]] = field(default_factory=dict)  # namespace -> (digest, markers)
    frame_id: str | None = None
    since_whole: int | None = None  # updates sent since the last whole mesh (None: nothing sent yet)

    def update(self, vertices: np.ndarray, faces: np.ndarray, rgb: np.ndarray | None, frame_id: str,
               block_size: float, max_triangles_per_marker: int, uniform_color=(*UNIFORM_GREY, 1.0)) -> Update:
        """The MarkerArray that turns what was published into this mesh (`rgb`: per-vertex colours, None for
        one uniform colour)."""
        vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        blocks = split_into_blocks(vertices, faces, block_size)
        rgba = vertex_rgba8(rgb)  # the markers' colours: what a block's digest tells apart too
        digests = {name: block_digest(vertices, faces[index], rgba) for name, index in blocks.items()}
        whole = (self.since_whole is None or self.since_whole >= self.history - 1 or frame_id != self.frame_id)
        changed = [name for name in blocks if whole or self.published.get(name, (None,))[0] != digests[name]]
        array = NumpyMarkerArray([delete_all(frame_id)] if whole else [])
        sent, triangles = {}, 0
        for name in changed:
            markers = array.add_triangles(vertices, faces[blocks[name]], rgba, frame_id, name,
                                          max_triangles_per_marker, uniform_color)
            sent[name] = (digests[name], markers)
            triangles += len(blocks[name])
        vanished = 0 if whole else self._delete_stale(array, blocks, sent, frame_id)
        published = {name: sent.get(name, self.published.get(name)) for name in blocks}
        return Update(array, whole, triangles, len(sent), vanished, published, frame_id,
                      0 if whole else self.since_whole + 1)

    def commit(self, update: Update) -> None:
        """The update was published: the topic shows its mesh now."""
        self.published, self.frame_id, self.since_whole = update.published, update.frame_id, update.since_whole

    def _delete_stale(self, array: NumpyMarkerArray, blocks: dict, sent: dict, frame_id: str) -> int:
        """DELETE markers of blocks that vanished, and the ids a changed block no longer uses."""
        count = 0
        for name, (_, markers) in self.published.items():
            kept = sent[name][1] if name in sent else (markers if name in blocks else 0)
            for marker_id in range(kept, markers):
                array.append(deleted(frame_id, name, marker_id))
            count += name not in blocks
        return count


def split_into_blocks(vertices: np.ndarray, faces: np.ndarray, block_size: float) -> dict[str, np.ndarray]:
    """Face indices by the block of `block_size` metres that holds each face's centre, named `block_I_J_K`."""
    if len(faces) == 0:
        return {}
    cells = np.floor(vertices[faces].mean(axis=1) / block_size).astype(np.int64)
    # one int64 key per cell, ordered as the cells are lexicographically (np.unique by rows is ten times slower)
    low, span = cells.min(axis=0), np.ptp(cells, axis=0) + 1
    keys = ((cells[:, 0] - low[0]) * span[1] + (cells[:, 1] - low[1])) * span[2] + (cells[:, 2] - low[2])
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
    return {f"block_{i}_{j}_{k}": order[bounds[n]:bounds[n + 1]] for n, (i, j, k) in enumerate(cells[first].tolist())}


def block_digest(vertices: np.ndarray, faces: np.ndarray, rgba: np.ndarray | None) -> int:
    """A digest of a block's triangles and their corners' colours as the markers carry them (`vertex_rgba8`:
    8 bits a channel) that does not depend on the faces' order (the mesh may list an unchanged block's faces in
    another order after another run)."""
    rows = vertices[faces].reshape(len(faces), -1).view(np.uint64)
    if rgba is not None:
        colours = np.ascontiguousarray(rgba[faces], dtype=np.float32).reshape(len(faces), -1).view(np.uint32)
        rows = np.concatenate([rows, colours.astype(np.uint64)], axis=1)
    mixed = np.zeros(len(faces), dtype=np.uint64)
    with np.errstate(over="ignore"):  # the arithmetic is modulo 2^64 on purpose
        for column in rows.T:
            mixed = (mixed ^ column) * np.uint64(0x100000001B3)  # FNV-1a's prime, per triangle
            mixed ^= mixed >> np.uint64(29)
        return int(mixed.sum(dtype=np.uint64))  # a sum: the same in any order
