"""The marched mesh finished: its vertices snapped onto the input points' planes, smoothed inside its
borders, and coloured from the input's colours (`pipeline.finish_mesh` applies them as configured).

Marching cubes places a surface no finer than its grid; the points carry the detail finer than that. The
snap moves each vertex onto the plane of its nearest points, which leaves neighbouring faces tilted against
each other (each vertex on its own plane); the smoothing evens those out without moving the borders.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
import trimesh
from scipy.spatial import cKDTree

from .config import MeshingConfig
from .denoise import plane_fits
from .meshing import CHUNK


def color_from_points(mesh: trimesh.Trimesh, points: np.ndarray, colors: np.ndarray,
                      tree: cKDTree | None = None) -> None:
    """Give each vertex the colour (RGB in [0, 1]) of its nearest input point."""
    if len(mesh.vertices) == 0:
        return
    tree = cKDTree(points) if tree is None else tree
    vertices = np.asarray(mesh.vertices)
    rgba = np.full((len(vertices), 4), 255, dtype=np.uint8)
    for start in range(0, len(vertices), CHUNK):
        _, nearest = tree.query(vertices[start:start + CHUNK], k=1, workers=-1)
        rgb = np.clip(np.asarray(colors[nearest], dtype=np.float64), 0.0, 1.0)
        rgba[start:start + CHUNK, :3] = (rgb * 255).round()
    mesh.visual.vertex_colors = rgba


def smooth_inside_borders(mesh: trimesh.Trimesh, iterations: int) -> trimesh.Trimesh:
    """The mesh after `iterations` passes of Taubin's smoothing (trimesh's, alternately shrinking and
    inflating), with the vertices on its borders held in place: marching cubes on a grid and a snap that
    lays each vertex on its own points' plane leave faces tilted against their neighbours; this evens them out
    without the mesh shrinking, and a held border keeps holes and the trimmed edges where they are. The
    result shares the faces (and colours) of `mesh`."""
    if iterations <= 0 or len(mesh.faces) == 0:
        return mesh
    smoothed = trimesh.Trimesh(vertices=np.array(mesh.vertices), faces=mesh.faces, process=False)
    trimesh.smoothing.filter_taubin(smoothed, lamb=TAUBIN_SHRINK, nu=TAUBIN_INFLATE, iterations=iterations,
                                    laplacian_operator=umbrella_operator(np.asarray(mesh.faces), len(mesh.vertices)))
    if mesh.visual.kind == "vertex":
        smoothed.visual.vertex_colors = mesh.visual.vertex_colors
    return smoothed


def umbrella_operator(faces: np.ndarray, vertex_count: int) -> scipy.sparse.csr_matrix:
    """The mean of each vertex's neighbours as a sparse matrix, vertices on the border (on an edge only one
    face has) or on no face mapped to themselves: trimesh's `laplacian_calculation` with equal weights and the
    border pinned, from one sparse count of the edges' faces (on 900 k vertices 0.26 s against trimesh's 1.35 s
    once warm; 0.75 s against 1.0 s on a first call)."""
    uses, held = _edge_uses(faces, vertex_count)
    neighbours = (uses + uses.T).tocsr()
    degree = np.diff(neighbours.indptr)
    held |= degree == 0
    neighbours.data = np.repeat(np.where(held, 0.0, 1.0 / np.maximum(degree, 1)), degree)
    return (neighbours + scipy.sparse.diags(held.astype(np.float64))).tocsr()


def border_vertices(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Which vertices lie on the mesh's border (an edge only one face has): the rims of holes and trimmed
    edges."""
    return _edge_uses(faces, vertex_count)[1]


def _edge_uses(faces: np.ndarray, vertex_count: int) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """The faces on each edge (lower vertex index as the row), and the border mask, from one sparse sum:
    scipy adds up duplicate entries, a sort trimesh's `group_rows` would do in Python's stead."""
    first, second = faces.ravel(), faces[:, [1, 2, 0]].ravel()
    low, high = np.minimum(first, second), np.maximum(first, second)
    uses = scipy.sparse.csr_matrix((np.ones(len(low), dtype=np.int32), (low, high)),
                                   shape=(vertex_count, vertex_count))
    once = uses.data == 1
    border = np.zeros(vertex_count, dtype=bool)
    border[np.repeat(np.arange(vertex_count), np.diff(uses.indptr))[once]] = border[uses.indices[once]] = True
    return uses, border


# Taubin's factors: a pass band of 1/0.5 - 1/0.53 = 0.11 keeps the surface's shape and damps grid-scale ripples.
TAUBIN_SHRINK, TAUBIN_INFLATE = 0.5, 0.53


def snap_to_points(mesh: trimesh.Trimesh, points: np.ndarray, distance: float,
                   neighbours: int = MeshingConfig.snap_neighbours, tree: cKDTree | None = None,
                   anchors: int = MeshingConfig.snap_anchors, reach: float = MeshingConfig.snap_reach
                   ) -> trimesh.Trimesh:
    """Each vertex moved along the normal of the plane fitted to its nearest points onto that plane, by at
    most `distance`: detail finer than the grid comes from the points themselves. The plane's normal comes
    from the `neighbours` nearest points, its position from the mean of the `anchors` nearest of them: the
    mean of all lies inside a curved surface (a rounded edge or a fold would be flattened), that of the few
    nearest much less (the defaults: the configuration's). Vertices without `neighbours` points within
    `reach` x `distance` (completed surface) stay; those on the mesh's border whose points lie beyond
    `FIRM_REACH` x `distance` move along their own normal only (the part of the move along the mesh's normal).
    The result shares the faces of `mesh`.

    Elsewhere the mesh's own normals are not consulted: on a coarse grid they step (a 45-degree roof's are
    the grid's axes), and a vertex whose neighbours lie on another surface moves by at most `distance`."""
    if len(mesh.vertices) == 0 or len(points) < neighbours:
        return mesh
    anchors = min(anchors, neighbours)
    vertices = np.asarray(mesh.vertices)
    tree = cKDTree(points) if tree is None else tree
    faces = np.asarray(mesh.faces)
    moves, far = np.zeros_like(vertices), np.zeros(len(vertices), dtype=bool)
    for start in range(0, len(vertices), CHUNK):  # the plane fits cost about 600 B a vertex
        part = slice(start, start + CHUNK)
        gaps, index = tree.query(vertices[part], k=neighbours, distance_upper_bound=reach * distance,
                                   workers=-1)
        near = np.isfinite(gaps).all(axis=1)
        _, plane_normal, _ = plane_fits(points, index[near])
        anchor = points[index[near, :anchors]].mean(axis=1)  # the query sorts neighbours nearest first
        offset = np.einsum("ni,ni->n", vertices[part][near] - anchor, plane_normal)
        moves[part][near] = -np.clip(offset, -distance, distance)[:, None] * plane_normal
        far[part][near] = gaps[near, -1] > FIRM_REACH * distance
    if far.any():
        around = faces[far[faces].any(axis=1)]  # every face of a far vertex: its border status is exact
        loose = far & border_vertices(around, len(vertices))
        normals = _vertex_normals(vertices, around, loose)
        moves[loose] = np.einsum("ni,ni->n", moves[loose], normals)[:, None] * normals
    snapped = trimesh.Trimesh(vertices=vertices + moves, faces=faces, process=False)
    if mesh.visual.kind == "vertex":
        snapped.visual.vertex_colors = mesh.visual.vertex_colors
    return snapped


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray, which: np.ndarray) -> np.ndarray:
    """trimesh's vertex normals of the vertices `which` (bool), from the faces around them only: the same
    values as the whole mesh's (tested), at a tenth of the time where they are few."""
    around = trimesh.Trimesh(vertices=vertices, faces=faces[which[faces].any(axis=1)], process=False)
    return np.asarray(around.vertex_normals)[which]


# Within 4 x the snap distance a border vertex's points are near enough for their plane to place the trimmed
# edge too; beyond it, a move across the surface would open the hole or the edge further (docs/decisions.md,
# "What F@1cm still loses").
FIRM_REACH = 4.0
