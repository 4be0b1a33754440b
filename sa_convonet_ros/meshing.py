"""One mesh from the occupancy field on the global grid: block-wise marching cubes, trimming, colours.

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

from .denoise import plane_fits
from .windows import WindowGrid

EMPTY_LOGIT = -10.0  # "certainly outside": the value of grid points nobody evaluated
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
        k = self.grid.cells
        out = np.full((k + 1,) * 3, self.fill_value, dtype=np.float32)
        for offset in itertools.product((0, 1), repeat=3):
            values = self.blocks.get((key[0] + offset[0], key[1] + offset[1], key[2] + offset[2]))
            if values is None:
                continue
            # offset 0 along an axis: the whole block; offset 1: the neighbour's first layer
            dst = tuple(slice(0, k) if o == 0 else slice(k, k + 1) for o in offset)
            src = tuple(slice(0, k) if o == 0 else slice(0, 1) for o in offset)
            out[dst] = values[src]
        return out


def logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))


def extract_mesh(field: BlockField, threshold: float = 0.5) -> trimesh.Trimesh:
    """Marching cubes over every block that can hold part of the surface; one merged mesh in metres."""
    mesher = StreamingMesher(field.grid, field.blocks, threshold, field.fill_value)
    for key in sorted(field.blocks):
        mesher.add(key, field.blocks[key])
    return mesher.mesh()


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
    depends on its own centre only).
    """

    def __init__(self, grid: WindowGrid, keys: Iterable[BlockKey], threshold: float = 0.5,
                 fill_value: float = EMPTY_LOGIT, axis: int = 0,
                 keep_faces: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.level = logit(threshold)
        if fill_value >= self.level:
            raise ValueError("fill_value must lie outside the surface (below the level)")
        self.field = BlockField(grid, {}, fill_value)
        self.axis = axis
        self._pending = Counter(key[axis] for key in keys)  # blocks still to come, per slab
        self._by_slab: dict[int, list[BlockKey]] = defaultdict(list)
        slabs = sorted(self._pending)
        self._next, self._last = (slabs[0] - 1, slabs[-1]) if slabs else (0, -1)  # slabs of cubes to march
        self._vertices: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self._count = 0
        self._keep_faces = keep_faces
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
            volume = self.field.padded_block(key)
            if volume.max() < self.level or volume.min() > self.level:
                continue
            verts, tris, _, _ = measure.marching_cubes(volume, level=self.level, allow_degenerate=False,
                                                      gradient_direction="ascent")  # inside = high values
            # grid-index units keep the vertices on shared block faces bit-identical up to rounding
            verts = verts.astype(np.float64) + np.asarray(key, dtype=np.float64) * self.field.grid.cells
            self.faces_marched += len(tris)
            if self._keep_faces is not None:
                verts, tris = self._kept(verts, tris)
            self._vertices.append(verts)
            self._faces.append(tris + self._count)
            self._count += len(verts)

    def _kept(self, verts: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The piece's faces that `keep_faces` keeps, and only the vertices they use."""
        tris = tris[self._keep_faces(verts[tris].mean(axis=1) * self.field.grid.voxel_size)]
        used, tris = np.unique(tris, return_inverse=True)
        return verts[used], tris.reshape(-1, 3)

    def mesh(self) -> trimesh.Trimesh:
        """The merged mesh in metres, once every block has arrived."""
        if self._next <= self._last:
            missing = sorted(slab for slab, count in self._pending.items() if count > 0)
            raise ValueError(f"blocks of slabs {missing} along axis {self.axis} never arrived")
        if not self._vertices:
            return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64), process=False)
        vertices, faces = np.concatenate(self._vertices), np.concatenate(self._faces)
        self._vertices, self._faces = [], []  # the pieces go as the mesh is made from them
        faces = merged_block_borders(vertices, faces, self.field.grid.cells)
        mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
        del vertices, faces
        # drop faces that merging collapsed onto an edge (zero-area but distinct-vertex faces keep the mesh closed)
        f = mesh.faces
        mesh.update_faces((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
        mesh.update_faces(mesh.unique_faces())
        mesh.remove_unreferenced_vertices()
        mesh.vertices = mesh.vertices * self.field.grid.voxel_size
        return mesh


def merged_block_borders(vertices: np.ndarray, faces: np.ndarray, cells: int, digits: int = 5) -> np.ndarray:
    """Faces re-indexed so that the copies of a vertex marched by neighbouring blocks become one.

    Vertices are in grid-index units. Marching cubes returns each block's vertices without duplicates, so
    only vertices on a block border (a coordinate an exact multiple of `cells`) can have copies: merging
    just those gives what merging every vertex (trimesh's merge_vertices) gives, at a few per cent of the cost.
    """
    border = np.flatnonzero(np.any(np.mod(vertices, cells) == 0, axis=1))
    if not len(border):
        return faces
    _, first, inverse = np.unique(np.round(vertices[border], digits), axis=0, return_index=True,
                                  return_inverse=True)
    remap = np.arange(len(vertices))
    remap[border] = border[first[inverse.ravel()]]
    return remap[faces]


def near_points(tree: cKDTree, distance: float) -> Callable[[np.ndarray], np.ndarray]:
    """Whether each of some positions [F, 3] lies within `distance` of a point of `tree`."""
    def near(positions: np.ndarray) -> np.ndarray:
        if len(positions) == 0:
            return np.zeros(0, dtype=bool)
        gaps, _ = tree.query(positions, k=1, distance_upper_bound=distance, workers=-1)
        return np.isfinite(gaps)
    return near


def trim_far_faces(mesh: trimesh.Trimesh, points: np.ndarray, distance: float,
                    tree: cKDTree | None = None) -> trimesh.Trimesh:
    """Drop faces whose centre is farther than `distance` from every input point (unsupported completion).
    `tree`: the points' KD-tree, when the caller has one."""
    if len(mesh.faces) == 0:
        return mesh
    keep = near_points(cKDTree(points) if tree is None else tree, distance)(mesh.triangles_center)
    if keep.all():
        return mesh
    mesh = mesh.copy()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def color_from_points(mesh: trimesh.Trimesh, points: np.ndarray, colors: np.ndarray,
                      tree: cKDTree | None = None) -> None:
    """Give each vertex the colour (RGB in [0, 1]) of its nearest input point."""
    if len(mesh.vertices) == 0:
        return
    tree = cKDTree(points) if tree is None else tree
    _, nearest = tree.query(mesh.vertices, k=1, workers=-1)
    rgb = np.clip(np.asarray(colors, dtype=np.float64)[nearest], 0.0, 1.0)
    alpha = np.ones((len(rgb), 1))
    mesh.visual.vertex_colors = (np.hstack([rgb, alpha]) * 255).round().astype(np.uint8)


def snap_to_points(mesh: trimesh.Trimesh, points: np.ndarray, distance: float, neighbours: int = 8,
                   agreement: float = 0.7, tree: cKDTree | None = None) -> trimesh.Trimesh:
    """Each vertex moved along the normal of the plane fitted to its nearest points onto that plane, by at
    most `distance`: detail finer than the grid comes from the points themselves. Vertices with too few
    points nearby (completed surface) or whose plane disagrees with the mesh's normal stay."""
    if len(mesh.vertices) == 0 or len(points) < neighbours:
        return mesh
    vertices, normals = np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals)
    tree = cKDTree(points) if tree is None else tree
    gaps, index = tree.query(vertices, k=neighbours, distance_upper_bound=4 * distance, workers=-1)
    near = np.isfinite(gaps).all(axis=1)
    mean, plane_normal, _ = plane_fits(points, index[near])
    offset = np.einsum("ni,ni->n", vertices[near] - mean, plane_normal)
    agrees = np.abs(np.einsum("ni,ni->n", plane_normal, normals[near])) > agreement
    moved = vertices.copy()
    moved[near] -= (np.where(agrees, np.clip(offset, -distance, distance), 0.0))[:, None] * plane_normal
    mesh = mesh.copy()
    mesh.vertices = moved
    return mesh
