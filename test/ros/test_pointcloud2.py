"""PointCloud2 -> numpy, checked against hand-packed bytes as well as the tests' writer (cloud_messages)."""
import struct
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2, PointField

from sa_convonet_ros.ros import pointcloud2
from sa_convonet_ros.ros.pointcloud2 import CloudArrays, cloud_to_arrays

from cloud_messages import arrays_to_cloud

F32_TOL = 1e-6  # relative error of float32 coordinates
COLOR_TOL = 0.5 / 255 + 1e-6  # colours travel as 8-bit channels


def _field(name, offset, datatype, count=1):
    return PointField(name=name, offset=offset, datatype=datatype, count=count)


def _message(fields, point_bytes, *, height, width, point_step, row_step=None,
             big_endian=False, row_padding=b""):
    """A PointCloud2 from per-point byte strings, laid out row by row."""
    row_step = row_step if row_step is not None else width * point_step + len(row_padding)
    rows = [
        b"".join(point_bytes[r * width:(r + 1) * width]) + row_padding for r in range(height)
    ]
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=big_endian,
                      point_step=point_step, row_step=row_step, is_dense=False)
    msg.header.frame_id = "odom"
    msg.header.stamp = Time(sec=12, nanosec=34)
    msg.data = b"".join(rows)
    return msg


def _sample(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-50, 50, size=(n, 3)), rng.random((n, 3)), rng.random(n) * 100


# ---- hand-built messages: the reader against the message definition ------------------------


def test_hand_packed_big_endian_float64_out_of_order_fields_organised():
    # Memory layout per point (40 bytes, big-endian): z f8 | x f8 | intensity u16 | 2 pad |
    # rgba u32 | y f8 | 8 pad. The field list is in yet another order. Rows carry 8 extra bytes.
    points = np.array([[1.5, -2.25, 3.0], [4.0, 5.5, -6.5], [7.0, 8.0, 9.0], [-1.0, 0.0, 1e3]])
    rgb8 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]])
    intensity = [0, 1, 65535, 1234]
    point_bytes = []
    for (x, y, z), (r, g, b), i in zip(points, rgb8, intensity):
        packed = (0x7F << 24) | (int(r) << 16) | (int(g) << 8) | int(b)  # alpha byte ignored
        point_bytes.append(struct.pack(">ddH2xId8x", z, x, i, packed, y))
    fields = [
        _field("rgba", 20, PointField.UINT32),
        _field("y", 24, PointField.FLOAT64),
        _field("intensity", 16, PointField.UINT16),
        _field("x", 8, PointField.FLOAT64),
        _field("z", 0, PointField.FLOAT64),
    ]
    msg = _message(fields, point_bytes, height=2, width=2, point_step=40,
                   big_endian=True, row_padding=b"\xAB" * 8)

    cloud = cloud_to_arrays(msg)

    np.testing.assert_array_equal(cloud.points, points)
    np.testing.assert_allclose(cloud.colors, rgb8 / 255.0, atol=1e-7)
    assert cloud.frame_id == "odom"
    assert cloud.num_removed == 0


def test_hand_packed_little_endian_pcl_float_rgb_with_nan_rows():
    # PCL layout: x y z f4, 4 pad, rgb as a FLOAT32 whose bits are 0x00RRGGBB, 12 pad.
    rows = [
        ((0.5, 1.0, 2.0), (200, 100, 50)),
        ((float("nan"), 1.0, 2.0), (1, 2, 3)),
        ((3.0, -4.0, 5.0), (0, 128, 255)),
        ((1.0, float("inf"), 0.0), (9, 9, 9)),
        ((6.0, 7.0, -8.0), (255, 255, 255)),
    ]
    point_bytes = []
    for (x, y, z), (r, g, b) in rows:
        as_float = struct.unpack("<f", struct.pack("<I", (r << 16) | (g << 8) | b))[0]
        point_bytes.append(struct.pack("<fff4xf12x", x, y, z, as_float))
    fields = [
        _field("x", 0, PointField.FLOAT32),
        _field("y", 4, PointField.FLOAT32),
        _field("z", 8, PointField.FLOAT32),
        _field("rgb", 16, PointField.FLOAT32),
    ]
    msg = _message(fields, point_bytes, height=1, width=len(rows), point_step=32)

    cloud = cloud_to_arrays(msg)

    kept = [0, 2, 4]
    np.testing.assert_array_equal(cloud.points, [rows[i][0] for i in kept])
    np.testing.assert_allclose(cloud.colors, np.array([rows[i][1] for i in kept]) / 255.0,
                               atol=1e-7)
    assert cloud.num_removed == 2
    assert cloud.points.dtype == np.float64 and cloud.colors.dtype == np.float32


def test_hand_packed_separate_uint8_channels_and_float_intensity():
    # x y z f4 | r g b u8 | 1 pad | intensity f4, with an extra multi-count field ignored.
    values = [((1.0, 2.0, 3.0), (10, 20, 30), 0.25), ((-1.0, -2.0, -3.0), (255, 0, 127), 7.5)]
    point_bytes = [struct.pack("<fffBBBxf8x", *xyz, *rgb, i) for xyz, rgb, i in values]
    fields = [
        _field("x", 0, PointField.FLOAT32),
        _field("y", 4, PointField.FLOAT32),
        _field("z", 8, PointField.FLOAT32),
        _field("r", 12, PointField.UINT8),
        _field("g", 13, PointField.UINT8),
        _field("b", 14, PointField.UINT8),
        _field("intensity", 16, PointField.FLOAT32),
        _field("normal", 20, PointField.UINT16, count=4),
    ]
    msg = _message(fields, point_bytes, height=1, width=2, point_step=28)

    cloud = cloud_to_arrays(msg)

    np.testing.assert_array_equal(cloud.points, [v[0] for v in values])
    np.testing.assert_allclose(cloud.colors, np.array([v[1] for v in values]) / 255.0, atol=1e-7)


@pytest.mark.parametrize("datatype", [0, 42])
def test_an_intensity_field_of_unknown_type_does_not_reject_the_map(datatype):
    points, colors, intensity = _sample(5)
    msg = arrays_to_cloud(points, colors, intensity=intensity)
    next(f for f in msg.fields if f.name == "intensity").datatype = datatype
    cloud = cloud_to_arrays(msg)
    np.testing.assert_allclose(cloud.points, points, rtol=F32_TOL)
    np.testing.assert_allclose(cloud.colors, colors, atol=COLOR_TOL)


def test_reads_any_object_with_the_attributes_of_a_pointcloud2():
    # As a rosbag2 reader gives it: plain attributes, the data a numpy array.
    points, colors, _ = _sample(7)
    msg = arrays_to_cloud(points, colors, big_endian=True, dtype="float64")
    fields = [SimpleNamespace(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in msg.fields]
    record = SimpleNamespace(header=SimpleNamespace(frame_id="lidar"), height=msg.height, width=msg.width,
                             fields=fields, is_bigendian=msg.is_bigendian, point_step=msg.point_step,
                             row_step=msg.row_step, is_dense=msg.is_dense, data=np.array(msg.data, dtype=np.uint8))
    cloud = cloud_to_arrays(record)
    np.testing.assert_array_equal(cloud.points, points)
    np.testing.assert_allclose(cloud.colors, colors, atol=COLOR_TOL)
    assert cloud.frame_id == "lidar"


def test_the_reader_imports_without_ros():
    blocked = ["rclpy", "sensor_msgs", "std_msgs", "builtin_interfaces", "rosidl_runtime_py"]
    code = ("import sys\n"
            f"sys.modules.update(dict.fromkeys({blocked!r}))\n"  # a None entry makes the import fail
            "import sa_convonet_ros.ros.pointcloud2\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_datatype_codes_are_those_of_sensor_msgs():
    for name in ("INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT32", "FLOAT64"):
        assert getattr(pointcloud2, name) == getattr(PointField, name), name


def test_want_colors_false_skips_colours():
    points, colors, _ = _sample(10)
    cloud = cloud_to_arrays(arrays_to_cloud(points, colors), want_colors=False)
    assert cloud.colors is None


# ---- writer/reader round trips over many layouts --------------------------------------------

LAYOUTS = {
    "float32_little": dict(),
    "float64_little": dict(dtype="float64"),
    "float32_big": dict(big_endian=True),
    "float64_big": dict(dtype="float64", big_endian=True),
    "gaps_between_fields": dict(field_gap=3),
    "point_step_padding": dict(point_padding=13),
    "row_step_padding": dict(shape=(4, 6), row_padding=5),
    "organised_big_endian": dict(shape=(3, 8), big_endian=True, dtype="float64"),
    "rgb_packed_float": dict(rgb_field="rgb"),
    "rgba_uint32_big": dict(rgb_field="rgba", big_endian=True),
    "separate_rgb_uint8": dict(rgb_field="separate", field_gap=1),
    "no_colour_field": dict(rgb_field=None),
    "everything": dict(dtype="float64", big_endian=True, rgb_field="rgba", field_gap=2,
                       point_padding=7, shape=(2, 12), row_padding=9),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_round_trip(layout):
    options = LAYOUTS[layout]
    points, colors, intensity = _sample(24)
    msg = arrays_to_cloud(points, colors, frame_id="map", stamp=Time(sec=5), intensity=intensity, **options)

    cloud = cloud_to_arrays(msg)

    assert isinstance(cloud, CloudArrays)
    assert cloud.num_points == 24 and cloud.num_removed == 0
    if options.get("dtype") == "float64":
        np.testing.assert_array_equal(cloud.points, points)
    else:
        np.testing.assert_allclose(cloud.points, points, rtol=F32_TOL)
    if options.get("rgb_field", "rgb") is None:
        assert cloud.colors is None
    else:
        np.testing.assert_allclose(cloud.colors, colors, atol=COLOR_TOL)
    assert cloud.frame_id == "map"
    expected_shape = options.get("shape", (1, 24))
    assert (msg.height, msg.width) == expected_shape
    assert msg.row_step >= msg.width * msg.point_step
    assert len(msg.data) == msg.row_step * msg.height


def test_fields_listed_out_of_order():
    points, colors, intensity = _sample(9)
    msg = arrays_to_cloud(points, colors, intensity=intensity, field_gap=2)
    msg.fields = list(reversed(msg.fields))
    cloud = cloud_to_arrays(msg)
    np.testing.assert_allclose(cloud.points, points, rtol=F32_TOL)
    np.testing.assert_allclose(cloud.colors, colors, atol=COLOR_TOL)


def test_organised_input_array_keeps_its_shape():
    points = np.arange(2 * 3 * 3, dtype=np.float64).reshape(2, 3, 3)
    msg = arrays_to_cloud(points, dtype="float64")
    assert (msg.height, msg.width) == (2, 3)
    np.testing.assert_array_equal(cloud_to_arrays(msg).points, points.reshape(-1, 3))


def test_non_finite_points_removed_with_their_colours():
    points, colors, intensity = _sample(6)
    points[1, 0] = np.nan
    points[4, 2] = -np.inf
    msg = arrays_to_cloud(points, colors, intensity=intensity, dtype="float64")
    assert msg.is_dense is False
    cloud = cloud_to_arrays(msg)
    kept = [0, 2, 3, 5]
    assert cloud.num_removed == 2
    np.testing.assert_array_equal(cloud.points, points[kept])
    np.testing.assert_allclose(cloud.colors, colors[kept], atol=COLOR_TOL)


def test_survives_serialisation():
    points, colors, _ = _sample(50)
    msg = arrays_to_cloud(points, colors, big_endian=True, shape=(5, 10), row_padding=3)
    received = deserialize_message(serialize_message(msg), PointCloud2)
    cloud = cloud_to_arrays(received)
    np.testing.assert_allclose(cloud.points, points, rtol=F32_TOL)
    np.testing.assert_allclose(cloud.colors, colors, atol=COLOR_TOL)


def test_last_row_without_trailing_padding_is_accepted():
    points, _, _ = _sample(12)
    msg = arrays_to_cloud(points, shape=(3, 4), row_padding=6)
    msg.data = bytes(msg.data)[:-6]
    np.testing.assert_allclose(cloud_to_arrays(msg).points, points, rtol=F32_TOL)


def test_two_million_points():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(2_000_000, 3))
    colors = rng.random((2_000_000, 3))
    cloud = cloud_to_arrays(arrays_to_cloud(points, colors))
    assert cloud.points.shape == (2_000_000, 3)
    assert cloud.colors.shape == (2_000_000, 3)
    np.testing.assert_allclose(cloud.points[::9973], points[::9973], rtol=F32_TOL)


# ---- malformed messages ---------------------------------------------------------------------


def _valid_message():
    points, colors, _ = _sample(8)
    return arrays_to_cloud(points, colors)


def test_missing_coordinate_field():
    msg = _valid_message()
    msg.fields = [f for f in msg.fields if f.name != "z"]
    with pytest.raises(ValueError, match=r"lacks field.*'z'"):
        cloud_to_arrays(msg)


@pytest.mark.parametrize("datatype", [PointField.INT16, PointField.UINT32, PointField.UINT8, 42])
def test_unsupported_coordinate_datatype(datatype):
    msg = _valid_message()
    msg.fields[1].datatype = datatype
    with pytest.raises(ValueError, match="only FLOAT32 and FLOAT64"):
        cloud_to_arrays(msg)


@pytest.mark.parametrize("change", [-1, +1, -16])
def test_data_length_inconsistent(change):
    msg = _valid_message()
    data = bytes(msg.data)
    msg.data = data[:change] if change < 0 else data + b"\0" * change
    with pytest.raises(ValueError, match="inconsistent"):
        cloud_to_arrays(msg)


def test_height_disagrees_with_data():
    msg = _valid_message()
    msg.height = 2
    with pytest.raises(ValueError, match="inconsistent"):
        cloud_to_arrays(msg)


def test_point_step_smaller_than_fields():
    msg = _valid_message()
    msg.point_step = 8
    msg.row_step = 8 * msg.width
    with pytest.raises(ValueError, match="point_step 8 is smaller than field"):
        cloud_to_arrays(msg)


def test_row_step_smaller_than_a_row():
    msg = _valid_message()
    msg.row_step -= 1
    with pytest.raises(ValueError, match="row_step"):
        cloud_to_arrays(msg)


def test_zero_points():
    msg = arrays_to_cloud(np.empty((0, 3)))
    with pytest.raises(ValueError, match="zero points"):
        cloud_to_arrays(msg)


def test_only_non_finite_points():
    msg = arrays_to_cloud(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="zero finite points"):
        cloud_to_arrays(msg)


def test_unsupported_colour_datatype_unless_colours_unwanted():
    msg = _valid_message()
    next(f for f in msg.fields if f.name == "rgb").datatype = PointField.UINT16
    with pytest.raises(ValueError, match="colour field 'rgb'"):
        cloud_to_arrays(msg)
    assert cloud_to_arrays(msg, want_colors=False).num_points == 8


# ---- cross-check against sensor_msgs_py, the reference reader of ROS 2 --------------------------

try:
    from sensor_msgs_py import point_cloud2 as reference
except ImportError:
    reference = None

NO_REFERENCE = ("sensor_msgs_py (ROS 2's reference PointCloud2 reader, installed from ../shared/ros-tools) is "
                "missing, so the cross-check against it did NOT run: run scripts/run_tests.sh with "
                "../shared/ros-tools present, or `bash ../shared/ros-tools/install.sh .venv`")


def _reference_read(msg):
    """Points (and colours) as sensor_msgs_py reads them. It ignores row_step, so each row is handed
    over as a message of its own; each gets a copy of the bytes, since read_points byteswaps a
    big-endian buffer in place."""
    names = [f.name for f in msg.fields]
    colour = next((n for n in ("rgb", "rgba") if n in names), "separate" if "r" in names else None)
    wanted = ["x", "y", "z"] + ({"rgb": ["rgb"], "rgba": ["rgba"], "separate": ["r", "g", "b"]}.get(colour, []))
    data, rows = bytes(msg.data), []
    for row in range(msg.height):
        part = PointCloud2(height=1, width=msg.width, fields=msg.fields, is_bigendian=msg.is_bigendian,
                           point_step=msg.point_step, row_step=msg.width * msg.point_step, is_dense=False)
        start = row * msg.row_step
        part.data = data[start:start + msg.width * msg.point_step]
        rows.append(reference.read_points(part, field_names=wanted, skip_nans=True))
    table = np.concatenate(rows)
    points = np.stack([table[n].astype(np.float64) for n in "xyz"], axis=1)
    if colour in ("rgb", "rgba"):
        packed = table[colour].astype(table[colour].dtype.newbyteorder("=")).view(np.uint32)
        return points, np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=1) / 255.0
    if colour == "separate":
        return points, np.stack([table[n] for n in "rgb"], axis=1) / 255.0
    return points, None


@pytest.mark.skipif(reference is None, reason=NO_REFERENCE)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_agrees_with_sensor_msgs_py_on_every_layout(layout):
    options = LAYOUTS[layout]
    points, colors, intensity = _sample(24, seed=3)
    points[[2, 17]] = np.nan  # rows both readers drop
    msg = arrays_to_cloud(points, colors, intensity=intensity, **options)
    before = bytes(msg.data)

    expected_points, expected_colors = _reference_read(msg)
    ours = cloud_to_arrays(msg)

    assert bytes(msg.data) == before  # the reference never touched our message
    np.testing.assert_array_equal(ours.points, expected_points)
    if expected_colors is None:
        assert ours.colors is None
    else:
        np.testing.assert_allclose(ours.colors, expected_colors, atol=1e-6)
    assert ours.num_points == 22 and ours.num_removed == 2
