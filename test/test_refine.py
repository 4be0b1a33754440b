"""The finished mesh: snapped onto the points' planes, smoothed inside its borders."""
import numpy as np
import trimesh
from scipy.spatial import cKDTree

from sa_convonet_ros.denoise import plane_fits
from sa_convonet_ros.refine import (
    _vertex_normals,
    border_vertices,
    smooth_inside_borders,
    snap_to_points,
    umbrella_operator,
)


def test_snapping_moves_vertices_onto_the_points_plane_by_at_most_the_distance():
    plane = trimesh.creation.box(extents=(1.0, 1.0, 0.2))  # top face at z = 0.1
    plane = plane.subdivide().subdivide().subdivide()
    ticks = np.linspace(-0.5, 0.5, 60)
    x, y = np.meshgrid(ticks, ticks)
    points = np.c_[x.ravel(), y.ravel(), np.full(x.size, 0.103)]  # 3 mm above the top face
    before = np.asarray(plane.vertices)
    snapped = np.asarray(snap_to_points(plane, points, distance=0.01, reach=4.0).vertices)
    top = before[:, 2] > 0.09
    interior = top & (np.abs(before[:, :2]) < 0.45).all(axis=1)
    np.testing.assert_allclose(snapped[interior, 2], 0.103, atol=1e-9)
    # every vertex moves along the points' plane normal only; those beyond 4 cm of every point stay
    np.testing.assert_array_equal(snapped[:, :2], before[:, :2])
    far = before[:, 2] < 0.103 - 0.04
    assert far.any() and np.array_equal(snapped[far], before[far])
    wider = np.asarray(snap_to_points(plane, points, distance=0.01, reach=8.0).vertices)  # within 8 cm
    reached = far & (before[:, 2] > 0.103 - 0.075)
    assert reached.any() and np.allclose(wider[reached, 2], before[reached, 2] + 0.01)
    farther = before[:, 2] < 0.103 - 0.085
    assert farther.any() and np.array_equal(wider[farther], before[farther])
    limited = snap_to_points(plane, points, distance=0.001, reach=4.0)
    assert np.abs(np.asarray(limited.vertices) - before).max() <= 0.001 + 1e-12


def test_a_border_vertex_snapped_from_afar_moves_along_its_own_normal_only():
    """Points 4.5-5.5 cm above a flat sheet, on a slightly tilted plane: beyond 4 x the snap distance the
    interior follows the plane's normal, while the sheet's rim moves straight up and stays where it was
    across the surface (the trimmed edge does not open further)."""
    ticks = np.linspace(0.0, 0.2, 21)
    x, y = np.meshgrid(ticks, ticks, indexing="ij")
    vertices = np.c_[x.ravel(), y.ravel(), np.zeros(x.size)]
    corner = (np.arange(20)[:, None] * 21 + np.arange(20)[None, :]).ravel()
    faces = np.r_[np.c_[corner, corner + 21, corner + 22], np.c_[corner, corner + 22, corner + 1]]
    sheet = trimesh.Trimesh(vertices, faces, process=False)
    ticks = np.arange(-0.05, 0.25, 0.005)
    px, py = np.meshgrid(ticks, ticks, indexing="ij")
    points = np.c_[px.ravel(), py.ravel(), 0.045 + 0.05 * px.ravel()]
    assert np.array_equal(snap_to_points(sheet, points, distance=0.01, reach=4.0).vertices, vertices)
    snapped = np.asarray(snap_to_points(sheet, points, distance=0.01, reach=6.0).vertices)
    rim = (np.isclose(vertices[:, :2], 0.0) | np.isclose(vertices[:, :2], 0.2)).any(axis=1)
    normal = np.array([-0.05, 0.0, 1.0]) / np.hypot(0.05, 1.0)
    np.testing.assert_allclose(snapped[~rim] - vertices[~rim], np.tile(0.01 * normal, ((~rim).sum(), 1)), atol=1e-9)
    np.testing.assert_array_equal(snapped[rim, :2], vertices[rim, :2])
    np.testing.assert_allclose(snapped[rim, 2], 0.01 * normal[2], atol=1e-9)


def test_snapping_a_stepped_surface_lands_on_the_points_whatever_its_normals():
    """A gentle slope meshed as steps: the risers' vertices have normals far from the slope's (as a coarse
    grid's surface does); snapping brings every vertex near the points onto them all the same."""
    tread, slope = 0.02, 0.5  # a plane z = slope * x, stepped every 2 cm, each riser split at its middle
    rise = slope * tread
    profile = [(i * tread + dx, i * rise + dz) for i in range(50) for dx, dz in
               ((0.0, 0.0), (tread, 0.0), (tread, rise / 2))]
    ys = np.arange(0.0, 1.0, 0.02)
    vertices = np.array([(x, y, z - rise / 2) for y in ys for x, z in profile])
    count = len(profile)
    quads = [(j * count + i, j * count + i + 1, (j + 1) * count + i + 1, (j + 1) * count + i)
             for j in range(len(ys) - 1) for i in range(count - 1)]
    faces = np.array([f for a, b, c, d in quads for f in ((a, b, c), (a, c, d))])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.0, 1.0, 20_000), rng.uniform(0.0, 1.0, 20_000)
    points = np.c_[x, y, slope * x]
    normal = np.array([-slope, 0.0, 1.0]) / np.hypot(slope, 1.0)
    inner = np.all((vertices[:, :2] > 0.1) & (vertices[:, :2] < 0.9), axis=1)
    steep = np.abs(mesh.vertex_normals[inner] @ normal) < 0.7
    assert steep.any() and np.abs(vertices[inner] @ normal).max() > 1e-3
    snapped = np.asarray(snap_to_points(mesh, points, distance=tread).vertices)
    assert np.abs(snapped[inner] @ normal).max() < 1e-9


def test_snapping_onto_a_curved_surface_anchors_the_plane_at_the_nearest_points():
    """On a small sphere the mean of six neighbours lies inside the surface; the plane through the three
    nearest ones' mean lands the vertices nearer to it, and anchoring at all six is the plain plane fit."""
    radius = 0.05
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(600, 3))  # about 7 mm apart
    points = radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius + 0.005)

    def radial_error(anchors):
        snapped = snap_to_points(sphere, points, distance=0.01, neighbours=6, anchors=anchors)
        return np.abs(np.linalg.norm(snapped.vertices, axis=1) - radius)

    nearest, all_six = radial_error(3), radial_error(6)
    assert np.median(nearest) < 0.8 * np.median(all_six)
    assert np.median(all_six) > 3e-4  # the flattening the anchors remove is there to see
    mean, normal, _ = plane_fits(points, cKDTree(points).query(sphere.vertices, k=6)[1])
    plain = sphere.vertices - np.einsum("ni,ni->n", sphere.vertices - mean, normal)[:, None] * normal
    np.testing.assert_allclose(snap_to_points(sphere, points, 0.01, 6, anchors=6).vertices, plain, atol=1e-12)


def _noisy_sheet(cells: int = 40, spacing: float = 0.01, noise: float = 0.002, seed: int = 0) -> trimesh.Trimesh:
    """A flat square sheet at z = 0, its vertices jittered along z (as snapped vertices are)."""
    ticks = np.arange(cells + 1) * spacing
    x, y = np.meshgrid(ticks, ticks, indexing="ij")
    z = np.random.default_rng(seed).normal(0.0, noise, x.shape)
    index = np.arange(x.size).reshape(x.shape)
    a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
    faces = np.r_[np.c_[a.ravel(), b.ravel(), c.ravel()], np.c_[a.ravel(), c.ravel(), d.ravel()]]
    return trimesh.Trimesh(np.c_[x.ravel(), y.ravel(), z.ravel()], faces, process=False)


def test_smoothing_evens_out_tilted_faces_and_holds_the_border():
    sheet = _noisy_sheet()
    sheet.visual.vertex_colors = np.tile([10, 20, 30, 255], (len(sheet.vertices), 1)).astype(np.uint8)
    smoothed = smooth_inside_borders(sheet, 4)
    tilt = [np.mean(1.0 - np.abs(mesh.face_normals[:, 2])) for mesh in (sheet, smoothed)]
    assert tilt[1] < 0.5 * tilt[0]
    before, after = np.asarray(sheet.vertices), np.asarray(smoothed.vertices)
    border = (np.isclose(before[:, :2], 0.0) | np.isclose(before[:, :2], 0.4)).any(axis=1)
    np.testing.assert_array_equal(after[border], before[border])
    assert np.abs(after[~border] - before[~border]).max() > 1e-4
    assert abs(after[:, 2].mean()) < 2e-4  # no drift off the sheet
    np.testing.assert_array_equal(smoothed.faces, sheet.faces)
    np.testing.assert_array_equal(smoothed.visual.vertex_colors, sheet.visual.vertex_colors)
    assert smooth_inside_borders(sheet, 0) is sheet


def test_smoothing_does_not_shrink_a_closed_surface():
    """Taubin's inflating passes undo the shrinking ones': a ball keeps its radius where plain Laplacian
    passes of the same count shrink it."""
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    rng = np.random.default_rng(1)
    ball.vertices = ball.vertices * (1.0 + rng.normal(0.0, 0.01, (len(ball.vertices), 1)))
    radius = np.linalg.norm(smooth_inside_borders(ball, 10).vertices, axis=1).mean()
    shrunk = trimesh.smoothing.filter_laplacian(ball.copy(), lamb=0.5, iterations=10, volume_constraint=False)
    assert abs(radius - 0.1) < 0.001 < 0.1 - np.linalg.norm(shrunk.vertices, axis=1).mean()


def test_the_umbrella_operator_is_trimeshs_laplacian_with_the_border_pinned():
    ball = trimesh.creation.icosphere(subdivisions=2)
    opened = trimesh.Trimesh(ball.vertices, ball.faces[1:], process=False)  # a hole where face 0 was
    for mesh in (_noisy_sheet(cells=5), ball, opened):
        border = np.unique(mesh.outline().vertex_nodes) if mesh is not ball else None
        expected = trimesh.smoothing.laplacian_calculation(mesh, pinned_vertices=border).toarray()
        np.testing.assert_allclose(umbrella_operator(np.asarray(mesh.faces), len(mesh.vertices)).toarray(), expected)
    np.testing.assert_array_equal(np.unique(opened.outline().vertex_nodes), np.sort(ball.faces[0]))
    loose = umbrella_operator(np.asarray(ball.faces), len(ball.vertices) + 1)  # a vertex on no face stays
    assert loose[len(ball.vertices), len(ball.vertices)] == 1.0


def test_border_vertices_and_the_normals_of_a_few_are_trimeshs():
    ball = trimesh.creation.icosphere(subdivisions=3)
    opened = trimesh.Trimesh(ball.vertices * [1.0, 0.7, 1.3], ball.faces[ball.triangles_center[:, 2] < 0.6],
                             process=False)  # an egg with its top cut off
    border = border_vertices(np.asarray(opened.faces), len(opened.vertices))
    np.testing.assert_array_equal(np.flatnonzero(border), np.unique(opened.outline().vertex_nodes))
    assert not border_vertices(np.asarray(ball.faces), len(ball.vertices)).any()
    which = border.copy()
    which[::7] = True
    np.testing.assert_array_equal(_vertex_normals(np.asarray(opened.vertices), np.asarray(opened.faces), which),
                                  opened.vertex_normals[which])
