"""Round trips and error messages of point-cloud / mesh file I/O."""
import numpy as np
import open3d as o3d
import pytest
import trimesh

from sa_convonet_ros.io import PointCloudData, check_mesh_path, read_point_cloud, write_mesh, write_point_cloud


@pytest.fixture
def cloud():
    rng = np.random.default_rng(0)
    return rng.uniform(-2, 2, (200, 3)), rng.uniform(0, 1, (200, 3)).astype(np.float32)


@pytest.mark.parametrize("extension", [".ply", ".pcd", ".npy", ".xyz"])
def test_point_cloud_round_trip_with_colors(tmp_path, cloud, extension):
    points, colors = cloud
    path = write_point_cloud(points, tmp_path / "sub" / f"cloud{extension}", colors)
    loaded = read_point_cloud(path)
    assert isinstance(loaded, PointCloudData)
    assert loaded.points.dtype == np.float64 and loaded.points.shape == (200, 3)
    np.testing.assert_allclose(loaded.points, points, atol=1e-5)
    assert loaded.colors is not None and loaded.colors.dtype == np.float32
    np.testing.assert_allclose(loaded.colors, colors, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("extension", [".ply", ".pcd", ".npy", ".xyz"])
def test_point_cloud_round_trip_without_colors(tmp_path, cloud, extension):
    points, _ = cloud
    loaded = read_point_cloud(write_point_cloud(points, tmp_path / f"cloud{extension}"))
    np.testing.assert_allclose(loaded.points, points, atol=1e-5)
    assert loaded.colors is None


def test_text_formats_detect_color_range_and_header(tmp_path):
    (tmp_path / "a.txt").write_text("# x y z r g b\n0 0 0 255 0 128\n1 2 3 0 255 0\n")
    loaded = read_point_cloud(tmp_path / "a.txt")
    np.testing.assert_allclose(loaded.colors[0], [1.0, 0.0, 128 / 255], atol=1e-6)
    (tmp_path / "b.pts").write_text("2\n0 0 0 0.5 0.5 0.5\n1 1 1 1 0 0\n")
    loaded = read_point_cloud(tmp_path / "b.pts")
    assert len(loaded) == 2
    np.testing.assert_allclose(loaded.colors[0], [0.5, 0.5, 0.5])
    (tmp_path / "c.xyz").write_text("0 0 0 7\n1 1 1 9\n")  # xyz + intensity: no colours
    assert read_point_cloud(tmp_path / "c.xyz").colors is None


def test_npz_with_points_colors_and_normals(tmp_path, cloud):
    points, colors = cloud
    normals = np.tile([0.0, 0.0, 1.0], (len(points), 1))
    np.savez(tmp_path / "c.npz", points=points, colors=(colors * 255).astype(np.uint8), normals=normals)
    loaded = read_point_cloud(tmp_path / "c.npz")
    np.testing.assert_allclose(loaded.points, points)
    np.testing.assert_allclose(loaded.colors, colors, atol=1 / 255)
    np.testing.assert_allclose(loaded.normals, normals)


def test_nan_points_are_kept_for_the_caller(tmp_path):
    points = np.array([[0.0, 0, 0], [np.nan, 1, 1], [2, 2, 2]])
    for extension in (".npy", ".ply"):
        loaded = read_point_cloud(write_point_cloud(points, tmp_path / f"nan{extension}"))
        assert len(loaded) == 3
        np.testing.assert_array_equal(loaded.finite_mask(), [True, False, True])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        read_point_cloud(tmp_path / "missing.ply")


def test_unknown_extension_lists_supported(tmp_path):
    (tmp_path / "cloud.las").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"cloud\.las.*\.ply.*\.npz"):
        read_point_cloud(tmp_path / "cloud.las")


@pytest.mark.parametrize("array", [np.zeros((5, 4)), np.zeros(9), np.zeros((2, 3, 3))])
def test_npy_wrong_shape(tmp_path, array):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=r"bad\.npy.*shape"):
        read_point_cloud(tmp_path / "bad.npy")


def test_zero_points(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"empty\.npy.*zero points"):
        read_point_cloud(tmp_path / "empty.npy")
    (tmp_path / "empty.xyz").write_text("# nothing\n")
    with pytest.raises(ValueError, match="zero points"):
        read_point_cloud(tmp_path / "empty.xyz")


def test_non_numeric(tmp_path):
    (tmp_path / "words.xyz").write_text("1 2 3\na b c\n")
    with pytest.raises(ValueError, match=r"words\.xyz.*numeric"):
        read_point_cloud(tmp_path / "words.xyz")
    np.save(tmp_path / "strings.npy", np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match=r"strings\.npy.*not numeric"):
        read_point_cloud(tmp_path / "strings.npy")


def test_npz_without_points_key(tmp_path):
    np.savez(tmp_path / "c.npz", xyz=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'points'"):
        read_point_cloud(tmp_path / "c.npz")


@pytest.mark.parametrize("extension", [".ply", ".glb"])
def test_write_mesh_keeps_vertex_colors(tmp_path, extension):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    colors = np.zeros((len(mesh.vertices), 4), dtype=np.uint8)
    colors[:, 0], colors[:, 3] = np.arange(len(mesh.vertices)) % 256, 255
    mesh.visual.vertex_colors = colors
    path = write_mesh(mesh, tmp_path / "nested" / f"mesh{extension}")
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces)
    np.testing.assert_array_equal(np.asarray(loaded.visual.vertex_colors)[:, :3], colors[:, :3])


@pytest.mark.parametrize("extension", [".obj", ".stl", ".off"])
def test_write_mesh_other_formats(tmp_path, extension):
    mesh = trimesh.creation.box()
    loaded = trimesh.load(write_mesh(mesh, tmp_path / f"box{extension}"), force="mesh")
    assert np.isclose(loaded.volume, 1.0)


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match=r"mesh\.fbx.*\.ply"):
        write_mesh(trimesh.creation.box(), tmp_path / "mesh.fbx")
    with pytest.raises(ValueError, match="cloud.las"):
        write_point_cloud(np.zeros((3, 3)), tmp_path / "cloud.las")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_point_cloud(np.zeros((3, 2)), tmp_path / "cloud.ply")


def _far_mesh(offset):
    """An icosphere at `offset` metres with per-vertex colours, vertices off any float32 grid."""
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.vertices = mesh.vertices + np.asarray(offset) + 0.123456789
    colors = np.zeros((len(mesh.vertices), 4), dtype=np.uint8)
    colors[:, 1], colors[:, 3] = np.arange(len(mesh.vertices)) % 256, 255
    mesh.visual.vertex_colors = colors
    return mesh


@pytest.mark.parametrize("extension", [".ply", ".glb", ".obj", ".off"])
def test_meshes_far_from_the_origin_round_trip(tmp_path, extension):
    """A map in UTM coordinates (+1e6 m): float32 vertices would land on a 6.25 cm grid."""
    mesh = _far_mesh([1e6, 2e6, 10.0])
    loaded = trimesh.load(write_mesh(mesh, tmp_path / f"far{extension}"), force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces)
    assert np.abs(loaded.vertices - mesh.vertices).max() < 1e-6


def test_far_ply_is_read_exactly_by_open3d_with_its_colours(tmp_path):
    mesh = _far_mesh([1e6, -3e5, 0.0])
    loaded = o3d.io.read_triangle_mesh(str(write_mesh(mesh, tmp_path / "far.ply")))
    np.testing.assert_array_equal(np.asarray(loaded.vertices), mesh.vertices)
    np.testing.assert_allclose(np.asarray(loaded.vertex_colors) * 255, mesh.visual.vertex_colors[:, :3])


def test_stl_far_from_the_origin_is_refused_before_and_at_writing(tmp_path):
    with pytest.raises(ValueError, match=r"could not write .*far\.stl: STL stores float32"):
        write_mesh(_far_mesh([1e6, 0.0, 0.0]), tmp_path / "far.stl")
    with pytest.raises(ValueError, match="STL stores float32"):
        check_mesh_path(tmp_path / "far.stl", max_abs_coordinate=5e5)
    assert check_mesh_path(tmp_path / "near.stl", max_abs_coordinate=100.0) == tmp_path / "near.stl"


def test_empty_mesh_writes_a_valid_ply(tmp_path):
    path = write_mesh(trimesh.Trimesh(), tmp_path / "empty.ply")
    assert o3d.io.read_triangle_mesh(str(path)).is_empty()


@pytest.mark.parametrize("name, phrase", [
    ("out.ply/", "names a directory"),
    ("folder", "names a directory"),
    ("mesh.fbx", "unsupported mesh extension"),
    ("a_file.txt/mesh.ply", "is a file, not a folder"),
])
def test_mesh_paths_are_checked_before_writing(tmp_path, name, phrase):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file.txt").write_text("x")
    given = str(tmp_path / name) + ("/" if name.endswith("/") else "")
    with pytest.raises(ValueError, match=f"could not write .*{phrase}"):
        check_mesh_path(given)
    with pytest.raises(ValueError, match="could not write"):
        write_mesh(trimesh.creation.box(), given)
    assert not (tmp_path / "out.ply").exists()


def test_an_unwritable_place_is_found_by_probing(tmp_path):
    with pytest.raises(ValueError, match=r"could not write /proc/sa_convonet_mesh\.ply"):
        check_mesh_path("/proc/sa_convonet_mesh.ply")
    # Missing parent folders are fine (they are created on writing), and nothing is left behind.
    assert check_mesh_path(tmp_path / "new" / "deeper" / "mesh.glb") == tmp_path / "new" / "deeper" / "mesh.glb"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["vertex", "face", None])
def test_ply_written_in_chunks_is_the_mesh_whatever_the_chunk(kind):
    import io as bytes_io

    from sa_convonet_ros.io import write_ply

    mesh = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    if kind == "vertex":
        mesh.visual.vertex_colors = rng.integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    elif kind == "face":
        mesh.visual.face_colors = rng.integers(0, 256, (len(mesh.faces), 4), dtype=np.uint8)
    whole, chunked = bytes_io.BytesIO(), bytes_io.BytesIO()
    write_ply(mesh, whole, chunk=len(mesh.faces))
    write_ply(mesh, chunked, chunk=7)  # neither count is a multiple of 7
    assert whole.getvalue() == chunked.getvalue()
    loaded = trimesh.load(bytes_io.BytesIO(chunked.getvalue()), file_type="ply", process=False)
    np.testing.assert_array_equal(loaded.vertices, mesh.vertices)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    if kind == "vertex":
        np.testing.assert_array_equal(loaded.visual.vertex_colors, mesh.visual.vertex_colors)
