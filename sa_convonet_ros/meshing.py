"""One mesh from the occupancy field on the global grid: block-wise marching cubes, trimming, colours.

The field is stored per window core (a `cells`^3 block of logits); grid points that were not evaluated
(windows that were skipped, points outside the evaluation band) hold `fill_value` (empty space). Marching
cubes runs block by block, each block borrowing one layer of grid points from its +x/+y/+z neighbours,
so every cube of the global grid is polygonised exactly once and the vertices on shared faces coincide:
after merging them the result is the same as one marching-cubes pass over the whole grid.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from skimage import measure

from .denoise import plane_fits
from .windows import WindowGrid

EMPTY_LOGIT = -10.0  # "certainly outside": the value of grid points nobody evaluated


@dataclass
class BlockField:
    """Logits of the global grid, one `cells`^3 block per evaluated window."""

    grid: WindowGrid
    blocks: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)
    fill_value: float = EMPTY_LOGIT

    def block(self, key: tuple[int, int, int]) -> np.ndarray | None:
        return self.blocks.get(key)

    def padded_block(self, key: tuple[int, int, int]) -> np.ndarray:
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
    level = logit(threshold)
    if field.fill_value >= level:
        raise ValueError("fill_value must lie outside the surface (below the level)")
    # a cube belongs to the block of its lowest corner, so blocks just below an evaluated block count too
    keys = {(a - dx, b - dy, c - dz) for (a, b, c) in field.blocks
            for dx, dy, dz in itertools.product((0, 1), repeat=3)}
    vertices, faces, count = [], [], 0
    for key in sorted(keys):
        volume = field.padded_block(key)
        if volume.max() < level or volume.min() > level:
            continue
        verts, tris, _, _ = measure.marching_cubes(volume, level=level, allow_degenerate=False,
                                                  gradient_direction="ascent")  # inside = high values
        # grid-index units keep the vertices on shared block faces bit-identical up to rounding
        vertices.append(verts.astype(np.float64) + np.asarray(key, dtype=np.float64) * field.grid.cells)
        faces.append(tris + count)
        count += len(verts)
    if not vertices:
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64), process=False)
    mesh = trimesh.Trimesh(vertices=np.concatenate(vertices), faces=np.concatenate(faces), process=False)
    mesh.merge_vertices(digits_vertex=5)
    # drop faces that merging collapsed onto an edge (zero-area but distinct-vertex faces keep the mesh closed)
    f = mesh.faces
    mesh.update_faces((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    mesh.vertices = mesh.vertices * field.grid.voxel_size
    return mesh


def trim_far_faces(mesh: trimesh.Trimesh, points: np.ndarray, distance: float) -> trimesh.Trimesh:
    """Drop faces whose centre is farther than `distance` from every input point (unsupported completion)."""
    if len(mesh.faces) == 0:
        return mesh
    gaps, _ = cKDTree(points).query(mesh.triangles_center, k=1, distance_upper_bound=distance, workers=-1)
    keep = np.isfinite(gaps)
    if keep.all():
        return mesh
    mesh = mesh.copy()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def color_from_points(mesh: trimesh.Trimesh, points: np.ndarray, colors: np.ndarray) -> None:
    """Give each vertex the colour (RGB in [0, 1]) of its nearest input point."""
    if len(mesh.vertices) == 0:
        return
    _, nearest = cKDTree(points).query(mesh.vertices, k=1, workers=-1)
    rgb = np.clip(np.asarray(colors, dtype=np.float64)[nearest], 0.0, 1.0)
    alpha = np.ones((len(rgb), 1))
    mesh.visual.vertex_colors = (np.hstack([rgb, alpha]) * 255).round().astype(np.uint8)


def snap_to_points(mesh: trimesh.Trimesh, points: np.ndarray, distance: float, neighbours: int = 8,
                   agreement: float = 0.7) -> trimesh.Trimesh:
    """Each vertex moved along the normal of the plane fitted to its nearest points onto that plane, by at
    most `distance`: detail finer than the grid comes from the points themselves. Vertices with too few
    points nearby (completed surface) or whose plane disagrees with the mesh's normal stay."""
    if len(mesh.vertices) == 0 or len(points) < neighbours:
        return mesh
    vertices, normals = np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals)
    gaps, index = cKDTree(points).query(vertices, k=neighbours, distance_upper_bound=4 * distance, workers=-1)
    near = np.isfinite(gaps).all(axis=1)
    mean, plane_normal, _ = plane_fits(points, index[near])
    offset = np.einsum("ni,ni->n", vertices[near] - mean, plane_normal)
    agrees = np.abs(np.einsum("ni,ni->n", plane_normal, normals[near])) > agreement
    moved = vertices.copy()
    moved[near] -= (np.where(agrees, np.clip(offset, -distance, distance), 0.0))[:, None] * plane_normal
    mesh = mesh.copy()
    mesh.vertices = moved
    return mesh
