"""Round trips and error messages of point-cloud / mesh file I/O."""
import re

import numpy as np
import open3d as o3d
import pytest
import trimesh

from sa_convonet_ros.io import (
    PointCloudData,
    check_mesh_path,
    check_output_file,
    read_point_cloud,
    write_mesh,
    write_point_cloud,
)


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


def _ply(kind: str) -> bytes:
    """A small PLY: 'binary cloud', 'ascii cloud' (200 coloured points) or 'binary mesh', 'ascii mesh' (a sphere's
    42 vertices and 80 triangles, which come after them)."""
    encoding, shape = kind.split()
    if shape == "mesh":
        return trimesh.exchange.ply.export_ply(trimesh.creation.icosphere(subdivisions=1), encoding=encoding)
    rng = np.random.default_rng(1)
    cloud = trimesh.PointCloud(rng.uniform(-1, 1, (200, 3)), colors=rng.integers(0, 256, (200, 4), dtype=np.uint8))
    return trimesh.exchange.ply.export_ply(cloud, encoding=encoding)


PLY_KINDS = ["binary cloud", "ascii cloud", "binary mesh", "ascii mesh"]


@pytest.mark.parametrize("kind", PLY_KINDS)
@pytest.mark.parametrize("cut", ["half", "7 bytes"])
def test_a_ply_cut_short_is_refused_as_truncated(tmp_path, capfd, kind, cut):
    whole = _ply(kind)
    (tmp_path / "whole.ply").write_bytes(whole)
    assert len(read_point_cloud(tmp_path / "whole.ply")) in (42, 200)
    (tmp_path / "cut.ply").write_bytes(whole[:len(whole) // 2] if cut == "half" else whole[:-7])
    with pytest.raises(ValueError, match=r"cut\.ply: truncated"):
        read_point_cloud(tmp_path / "cut.ply")
    assert capfd.readouterr() == ("", "")


def test_a_binary_ply_short_of_its_vertices_says_how_short(tmp_path):
    whole = _ply("binary cloud")  # 200 vertices of 3 floats and 4 bytes
    (tmp_path / "cloud.ply").write_bytes(whole[:len(whole) - 100 * 16])
    with pytest.raises(ValueError, match=r"cloud\.ply: truncated: the header declares 200 vertices of 16 bytes "
                                         r"\(3,200 bytes\) but 1,600 bytes follow the header"):
        read_point_cloud(tmp_path / "cloud.ply")


def test_plys_with_faces_of_mixed_lengths_none_or_trailing_bytes_are_read(tmp_path):
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 7\nproperty double x\nproperty double y\n"
              "property double z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n").encode()
    vertices = np.arange(21, dtype=">f8").tobytes()
    faces = bytes([4]) + np.array([0, 1, 2, 3], ">i4").tobytes() + bytes([3]) + np.array([4, 5, 6], ">i4").tobytes()
    (tmp_path / "mixed.ply").write_bytes(header + vertices + faces + b"trailing bytes")
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "mixed.ply").points, np.arange(21).reshape(7, 3))
    (tmp_path / "short.ply").write_bytes(header + vertices + faces[:-1])
    with pytest.raises(ValueError, match=r"short\.ply: truncated: the 2 faces the header declares run past the end"):
        read_point_cloud(tmp_path / "short.ply")
    (tmp_path / "no_faces.ply").write_bytes(header.replace(b"face 2", b"face 0") + vertices)
    assert len(read_point_cloud(tmp_path / "no_faces.ply")) == 7


@pytest.mark.parametrize("content, says", [
    (b"\x8f\x02garbage\x00" * 20, "not a PLY file"),
    (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n", "malformed PLY header: no end_header line"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
     "no vertex element with x, y and z"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
     b"propert float w\nend_header\n1 2 3\n", "malformed PLY header: line 7 is 'propert float w'"),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n",
     "zero points"),
], ids=["garbage", "no end_header", "no y and z", "misspelt line", "no vertices"])
def test_a_malformed_ply_is_refused_without_open3d_printing(tmp_path, capfd, content, says):
    (tmp_path / "bad.ply").write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.ply: ") as error:
        read_point_cloud(tmp_path / "bad.ply")
    assert says in str(error.value)
    assert capfd.readouterr() == ("", "")


def _pcd(tmp_path, data: str) -> bytes:
    rng = np.random.default_rng(2)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.uniform(-1, 1, (200, 3))))
    o3d.io.write_point_cloud(str(tmp_path / "written.pcd"), cloud, write_ascii=data == "ascii",
                             compressed=data == "binary_compressed")
    return (tmp_path / "written.pcd").read_bytes()


@pytest.mark.parametrize("data, says", [
    ("ascii", "truncated: the header declares 300 points but 200 lines of 3 values follow it"),
    ("binary", r"truncated: the header declares 300 points of 12 bytes \(3,600 bytes\) but 2,400 bytes follow it"),
    ("binary_compressed", "malformed: its compressed data unpacks to 2,400 bytes, less than the 300 points"),
])
def test_a_pcd_declaring_more_points_than_it_holds_is_refused(tmp_path, capfd, data, says):
    whole = _pcd(tmp_path, data)
    assert len(read_point_cloud(tmp_path / "written.pcd")) == 200
    (tmp_path / "more.pcd").write_bytes(whole.replace(b"WIDTH 200", b"WIDTH 300").replace(b"POINTS 200", b"POINTS 300"))
    with pytest.raises(ValueError, match=rf"more\.pcd: {says}"):
        read_point_cloud(tmp_path / "more.pcd")
    (tmp_path / "cut.pcd").write_bytes(whole[:-7] if data != "ascii" else whole[:len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut\.pcd: truncated"):
        read_point_cloud(tmp_path / "cut.pcd")
    assert capfd.readouterr() == ("", "")


def test_a_pcd_open3d_would_read_as_zeros_or_cannot_unpack_is_refused(tmp_path, capfd):
    header = ("VERSION 0.7\nFIELDS x y z\nSIZE 8 8 8\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
              "DATA binary\n")
    (tmp_path / "doubles.pcd").write_bytes(header.encode() + np.ones((2, 3)).tobytes())
    with pytest.raises(ValueError, match=r"doubles\.pcd: field x is of TYPE F SIZE 8, which Open3D's PCD reader "
                                         r"reads as 0"):
        read_point_cloud(tmp_path / "doubles.pcd")
    whole = _pcd(tmp_path, "binary_compressed")
    start = whole.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n") + 8
    scrambled = whole[:start] + bytes(byte ^ 0x5A for byte in whole[start:])
    (tmp_path / "scrambled.pcd").write_bytes(scrambled)
    with pytest.raises(ValueError, match=r"scrambled\.pcd: Open3D cannot read it: .*Uncompression failed"):
        read_point_cloud(tmp_path / "scrambled.pcd")
    assert capfd.readouterr() == ("", "")


def test_a_truncated_or_foreign_npy_is_refused(tmp_path, cloud):
    np.save(tmp_path / "whole.npy", cloud[0])
    whole = (tmp_path / "whole.npy").read_bytes()
    for name, content in (("half.npy", whole[:len(whole) // 2]), ("short.npy", whole[:-7])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}: truncated: the header declares a \(200, 3\) float64 array "
                                             r"\(4,800 bytes\)"):
            read_point_cloud(tmp_path / name)
    (tmp_path / "foreign.npy").write_bytes(b"\x80\x04garbage" * 10)
    with pytest.raises(ValueError, match=r"foreign\.npy: not a \.npy array"):
        read_point_cloud(tmp_path / "foreign.npy")


def test_a_truncated_or_foreign_npz_is_refused(tmp_path, cloud):
    np.savez_compressed(tmp_path / "whole.npz", points=cloud[0])
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "short.npz").write_bytes(whole[:-7])
    with pytest.raises(ValueError, match=r"short\.npz: truncated or damaged \.npz archive"):
        read_point_cloud(tmp_path / "short.npz")
    (tmp_path / "foreign.npz").write_bytes(b"\x80\x04garbage" * 10)
    with pytest.raises(ValueError, match=r"foreign\.npz: not an \.npz archive"):
        read_point_cloud(tmp_path / "foreign.npz")


def test_a_text_cloud_cut_mid_line_or_short_of_its_count_is_refused(tmp_path):
    (tmp_path / "cut.xyz").write_text("0 0 0 255 0 0\n1 1 1 0 255 0\n2 2 2 0 0")
    with pytest.raises(ValueError, match=r"cut\.xyz: truncated: its last line holds 5 values, its first 6"):
        read_point_cloud(tmp_path / "cut.xyz")
    (tmp_path / "short.pts").write_text("5\n0 0 0\n1 1 1\n")
    with pytest.raises(ValueError, match=r"short\.pts: truncated: its first line declares 5 points but 2 rows"):
        read_point_cloud(tmp_path / "short.pts")


@pytest.mark.parametrize("extension", [".ply", ".pcd", ".xyz", ".npy", ".npz"])
def test_an_empty_file_is_refused(tmp_path, extension):
    (tmp_path / f"empty{extension}").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"empty\{extension}: the file is empty \(0 bytes\)"):
        read_point_cloud(tmp_path / f"empty{extension}")


@pytest.mark.parametrize("name", [
    "a" * 300 + ".ply",  # a file name over the 255 bytes of a name
    "/".join(["b" * 100] * 50) + ".ply",  # a path over the 4,096 bytes of a path
    "missing/" + "c" * 300 + "/mesh.ply",  # a name too long below a folder still to be made
], ids=["long name", "long path", "long name of a folder to make"])
def test_names_and_paths_the_system_refuses_are_reported_not_raised(tmp_path, name):
    given = str(tmp_path / name)
    for check in (check_mesh_path, check_output_file):
        with pytest.raises(ValueError, match=r"could not write .*\.\.\. \([0-9,]+ characters\): File name too long") \
                as error:
            check(given)
        assert len(str(error.value)) < 160 and f"({len(given):,} characters)" in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("character, name", [("\n", "newline"), ("\t", "tab"), ("\r", "carriage return"),
                                             ("\0", "NUL"), ("\x1b", "escape"), ("\x7f", "DEL"), ("\x01", "U+0001")])
def test_control_characters_in_an_output_path_are_refused(tmp_path, character, name):
    given = str(tmp_path / f"mesh{character}name.ply")
    for check in (check_mesh_path, check_output_file):
        with pytest.raises(ValueError, match=rf"could not write .*mesh.*name\.ply: the name holds a control "
                                             rf"character \({re.escape(name)}\)") as error:
            check(given)
        assert "\n" not in str(error.value) and character not in str(error.value)
