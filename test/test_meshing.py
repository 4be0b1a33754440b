"""Block-wise marching cubes on an analytic field: one seamless mesh, identical to a single global pass."""
import itertools

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from skimage import measure

from sa_convonet_ros.baselines import trimmed_to_points
from sa_convonet_ros.meshing import (
    EMPTY_LOGIT,
    BlockField,
    StreamingMesher,
    near_points,
)
from sa_convonet_ros.refine import color_from_points, snap_to_points
from sa_convonet_ros.windows import WindowGrid

from helpers import extract_mesh


def analytic_field(grid, windows, signed_distance, sharpness=50.0):
    """Fill the blocks of `windows` with logits of an analytic shape (inside: positive)."""
    field = BlockField(grid)
    k = grid.cells
    for w in windows:
        idx = np.stack(np.meshgrid(*[np.arange(k) + w[a] * k for a in range(3)], indexing="ij"), -1)
        field.blocks[tuple(w)] = (-sharpness * signed_distance(idx * grid.voxel_size)).astype(np.float32)
    return field


def dense_single_pass(field, windows):
    """The reference: one marching-cubes pass over the whole grid, fill value around it."""
    k = field.grid.cells
    low = np.min(windows, axis=0) - 1
    high = np.max(windows, axis=0) + 2
    shape = (high - low) * k
    volume = np.full(shape, field.fill_value, dtype=np.float32)
    for key, block in field.blocks.items():
        start = (np.asarray(key) - low) * k
        volume[start[0]:start[0] + k, start[1]:start[1] + k, start[2]:start[2] + k] = block
    verts, faces, _, _ = measure.marching_cubes(volume, level=0.0, allow_degenerate=False, gradient_direction="ascent")
    mesh = trimesh.Trimesh((verts + low * k) * field.grid.voxel_size, faces)
    return mesh


def all_windows(low, high):
    return [np.array(w) for w in itertools.product(*[range(a, b) for a, b in zip(low, high)])]


def test_sphere_across_window_borders_is_one_closed_surface():
    grid = WindowGrid(voxel_size=0.05, cells=8, margin=0.1)  # windows of 0.4 m
    centre, radius = np.array([0.41, 0.38, 0.43]), 0.3  # crosses the borders at 0.4 on every axis
    windows = all_windows((0, 0, 0), (2, 2, 2))
    field = analytic_field(grid, windows, lambda p: np.linalg.norm(p - centre, axis=-1) - radius)
    mesh = extract_mesh(field, threshold=0.5)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2
    assert len(mesh.faces) == len(np.unique(np.sort(mesh.faces, axis=1), axis=0))  # no duplicated faces
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.03)
    assert mesh.volume > 0  # outward normals
    reference = dense_single_pass(field, windows)
    assert len(mesh.faces) == len(reference.faces)
    assert len(mesh.vertices) == len(reference.vertices)
    assert np.allclose(np.sort(mesh.vertices, axis=0), np.sort(reference.vertices, axis=0), atol=1e-6)


def test_crossing_planes_with_skipped_windows_stay_seamless():
    grid = WindowGrid(voxel_size=0.05, cells=6, margin=0.1)
    # union of a horizontal and a vertical slab, both 0.12 m thick, crossing several window borders
    def slabs(p):
        return np.minimum(np.abs(p[..., 2] - 0.61) - 0.06, np.abs(p[..., 0] - 0.89) - 0.06)

    windows = [w for w in all_windows((0, 0, 0), (4, 3, 4)) if not (w[0] == 0 and w[2] == 3)]
    field = analytic_field(grid, windows, slabs)
    mesh = extract_mesh(field)
    reference = dense_single_pass(field, windows)
    assert mesh.is_watertight
    assert len(mesh.faces) == len(reference.faces)
    assert np.allclose(np.sort(mesh.vertices, axis=0), np.sort(reference.vertices, axis=0), atol=1e-6)
    # the surface sits where the slabs are (away from the closing caps at the field's edge)
    inner = mesh.vertices[np.all((mesh.vertices > 0.15) & (mesh.vertices < [1.05, 0.8, 1.05]), axis=1)]
    error = np.abs(slabs(inner))
    assert np.percentile(error, 95) < 0.01  # exact on the flat parts
    assert error.max() <= grid.voxel_size + 1e-9  # linear interpolation is off only near the crossing


def tube_along_y():
    """A tube through 10 slabs of windows along y, 4 windows per slab."""
    grid = WindowGrid(voxel_size=0.05, cells=6, margin=0.1)  # windows of 0.3 m
    windows = all_windows((0, 0, 0), (2, 10, 2))
    return analytic_field(grid, windows, lambda p: np.hypot(p[..., 0] - 0.31, p[..., 2] - 0.29) - 0.2)


def test_streamed_blocks_are_released_slab_by_slab_into_the_one_pass_mesh():
    field = tube_along_y()
    mesher = StreamingMesher(field.grid, field.blocks, axis=1)
    for key in sorted(field.blocks, key=lambda k: (k[1], k)):
        mesher.add(key, field.blocks[key])
    # a slab's blocks go once the next slab is complete: two slabs at most, of the ten
    assert mesher.peak_blocks == 8 and mesher.field.blocks == {}
    streamed, reference = mesher.mesh(), dense_single_pass(field, list(field.blocks))
    assert streamed.is_watertight and len(streamed.faces) == len(reference.faces)
    assert np.allclose(np.sort(streamed.vertices, axis=0), np.sort(reference.vertices, axis=0), atol=1e-6)


def test_faces_dropped_block_by_block_leave_the_faces_trimming_the_whole_mesh_keeps():
    field = tube_along_y()
    below = lambda centres: centres[:, 1] < 1.2  # noqa: E731  (the tube's first 4 of 10 slabs along y)
    trimmed = StreamingMesher(field.grid, field.blocks, axis=1, keep_faces=below)
    whole = StreamingMesher(field.grid, field.blocks, axis=1)
    for key in sorted(field.blocks, key=lambda k: (k[1], k)):
        trimmed.add(key, field.blocks[key])
        whole.add(key, field.blocks[key])
    kept, reference = trimmed.mesh(), whole.mesh()
    assert trimmed.faces_marched == whole.faces_marched >= len(reference.faces) > len(kept.faces) > 0
    expected = reference.triangles[below(reference.triangles_center)]
    np.testing.assert_allclose(np.unique(kept.triangles.reshape(-1, 9).round(9), axis=0),
                               np.unique(expected.reshape(-1, 9).round(9), axis=0))
    assert len(kept.vertices) == len(np.unique(kept.faces))  # no vertex left without a face


def test_cubes_with_unevaluated_corners_hold_only_faces_past_the_band_s_trim():
    field = tube_along_y()
    tube_distance = lambda p: np.abs(np.hypot(p[..., 0] - 0.31, p[..., 2] - 0.29) - 0.2)  # noqa: E731
    k, voxel = field.grid.cells, field.grid.voxel_size
    for key, block in field.blocks.items():  # evaluated within 3 cells of the surface only, as a band
        index = np.stack(np.meshgrid(*[np.arange(k) + key[a] * k for a in range(3)], indexing="ij"), -1)
        block[tube_distance(index * voxel) > 3 * voxel] = EMPTY_LOGIT
    del field.blocks[(0, 5, 0)]  # a window nobody made: the cubes next to it are marched as before
    near_surface = lambda centres: tube_distance(centres) < voxel  # noqa: E731  (two cells inside the band)
    meshers = [StreamingMesher(field.grid, field.blocks, axis=1, keep_faces=near_surface,
                               evaluated_cubes_only=only) for only in (False, True)]
    for mesher in meshers:
        for key in sorted(field.blocks, key=lambda k: (k[1], k)):
            mesher.add(key, field.blocks[key])
    every_cube, evaluated_cubes = (mesher.mesh() for mesher in meshers)
    assert meshers[1].faces_marched < 0.85 * meshers[0].faces_marched  # the shell inside the tube is not marched
    assert len(evaluated_cubes.faces) > 0
    np.testing.assert_array_equal(evaluated_cubes.vertices, every_cube.vertices)
    np.testing.assert_array_equal(evaluated_cubes.faces, every_cube.faces)


def test_blocks_arriving_in_any_order_give_the_same_mesh():
    field = tube_along_y()
    ordered = StreamingMesher(field.grid, field.blocks, axis=1)
    for key in sorted(field.blocks):
        ordered.add(key, field.blocks[key])
    shuffled = StreamingMesher(field.grid, field.blocks, axis=1)
    keys = list(field.blocks)
    for k in np.random.default_rng(0).permutation(len(keys)):
        shuffled.add(keys[k], field.blocks[keys[k]])
    first, second = ordered.mesh(), shuffled.mesh()
    np.testing.assert_array_equal(first.vertices, second.vertices)
    np.testing.assert_array_equal(first.faces, second.faces)


def test_a_mesher_refuses_unexpected_blocks_and_a_mesh_before_the_last_block():
    field = tube_along_y()
    mesher = StreamingMesher(field.grid, field.blocks, axis=1)
    key = next(iter(field.blocks))
    mesher.add(key, field.blocks[key])
    with pytest.raises(ValueError, match="not expected or came twice"):
        mesher.add(key, field.blocks[key])
    with pytest.raises(ValueError, match="not expected"):
        mesher.add((0, 11, 0), field.blocks[key])
    with pytest.raises(ValueError, match="never arrived"):
        mesher.mesh()


def test_empty_field_gives_an_empty_mesh():
    grid = WindowGrid(voxel_size=0.1, cells=4, margin=0.1)
    field = BlockField(grid, {(0, 0, 0): np.full((4, 4, 4), EMPTY_LOGIT, np.float32)})
    mesh = extract_mesh(field)
    assert len(mesh.faces) == 0


def test_trimming_keeps_faces_near_the_points_and_colours_come_from_them():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    cap_points = sphere.vertices[sphere.vertices[:, 2] > 0.5]
    near = near_points(cKDTree(cap_points), 0.1)(sphere.triangles_center)
    gaps, _ = cKDTree(cap_points).query(sphere.triangles_center)
    np.testing.assert_array_equal(near, gaps <= 0.1)
    assert near_points(cKDTree(cap_points), 0.1)(np.zeros((0, 3))).shape == (0,)
    trimmed = trimmed_to_points(sphere, cap_points, distance=0.1)
    assert 0 < len(trimmed.faces) == near.sum() < len(sphere.faces)
    assert trimmed.vertices[:, 2].min() > 0.3
    colours = np.tile([[1.0, 0.0, 0.0]], (len(cap_points), 1))
    color_from_points(trimmed, cap_points, colours)
    assert np.all(trimmed.visual.vertex_colors[:, :3] == [255, 0, 0])


def test_compacted_keeps_the_chosen_rows_in_order_in_place(monkeypatch):
    from sa_convonet_ros import meshing

    monkeypatch.setattr(meshing, "CHUNK", 4)
    rows = np.arange(30).reshape(10, 3)
    keep = np.array([1, 0, 0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    expected = rows[keep]
    kept = meshing.compacted(rows, keep)
    np.testing.assert_array_equal(kept, expected)
    assert np.shares_memory(kept, rows)


def test_merging_drops_collapsed_and_repeated_faces_only():
    from sa_convonet_ros.meshing import collapsed_or_repeated

    merged = np.array([True, True, False, False, False, False])  # vertices that stand for several copies
    faces = np.array([[0, 1, 2],   # kept: the first of its vertex set
                      [2, 1, 0],   # the same face wound the other way: a repeat
                      [0, 0, 3],   # collapsed onto an edge by merging
                      [0, 3, 4],
                      [2, 3, 4],   # no merged vertex: merging cannot have changed it
                      [2, 4, 3]])
    np.testing.assert_array_equal(collapsed_or_repeated(faces, merged), [False, True, True, False, False, False])


@pytest.mark.parametrize("seed", range(4))
def test_a_field_with_values_exactly_at_the_level_gives_no_repeated_or_collapsed_face(seed):
    # integer logits put many grid values exactly at the level, where marching cubes repeats faces and
    # makes vertices at the same place
    grid = WindowGrid(voxel_size=0.1, cells=5, margin=0.1)
    rng = np.random.default_rng(seed)
    windows = all_windows((0, 0, 0), (2, 2, 2))
    field = BlockField(grid, {tuple(w): rng.integers(-2, 3, (5, 5, 5)).astype(np.float32) for w in windows})
    mesh = extract_mesh(field)
    rows = np.sort(mesh.faces, axis=1)
    assert len(rows) == len(np.unique(rows, axis=0))
    assert np.all((rows[:, 0] != rows[:, 1]) & (rows[:, 1] != rows[:, 2]))

    def proper_triangles(m):  # corners sorted and rounded; those with three distinct corners
        corners = np.round(m.triangles, 6)
        order = np.lexsort(corners.transpose(2, 0, 1)[::-1], axis=-1)
        corners = np.take_along_axis(corners, order[..., None], axis=1)
        distinct = np.any(corners[:, 0] != corners[:, 1], axis=1) & np.any(corners[:, 1] != corners[:, 2], axis=1)
        return np.unique(corners[distinct].reshape(-1, 9), axis=0)

    # where merging copies on block borders collapsed a face, the single pass has a face of zero extent
    np.testing.assert_allclose(proper_triangles(mesh), proper_triangles(dense_single_pass(field, windows)), atol=1e-5)


def test_a_simplified_mesh_keeps_the_surface_and_its_colours_within_the_face_budget():
    from sa_convonet_ros.meshing import simplified

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=1.0)  # 20,480 faces
    sphere.visual.vertex_colors = np.where(sphere.vertices[:, 2:] > 0, [255, 0, 0, 255], [0, 0, 255, 255])
    assert simplified(sphere, 0) is sphere and simplified(sphere, len(sphere.faces)) is sphere
    broken = sphere.copy()
    broken.vertices[0] = np.nan
    assert simplified(broken, 3000) is broken  # nothing to cluster a vertex at NaN on
    small = simplified(sphere, 3000)
    assert 1000 < len(small.faces) <= 3000
    assert np.abs(np.linalg.norm(small.vertices, axis=1) - 1.0).max() < 0.02  # on the sphere
    assert small.area == pytest.approx(sphere.area, rel=0.03)  # all of it
    top = small.vertices[:, 2] > 0.3
    assert np.all(small.visual.vertex_colors[top, 0] == 255) and np.all(small.visual.vertex_colors[~top & (
        small.vertices[:, 2] < -0.3), 2] == 255)


def test_a_change_in_one_place_changes_the_simplified_mesh_there_only():
    """What the node's marker blocks rely on: unchanged parts of a mesh simplify to the same triangles."""
    from sa_convonet_ros.meshing import simplified

    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    for _ in range(5):
        floor = floor.subdivide()  # 12,288 faces
    floor.apply_translation((2.0, 2.0, 0.0))
    box = trimesh.creation.icosphere(subdivisions=1, radius=0.2)  # 80 faces
    box.apply_translation((-0.3, -0.3, 0.2))  # beyond the floor's corner: the mesh's extent changes too
    grown = trimesh.util.concatenate([floor, box])
    before, after = (simplified(mesh, len(floor.faces) // 4) for mesh in (floor, grown))
    assert len(before.faces) <= len(floor.faces) // 4 and len(after.faces) <= len(floor.faces) // 4

    def far_triangles(mesh):
        triangles = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]
        far = np.linalg.norm(triangles.mean(axis=1)[:, :2] - [-0.3, -0.3], axis=1) > 1.0
        return np.unique(np.round(triangles[far], 9).reshape(-1, 9), axis=0)

    np.testing.assert_array_equal(far_triangles(before), far_triangles(after))
    assert len(far_triangles(before)) > 0.5 * len(before.faces)


def test_assembling_snapping_and_colouring_hold_little_more_than_the_mesh(monkeypatch):
    import tracemalloc

    from scipy.spatial import cKDTree

    from sa_convonet_ros import meshing, refine

    for module in (meshing, refine):  # the chunks' bounded temporaries, small beside this mesh
        monkeypatch.setattr(module, "CHUNK", 1024)
    grid = WindowGrid(voxel_size=0.01, cells=20, margin=0.1)
    centre, radius = np.array([0.41, 0.38, 0.43]), 0.35
    field = analytic_field(grid, all_windows((0, 0, 0), (4, 4, 4)),
                           lambda p: np.linalg.norm(p - centre, axis=-1) - radius)
    mesher = StreamingMesher(grid, field.blocks)
    for key in sorted(field.blocks):
        mesher.add(key, field.blocks[key])
    directions = np.random.default_rng(0).normal(size=(50_000, 3))
    points = centre + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    tree = cKDTree(points)
    tracemalloc.start()  # numpy reports its arrays to tracemalloc
    try:
        mesh = mesher.mesh()
        snapped = snap_to_points(mesh, points, 0.01, tree=tree)
        color_from_points(snapped, points, np.full((len(points), 3), 0.5), tree)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    mesh_bytes = np.asarray(mesh.vertices).nbytes + np.asarray(mesh.faces).nbytes
    assert len(mesh.faces) > 40_000
    # the mesh, its snapped vertices, colours: about 2.3x; whole-mesh temporaries made 16x
    assert peak < 3.5 * mesh_bytes


def test_the_trim_reaches_farther_around_sparse_points_up_to_its_cap():
    from sa_convonet_ros.meshing import MAX_TRIM_STRETCH, point_gaps, trim_reach

    def patch(x0, spacing):
        return np.stack(np.meshgrid(np.arange(x0, x0 + 1, spacing), np.arange(0, 1, spacing), [0.0], indexing="ij"),
                        -1).reshape(-1, 3)

    dense, sparse = patch(0.0, 0.01), patch(2.0, 0.04)
    lonely = np.array([[5.0, 5.0, 5.0], [5.5, 5.0, 5.0], [5.0, 5.5, 5.0], [5.5, 5.5, 5.0]])
    tree = cKDTree(np.vstack([dense, sparse, lonely]))
    assert trim_reach(point_gaps(tree), 0.02, 0.0) is None
    reach = trim_reach(point_gaps(tree), 0.02, 1.0)
    parts = np.split(reach, [len(dense), len(dense) + len(sparse)])
    assert np.allclose(parts[0], 0.02)  # 1 cm apart: the trim distance itself
    assert np.median(parts[1]) == pytest.approx(0.04, rel=0.01)  # 4 cm apart: their spacing
    assert np.allclose(parts[2], MAX_TRIM_STRETCH * 0.02)  # half a metre apart: no more than the cap
    near = near_points(tree, 0.02, reach)
    assert near(np.array([[0.5, 0.5, 0.03], [2.48, 0.48, 0.035], [2.48, 0.48, 0.05], [5.25, 5.25, 5.0]])).tolist() == [
        False, True, False, False]


def test_the_wider_reach_keeps_the_gaps_between_points_not_the_surface_past_their_edge():
    from sa_convonet_ros.meshing import point_gaps, surrounded, trim_reach

    # a wall seen at a grazing angle: rows of points 3 cm apart along x, 6 cm apart along y, the last at y = 0.48
    rows = np.stack(np.meshgrid(np.arange(0, 1, 0.03), np.arange(0, 0.5, 0.06), [0.0], indexing="ij"),
                    -1).reshape(-1, 3)
    tree = cKDTree(rows)
    gap, beyond = np.array([[0.465, 0.27, 0.0]]), np.array([[0.465, 0.51, 0.0]])  # both 3.4 cm from a point
    assert surrounded(tree, gap, 0.6).tolist() == [True] and surrounded(tree, beyond, 0.6).tolist() == [False]
    reach = trim_reach(point_gaps(tree), 0.02, 1.0)
    positions = np.vstack([gap, beyond, [[0.465, 0.49, 0.0]]])  # the last within the trim distance itself
    assert near_points(tree, 0.02, reach)(positions).tolist() == [True, True, True]
    assert near_points(tree, 0.02, reach, surround=0.6)(positions).tolist() == [True, False, True]
    assert surrounded(tree, np.zeros((0, 3)), 0.6).shape == (0,)


def test_a_piece_keeps_the_chosen_faces_and_only_their_vertices_in_order():
    from sa_convonet_ros.meshing import MeshPiece

    vertices = np.arange(18, dtype=np.float32).reshape(6, 3)
    faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 0], [1, 3, 5]], dtype=np.int32)
    keep = np.array([False, True, False, True])
    kept = MeshPiece((0, 0, 0), vertices, faces).kept(keep)
    np.testing.assert_array_equal(kept.vertices, vertices[[1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(kept.vertices[kept.faces], vertices[faces[keep]])
    assert kept.faces.dtype == np.int32
    none = MeshPiece((0, 0, 0), vertices, faces).kept(np.zeros(4, dtype=bool))
    assert none.vertices.shape == (0, 3) and none.faces.shape == (0, 3)
