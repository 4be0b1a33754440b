"""Mesh -> RViz MarkerArray and shape_msgs/Mesh."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from shape_msgs.msg import Mesh
from visualization_msgs.msg import Marker, MarkerArray

from sa_convonet_ros.ros.markers import (
    confidence_colors,
    height_colors,
    mesh_to_markers,
    mesh_to_shape_msg,
    vertex_confidence,
)

COLOR_TOL = 0.5 / 255 + 1e-6  # marker colours are quantised to 8 bits per channel


def _grid_mesh(n=6):
    """An (n x n)-vertex height field: 2 (n-1)^2 triangles with varied z."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vertices = np.stack([i.ravel() * 0.1, j.ravel() * 0.1, np.sin(i.ravel() + j.ravel())], axis=1)
    index = np.arange(n * n).reshape(n, n)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[:-1, 1:].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    colors = np.random.default_rng(0).random((n * n, 3))
    return vertices, faces, colors


def _xyz(points):
    return np.array([[p.x, p.y, p.z] for p in points])


def _rgba(colors):
    return np.array([[c.r, c.g, c.b, c.a] for c in colors])


def _triangle_markers(array):
    return [m for m in array.markers if m.type == Marker.TRIANGLE_LIST]


def test_delete_all_first_then_triangle_list():
    vertices, faces, colors = _grid_mesh()
    array = mesh_to_markers(vertices, faces, "map", colors=colors)

    assert isinstance(array, MarkerArray)
    clear = array.markers[0]
    assert clear.action == Marker.DELETEALL == 3
    assert clear.ns == "reconstruction"
    assert len(array.markers) == 2
    marker = array.markers[1]
    assert marker.type == Marker.TRIANGLE_LIST == 11
    assert marker.action == Marker.ADD
    assert marker.id == 0 and marker.ns == "reconstruction"


def test_triangle_list_geometry_and_frame():
    vertices, faces, colors = _grid_mesh()
    marker = mesh_to_markers(vertices, faces, "odom", colors=colors).markers[1]

    assert marker.header.frame_id == "odom"
    assert (marker.header.stamp.sec, marker.header.stamp.nanosec) == (0, 0)
    p, q = marker.pose.position, marker.pose.orientation
    assert (p.x, p.y, p.z, q.x, q.y, q.z, q.w) == (0, 0, 0, 0, 0, 0, 1)
    assert (marker.scale.x, marker.scale.y, marker.scale.z) == (1, 1, 1)
    assert marker.color.a == 1.0
    assert len(marker.points) == 3 * len(faces)
    np.testing.assert_array_equal(_xyz(marker.points), vertices[faces.ravel()])
    assert (marker.lifetime.sec, marker.lifetime.nanosec) == (0, 0)


def test_rgb_colours_follow_vertices():
    vertices, faces, colors = _grid_mesh()
    marker = mesh_to_markers(vertices, faces, "map", colors=colors, color_mode="rgb").markers[1]

    assert len(marker.colors) == len(marker.points)
    rgba = _rgba(marker.colors)
    np.testing.assert_allclose(rgba[:, :3], colors[faces.ravel()], atol=COLOR_TOL)
    assert np.all(rgba[:, 3] == 1.0)


def test_height_colours_follow_z():
    vertices, faces, _ = _grid_mesh()
    marker = mesh_to_markers(vertices, faces, "map", color_mode="height").markers[1]

    expected = height_colors(vertices[:, 2])[faces.ravel()]
    np.testing.assert_allclose(_rgba(marker.colors)[:, :3], expected, atol=COLOR_TOL)


def test_rgb_mode_without_colours_falls_back_to_height():
    vertices, faces, _ = _grid_mesh()
    marker = mesh_to_markers(vertices, faces, "map").markers[1]
    expected = height_colors(vertices[:, 2])[faces.ravel()]
    np.testing.assert_allclose(_rgba(marker.colors)[:, :3], expected, atol=COLOR_TOL)


def test_confidence_is_one_where_observed_and_falls_to_zero_at_the_trim_distance():
    observed = np.array([[0.0, 0.0, 0.0]])
    heights = [0.0, 0.01, 0.015, 0.02, 0.03, 0.05]  # distances to the one observed point, by hand
    vertices = np.c_[np.zeros(6), np.zeros(6), heights]
    # a 1 cm grid trimmed at 2 cm (auto:cpu): green within a cell, red at the trim, the farthest kept
    np.testing.assert_allclose(vertex_confidence(vertices, observed, 0.01, 0.02), [1, 1, 0.5, 0, 0, 0], atol=1e-9)
    # the same run on a sparse map: grid and trim grown together (1.5 cm, 3 cm)
    np.testing.assert_allclose(vertex_confidence(vertices, observed, 0.015, 0.03),
                               [1, 1, 1, 1 - 0.005 / 0.015, 0, 0], atol=1e-9)
    # no trim (nan or None): red at four cells
    for off in (None, float("nan")):
        np.testing.assert_allclose(vertex_confidence(vertices, observed, 0.01, off),
                                   [1, 1, 1 - 0.005 / 0.03, 1 - 0.01 / 0.03, 1 - 0.02 / 0.03, 0], atol=1e-9)
    assert vertex_confidence(np.zeros((0, 3)), observed, 0.02).shape == (0,)


def test_a_gap_the_prior_filled_comes_out_red_and_the_observed_surface_green():
    # A floor scanned 1 cm apart with a 40 cm square never seen, meshed whole (trim off, as a filled hole).
    grid = np.stack(np.meshgrid(np.arange(0, 1.0, 0.01), np.arange(0, 1.0, 0.01), indexing="ij"), -1).reshape(-1, 2)
    seen = grid[~np.all((grid > 0.3) & (grid < 0.7), axis=1)]
    observed = np.c_[seen, np.zeros(len(seen))]
    vertices = np.c_[grid, np.zeros(len(grid))]
    colors = confidence_colors(vertex_confidence(vertices, observed, 0.01, None))
    gap_distance = np.min(np.abs(np.stack([grid - 0.3, 0.7 - grid], -1)).reshape(len(grid), -1), axis=1)
    inside = np.all((grid > 0.3) & (grid < 0.7), axis=1)
    red = (colors[:, 0] > 0.8) & (colors[:, 1] < 0.2)
    green = (colors[:, 1] > 0.75) & (colors[:, 0] < 0.2)
    assert red[inside & (gap_distance >= 0.04)].all()  # four cells or more from any point: the prior's
    assert green[~inside].all()  # observed surface
    assert red.sum() == (inside & (gap_distance >= 0.04 - 1e-9)).sum()


def test_confidence_colours_run_from_red_through_yellow_to_green():
    red, yellow, green = confidence_colors([0.0, 0.5, 1.0])
    assert red[0] > 0.8 and red[1] < 0.2 and green[1] > 0.7 and green[0] < 0.2 and yellow[:2].min() > 0.75
    vertices, faces, _ = _grid_mesh()
    confidence = np.linspace(0.0, 1.0, len(vertices))
    marker = mesh_to_markers(vertices, faces, "map", confidence=confidence, color_mode="confidence").markers[1]
    np.testing.assert_allclose(_rgba(marker.colors)[:, :3], confidence_colors(confidence)[faces.ravel()],
                               atol=COLOR_TOL)
    with pytest.raises(ValueError, match="needs the per-vertex confidence"):
        mesh_to_markers(vertices, faces, "map", color_mode="confidence")
    with pytest.raises(ValueError, match="one value per vertex"):
        mesh_to_markers(vertices, faces, "map", confidence=confidence[:3], color_mode="confidence")


def test_uniform_colour_is_the_marker_colour():
    vertices, faces, colors = _grid_mesh()
    marker = mesh_to_markers(vertices, faces, "map", colors=colors, color_mode="uniform",
                             uniform_color=(0.2, 0.4, 0.6, 1.0)).markers[1]
    # No per-point colours: RViz then lights the surface with the marker colour.
    assert len(marker.colors) == 0
    np.testing.assert_allclose(_rgba([marker.color])[0], [0.2, 0.4, 0.6, 1.0], atol=1e-6)


@pytest.mark.parametrize("limit, expected_sizes", [(4, [4, 4, 2]), (5, [5, 5]), (10, [10]),
                                                    (1000, [10])])
def test_split_at_triangle_limit(limit, expected_sizes):
    vertices, faces, colors = _grid_mesh(n=6)
    faces = faces[:10]
    array = mesh_to_markers(vertices, faces, "map", colors=colors, max_triangles_per_marker=limit)

    markers = _triangle_markers(array)
    assert [len(m.points) // 3 for m in markers] == expected_sizes
    assert [m.id for m in markers] == list(range(len(expected_sizes)))
    assert all(len(m.points) % 3 == 0 and len(m.colors) == len(m.points) for m in markers)
    all_points = np.concatenate([_xyz(m.points) for m in markers])
    np.testing.assert_array_equal(all_points, vertices[faces.ravel()])


@pytest.mark.parametrize("vertices, faces", [
    (np.empty((0, 3)), np.empty((0, 3), dtype=int)),
    (np.random.default_rng(0).random((5, 3)), np.empty((0, 3), dtype=int)),
    (np.empty((0, 3)), []),
])
def test_empty_mesh_only_clears(vertices, faces):
    array = mesh_to_markers(vertices, faces, "map")
    assert len(array.markers) == 1
    assert array.markers[0].action == Marker.DELETEALL
    assert not _triangle_markers(array)


def test_lifetime_and_namespace():
    vertices, faces, _ = _grid_mesh(n=3)
    array = mesh_to_markers(vertices, faces, "map", namespace="mesh", lifetime=1.5)
    marker = array.markers[1]
    assert marker.ns == "mesh" and array.markers[0].ns == "mesh"
    assert (marker.lifetime.sec, marker.lifetime.nanosec) == (1, 500_000_000)


def test_marker_array_serialises():
    vertices, faces, colors = _grid_mesh(n=12)
    array = mesh_to_markers(vertices, faces, "map", colors=colors, max_triangles_per_marker=50)
    received = deserialize_message(serialize_message(array), MarkerArray)
    assert len(received.markers) == len(array.markers)
    sent_points = np.concatenate([_xyz(m.points) for m in _triangle_markers(array)])
    got_points = np.concatenate([_xyz(m.points) for m in _triangle_markers(received)])
    np.testing.assert_array_equal(got_points, sent_points)


@pytest.mark.parametrize("vertices, faces, message", [
    (np.zeros((4, 2)), [[0, 1, 2]], "vertices"),
    (np.zeros((4, 3)), [[0, 1, 4]], "outside"),
    (np.zeros((4, 3)), [[0, -1, 2]], "outside"),
    (np.zeros((4, 3)), [[0, 1]], "faces must have shape"),
    (np.zeros((4, 3)), [[0.0, 1.0, 2.0]], "integer"),
])
def test_invalid_mesh(vertices, faces, message):
    with pytest.raises(ValueError, match=message):
        mesh_to_markers(vertices, faces, "map")


def test_invalid_options():
    vertices, faces, colors = _grid_mesh(n=3)
    with pytest.raises(ValueError, match="color_mode"):
        mesh_to_markers(vertices, faces, "map", color_mode="rainbow")
    with pytest.raises(ValueError, match="colors must have shape"):
        mesh_to_markers(vertices, faces, "map", colors=colors[:-1])
    with pytest.raises(ValueError, match="max_triangles_per_marker"):
        mesh_to_markers(vertices, faces, "map", max_triangles_per_marker=0)


def test_height_colors_ramp():
    z = np.linspace(-3.0, 5.0, 50)
    rgb = height_colors(z)
    assert rgb.shape == (50, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert not np.allclose(rgb[0], rgb[-1])
    flat = height_colors(np.full(7, 2.0))
    assert np.all(flat == flat[0])
    assert height_colors(np.empty(0)).shape == (0, 3)


def test_shape_msg():
    vertices, faces, _ = _grid_mesh(n=4)
    mesh = mesh_to_shape_msg(vertices, faces)
    assert isinstance(mesh, Mesh)
    np.testing.assert_array_equal(_xyz(mesh.vertices), vertices)
    indices = np.array([t.vertex_indices for t in mesh.triangles])
    np.testing.assert_array_equal(indices, faces)
    assert indices.dtype == np.uint32
    received = deserialize_message(serialize_message(mesh), Mesh)
    np.testing.assert_array_equal(np.array([t.vertex_indices for t in received.triangles]), faces)
