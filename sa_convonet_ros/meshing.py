"""One mesh from the occupancy field on the global grid: block-wise marching cubes and trimming.

The field is stored per window core (a `cells`^3 block of logits); grid points that were not evaluated
(windows that were skipped, points outside the evaluation band) hold `fill_value` (empty space). Marching
cubes runs block by block, each block borrowing one layer of grid points from its +x/+y/+z neighbours,
so every cube of the global grid is polygonised exactly once and the vertices on shared faces coincide:
after merging them the result is the same as one marching-cubes pass over the whole grid.
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from skimage import measure

from .windows import WindowGrid, cell_corners

# Vertices or faces per pass of the steps that go over a whole mesh: bounds their temporaries to tens of
# MB whatever the mesh's size (a building-size map makes tens of millions of faces).
CHUNK = 1 << 16
EMPTY_LOGIT = -10.0  # "certainly outside": the value of grid points nobody evaluated, and of no evaluated one
BlockKey = tuple[int, int, int]


@dataclass
class BlockField:
    """Logits of the global grid, one `cells`^3 block per evaluated window."""

    grid: WindowGrid
    blocks: dict[BlockKey, np.ndarray] = field(default_factory=dict)
    fill_value: float = EMPTY_LOGIT

    def block(self, key: BlockKey) -> np.ndarray | None:
        return self.blocks.get(key)

    def padded_block(self, key: BlockKey) -> np.ndarray:
        """The block plus one layer from its +x/+y/+z neighbours: (cells+1)^3 grid points."""
        return self._padded(key)[0]

    def padded_block_and_cubes(self, key: BlockKey) -> tuple[np.ndarray, np.ndarray]:
        """`padded_block`, and which of its cubes have all eight corners evaluated or in a block nobody made
        (a bool array of its shape, marking a cube at its highest corner, as skimage's marching-cubes mask)."""
        volume, absent = self._padded(key)
        # an unevaluated grid point p touches the cubes spanning p-1..p and p..p+1, marked at p and p+1
        cubes = ~cell_corners(~absent & (volume == EMPTY_LOGIT))
        cubes[0, :, :] = cubes[:, 0, :] = cubes[:, :, 0] = False  # no cube ends at the first layer
        return volume, cubes

    def _padded(self, key: BlockKey) -> tuple[np.ndarray, np.ndarray]:
        k = self.grid.cells
        out = np.full((k + 1,) * 3, self.fill_value, dtype=np.float32)
        absent = np.zeros(out.shape, dtype=bool)
        for offset in itertools.product((0, 1), repeat=3):
            values = self.blocks.get((key[0] + offset[0], key[1] + offset[1], key[2] + offset[2]))
            # offset 0 along an axis: the whole block; offset 1: the neighbour's first layer
            dst = tuple(slice(0, k) if o == 0 else slice(k, k + 1) for o in offset)
            if values is None:
                absent[dst] = True
                continue
            src = tuple(slice(0, k) if o == 0 else slice(0, 1) for o in offset)
            out[dst] = values[src]
        return out, absent


def logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))


class StreamingMesher:
    """Block-wise marching cubes while the blocks arrive, keeping only the blocks still needed.

    The blocks are grouped in slabs along `axis` (one window thick). A cube belongs to the block of its
    lowest corner and reads the blocks of its own slab and the next, so once both have arrived, that slab
    of cubes is polygonised and the blocks of the slab before it are released. When blocks arrive in
    slab order, about two slabs are held at a time, however long the map is along `axis`: the field
    costs what one cross-section of the map costs. The mesh (`mesh()`) is assembled once, at the end,
    and is the same as one marching-cubes pass over the whole grid.

    `keep_faces` (face centres in metres [F, 3] -> bool [F]) drops faces as each block is marched, so
    the pieces held until the end are the faces kept, not all the faces marched (a face's trimming
    depends on its own centre only). With `evaluated_cubes_only`, a cube with a corner that a block left
    unevaluated (EMPTY_LOGIT in a block that exists) is not marched: where `keep_faces` keeps only faces
    well inside the evaluated band, that skips the shell the band's edge makes, and no kept face.
    """

    def __init__(self, grid: WindowGrid, keys: Iterable[BlockKey], threshold: float = 0.5,
                 fill_value: float = EMPTY_LOGIT, axis: int = 0,
                 keep_faces: Callable[[np.ndarray], np.ndarray] | None = None,
                 evaluated_cubes_only: bool = False) -> None:
        self.level = logit(threshold)
        if fill_value >= self.level:
            raise ValueError("fill_value must lie outside the surface (below the level)")
        self.field = BlockField(grid, {}, fill_value)
        self.axis = axis
        self._pending = Counter(key[axis] for key in keys)  # blocks still to come, per slab
        self._by_slab: dict[int, list[BlockKey]] = defaultdict(list)
        slabs = sorted(self._pending)
        self._next, self._last = (slabs[0] - 1, slabs[-1]) if slabs else (0, -1)  # slabs of cubes to march
        self._first = self._next
        self._pieces: list[MeshPiece] = []
        self._keep_faces = keep_faces
        self._evaluated_cubes_only = evaluated_cubes_only
        self.peak_blocks = 0  # the most blocks held at once
        self.faces_marched = 0  # faces marching cubes made, before `keep_faces`

    def add(self, key: BlockKey, block: np.ndarray) -> None:
        """One block of the field; the slabs of cubes it completes are polygonised at once."""
        slab = key[self.axis]
        if self._pending[slab] <= 0 or key in self.field.blocks:
            raise ValueError(f"block {key} was not expected or came twice")
        self.field.blocks[key] = block
        self._by_slab[slab].append(key)
        self._pending[slab] -= 1
        self.peak_blocks = max(self.peak_blocks, len(self.field.blocks))
        while self._next <= self._last and self._pending[self._next] == 0 and self._pending[self._next + 1] == 0:
            self._march_slab(self._next)
            for done in self._by_slab.pop(self._next, []):  # no cube left reads them
                del self.field.blocks[done]
            self._next += 1

    def _march_slab(self, slab: int) -> None:
        # the cubes of this slab: the blocks of this slab and the next, and those just below them
        keys = {tuple(int(v) for v in np.subtract(key, offset)) for s in (slab, slab + 1)
                for key in self._by_slab.get(s, []) for offset in itertools.product((0, 1), repeat=3)}
        order = [self.axis] + [a for a in range(3) if a != self.axis]
        for key in sorted((k for k in keys if k[self.axis] == slab), key=lambda k: [k[a] for a in order]):
            volume, cubes = (self.field.padded_block_and_cubes(key) if self._evaluated_cubes_only
                             else (self.field.padded_block(key), None))
            if volume.max() < self.level or volume.min() > self.level or (cubes is not None and not cubes.any()):
                continue
            try:
                verts, tris, _, _ = measure.marching_cubes(volume, level=self.level, allow_degenerate=False,
                                                          gradient_direction="ascent", mask=cubes)  # inside: high
            except RuntimeError:  # "no surface": only grid values exactly at the level, no crossing
                continue
            self.faces_marched += len(tris)
            if (volume == self.level).any():  # grid values exactly at the level make it repeat faces
                tris = tris[~repeats(tris)]
            piece = MeshPiece(key, verts, tris)
            if self._keep_faces is not None:
                piece = piece.kept(self._keep_faces(piece.face_centres(self.field.grid)))
            if len(piece.faces):
                self._pieces.append(piece)

    def mesh(self) -> trimesh.Trimesh:
        """The merged mesh in metres, once every block has arrived.

        Built in place, piece by piece, so that assembling it holds little more than the mesh itself: no
        whole-mesh temporaries (trimesh's merging and deduplication copy and sort every face several times)."""
        if not self.complete:
            missing = sorted(slab for slab, count in self._pending.items() if count > 0)
            raise ValueError(f"blocks of slabs {missing} along axis {self.axis} never arrived")
        return self._merged(*self._assembled(consume=True))

    @property
    def complete(self) -> bool:
        """Every slab of cubes is marched."""
        return self._next > self._last

    @property
    def share_marched(self) -> float:
        """The share of the slabs of cubes marched so far, 0 to 1."""
        return 1.0 if self.complete else (self._next - self._first) / (self._last + 1 - self._first)

    @property
    def final_below(self) -> float:
        """Metres along `axis` below which the faces are all marched (those of `marched_so_far`)."""
        return float(self._next * self.field.grid.cells * self.field.grid.voxel_size)

    def marched_so_far(self) -> trimesh.Trimesh:
        """The merged mesh of the slabs marched until now (below `final_below`), leaving the pieces in place:
        a progressive display's view while blocks are still to come."""
        return self._merged(*self._assembled(consume=False))

    def _merged(self, vertices: np.ndarray, faces: np.ndarray, border: np.ndarray) -> trimesh.Trimesh:
        merged = merge_border_copies(vertices, faces, border)
        faces = compacted(faces, ~collapsed_or_repeated(faces, merged))
        vertices, faces = without_unused_vertices(vertices, faces)
        vertices *= self.field.grid.voxel_size
        return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)

    def _assembled(self, consume: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pieces in one vertex array (grid-index units) and one face array, each piece released once
        copied where `consume`; and which vertices lie on a block border (the only ones other pieces can
        share)."""
        cells = self.field.grid.cells
        vertices = np.empty((sum(len(p.vertices) for p in self._pieces), 3))
        faces = np.empty((sum(len(p.faces) for p in self._pieces), 3), dtype=np.int64)
        border = np.empty(len(vertices), dtype=bool)
        pieces = self._pieces if consume else list(self._pieces)
        pieces.reverse()  # popped from the end, in marching order
        count = filled = 0
        while pieces:
            piece = pieces.pop()
            end = count + len(piece.vertices)
            # grid-index units keep the copies of a vertex on a shared block face equal up to rounding
            vertices[count:end] = piece.vertices
            vertices[count:end] += np.asarray(piece.key, dtype=np.float64) * cells
            border[count:end] = np.any(np.mod(vertices[count:end], cells) == 0, axis=1)
            faces[filled:filled + len(piece.faces)] = piece.faces
            faces[filled:filled + len(piece.faces)] += count
            count, filled = end, filled + len(piece.faces)
        return vertices, faces, border


@dataclass
class MeshPiece:
    """One block's marching-cubes output: float32 vertices in the block's grid units, int32 faces."""

    key: BlockKey
    vertices: np.ndarray
    faces: np.ndarray

    def face_centres(self, grid: WindowGrid) -> np.ndarray:
        corners = self.vertices[self.faces].astype(np.float64)
        return (corners.mean(axis=1) + np.asarray(self.key, dtype=np.float64) * grid.cells) * grid.voxel_size

    def kept(self, keep: np.ndarray) -> MeshPiece:
        """The piece with only the faces where `keep` is true, and only the vertices they use (in their order)."""
        faces = self.faces[keep]
        used = np.zeros(len(self.vertices), dtype=bool)
        used[faces] = True
        renumbered = np.cumsum(used, dtype=np.int32) - 1  # marks, not np.unique: no sort
        return MeshPiece(self.key, self.vertices[used], renumbered[faces])


def merge_border_copies(vertices: np.ndarray, faces: np.ndarray, border: np.ndarray, digits: int = 5) -> np.ndarray:
    """Re-index `faces` in place so that the copies of a vertex marched by neighbouring blocks become one
    (the first); returns which vertices now stand for several copies.

    Marching cubes returns each block's vertices without duplicates (but where a grid value lies exactly at
    the level), so only vertices on a block border can have copies: merging just those gives what merging
    every vertex (trimesh's merge_vertices) gives, at a few per cent of the cost.
    """
    merged = np.zeros(len(vertices), dtype=bool)
    index = np.flatnonzero(border)
    if not len(index):
        return merged
    _, first, inverse, counts = np.unique(np.round(vertices[index], digits), axis=0, return_index=True,
                                          return_inverse=True, return_counts=True)
    remap = np.arange(len(vertices))
    remap[index] = index[first[inverse.ravel()]]
    merged[index[first[counts > 1]]] = True
    for start in range(0, len(faces), CHUNK):
        faces[start:start + CHUNK] = remap[faces[start:start + CHUNK]]
    return merged


def collapsed_or_repeated(faces: np.ndarray, merged: np.ndarray) -> np.ndarray:
    """Which faces merging collapsed onto an edge, or made a repeat of an earlier face (in any winding).

    Only a face with a merged vertex can be either: marching cubes makes no degenerate face
    (allow_degenerate=False), a block's repeated faces are dropped as it is marched, and merging changes
    no other vertex. Zero-area faces with three distinct vertices stay: they keep the mesh closed.
    """
    drop = np.zeros(len(faces), dtype=bool)
    candidates = np.concatenate([start + np.flatnonzero(merged[faces[start:start + CHUNK]].any(axis=1))
                                 for start in range(0, len(faces), CHUNK)] or [np.zeros(0, dtype=np.int64)])
    if not len(candidates):
        return drop
    drop[candidates] = collapsed(faces[candidates])
    whole = candidates[~drop[candidates]]
    drop[whole[repeats(faces[whole])]] = True
    return drop


def collapsed(faces: np.ndarray) -> np.ndarray:
    """Which faces use one vertex twice (collapsed onto an edge or a point)."""
    return (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])


def repeats(faces: np.ndarray) -> np.ndarray:
    """Which faces have the vertices of an earlier face (in any winding)."""
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    repeated = np.ones(len(faces), dtype=bool)
    repeated[first] = False
    return repeated


def without_unused_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices some face uses (in their order) and the faces re-indexed onto them, in place."""
    used = np.zeros(len(vertices), dtype=bool)
    for start in range(0, len(faces), CHUNK):
        used[faces[start:start + CHUNK].ravel()] = True
    if used.all():
        return vertices, faces
    new_index = np.cumsum(used) - 1
    for start in range(0, len(faces), CHUNK):
        faces[start:start + CHUNK] = new_index[faces[start:start + CHUNK]]
    return compacted(vertices, used), faces


def compacted(rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`rows[keep]` without a second array: the kept rows moved forward in place, chunk by chunk (the
    result is a view of `rows`' memory)."""
    if keep.all():
        return rows
    filled = 0
    for start in range(0, len(rows), CHUNK):
        kept = rows[start:start + CHUNK][keep[start:start + CHUNK]]
        rows[filled:filled + len(kept)] = kept
        filled += len(kept)
    return rows[:filled]


def near_points(tree: cKDTree, distance: float, reach: np.ndarray | None = None,
                surround: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """Whether each of some positions [F, 3] lies within `distance` of a point of `tree` (within its nearest
    point's `reach`, one per point, where given). With `surround`, a position kept only by a reach wider than
    `distance` must also lie among its nearest points (`surrounded`)."""
    farthest = distance if reach is None else float(reach.max())

    def near(positions: np.ndarray) -> np.ndarray:
        if len(positions) == 0:
            return np.zeros(0, dtype=bool)
        gaps, nearest = tree.query(positions, k=1, distance_upper_bound=farthest, workers=-1)
        found = np.isfinite(gaps)
        if reach is not None:
            found[found] = gaps[found] <= reach[nearest[found]]
            if surround > 0:
                stretched = np.flatnonzero(found & (gaps > distance))
                found[stretched] = surrounded(tree, positions[stretched], surround)
        return found
    return near


SURROUND_NEIGHBOURS = 8  # the points whose spread around a face tells a gap between them from an edge beyond them


def surrounded(tree: cKDTree, positions: np.ndarray, limit: float) -> np.ndarray:
    """Whether each position lies among its SURROUND_NEIGHBOURS nearest points of `tree` rather than beyond
    them: the mean of their offsets from it is at most `limit` times their mean length. A face in a gap between
    the points of a surface seen at a grazing angle has points on every side; one that prolongs a surface past
    its last points (the far side of a thin part, a lid over an opening) has them on one side only."""
    if len(positions) == 0 or tree.n < SURROUND_NEIGHBOURS:
        return np.ones(len(positions), dtype=bool)
    _, index = tree.query(positions, k=SURROUND_NEIGHBOURS, workers=-1)
    offsets = tree.data[index] - positions[:, None, :]
    spread = np.linalg.norm(offsets, axis=2).mean(axis=1)
    return np.linalg.norm(offsets.mean(axis=1), axis=1) <= limit * spread


# A point's trim reach grows with the spacing around it up to this many times the trim distance: an isolated
# return does not keep a large made-up surface.
MAX_TRIM_STRETCH = 3.0


def point_gaps(tree: cKDTree) -> np.ndarray:
    """Each point's distance to its third-nearest neighbour: the local spacing, wider where a surface was
    seen at a grazing angle or from afar (inf where the cloud has fewer than four points)."""
    gaps = np.full(tree.n, np.inf)
    if tree.n < 4:
        return gaps
    for start in range(0, tree.n, CHUNK):
        distances, _ = tree.query(tree.data[start:start + CHUNK], k=4, workers=-1)
        gaps[start:start + CHUNK] = distances[:, 3]
    return gaps


def trim_reach(gaps: np.ndarray, distance: float, per_spacing: float) -> np.ndarray | None:
    """How far from each point faces are kept: `distance`, or `per_spacing` times the point's gap
    (`point_gaps`) where that is more (a surface seen at a grazing angle or from afar leaves gaps between its
    points wider than where it was seen square on), at most MAX_TRIM_STRETCH times `distance`. None where
    `per_spacing` is 0 (the same distance everywhere) or the cloud has fewer than four points."""
    if per_spacing <= 0 or len(gaps) < 4:
        return None
    return np.clip(per_spacing * gaps, distance, MAX_TRIM_STRETCH * distance)


def simplified(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """The mesh with at most `max_faces` faces, for displays and messages: its vertices clustered on a
    grid just coarse enough, each cluster one vertex at their mean (colours averaged too); the mesh itself
    when it has no more faces, when `max_faces` is 0 (no limit) or when a vertex is not finite.

    Vertex clustering as Open3D's `simplify_vertex_clustering` does it, written over chunks of faces:
    Open3D's copy of the mesh and its maps cost about 120 B a face (`bench.bench_scaling mesh --open3d`),
    too much for the meshes of tens of millions of faces this is for."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if max_faces <= 0 or len(faces) <= max_faces or not np.isfinite(vertices).all():
        return mesh
    # faces fall with the square of the cell: start from the length of an edge now
    sample = faces[:: max(1, len(faces) // 10_000)]
    cell = float(np.median(np.linalg.norm(vertices[sample[:, 0]] - vertices[sample[:, 1]], axis=1)))
    count = len(faces)
    while count > max_faces:
        cell = on_cell_ladder(max(cell * CELL_LADDER_STEP, 1.05 * cell * np.sqrt(count / max_faces)))
        labels = cluster_labels(vertices, cell)
        coarse = clustered_faces(faces, labels)
        count = len(coarse)
    used, coarse = np.unique(coarse, return_inverse=True)  # the clusters some face uses, renumbered
    coarse = coarse.reshape(-1, 3)
    cluster_of = np.full(int(labels.max()) + 1, -1)
    cluster_of[used] = np.arange(len(used))
    members = cluster_of[labels]  # each vertex's cluster among those kept, or -1
    kept = members >= 0
    sizes = np.bincount(members[kept], minlength=len(used))[:, None]
    means = [np.bincount(members[kept], values[kept], minlength=len(used)) for values in vertices.T]
    result = trimesh.Trimesh(np.stack(means, axis=1) / sizes, coarse, process=False)
    if mesh.visual.kind == "vertex":
        rgba = np.asarray(mesh.visual.vertex_colors)
        channels = [np.bincount(members[kept], rgba[kept, c], minlength=len(used)) for c in range(4)]
        result.visual.vertex_colors = (np.stack(channels, axis=1) / sizes).round().astype(np.uint8)
    return result


# The clustering's cells come from a fixed ladder (steps of 19 % from 1 mm) on a grid anchored at the origin:
# a mesh that changed in one corner clusters the same everywhere else, so its simplified form does too (and a
# display that is sent only the changed parts gets only that corner).
CELL_LADDER_STEP = 2 ** 0.25
CELL_LADDER_BASE = 0.001


def on_cell_ladder(cell: float) -> float:
    """The smallest cell of the ladder at least `cell`."""
    rung = np.ceil(np.log(cell / CELL_LADDER_BASE) / np.log(CELL_LADDER_STEP) - 1e-9)
    return float(CELL_LADDER_BASE * CELL_LADDER_STEP ** rung)


def cluster_labels(vertices: np.ndarray, cell: float) -> np.ndarray:
    """Each vertex's cluster: a number shared by the vertices in the same cell of the grid of edge `cell`
    anchored at the origin."""
    low = np.floor(vertices.min(axis=0) / cell).astype(np.int64)
    shape = np.floor(vertices.max(axis=0) / cell).astype(np.int64) - low + 1
    keys = np.empty(len(vertices), dtype=np.int64)
    for start in range(0, len(vertices), CHUNK):
        cells = np.floor(vertices[start:start + CHUNK] / cell).astype(np.int64) - low
        keys[start:start + CHUNK] = np.ravel_multi_index(np.clip(cells, 0, shape - 1).T, shape)
    _, labels = np.unique(keys, return_inverse=True)
    return labels.ravel()


def clustered_faces(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The faces between clusters: each face's vertices replaced by their clusters, those collapsed onto
    fewer than three clusters dropped, and each remaining triangle of clusters once."""
    pieces = []
    for start in range(0, len(faces), CHUNK):
        rows = labels[faces[start:start + CHUNK]]
        pieces.append(rows[~collapsed(rows)])
    rows = np.concatenate(pieces)
    return rows[~repeats(rows)]
