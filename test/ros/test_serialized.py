"""Messages written to CDR by `CdrWriter` read back as rclpy reads its own serialization of them."""
import numpy as np
import pytest
from geometry_msgs.msg import Point
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from sa_convonet_ros.msg import ReconstructionStats
from sa_convonet_ros.ros.markers import NumpyMarkerArray, delete_all, deleted, vertex_rgba8
from sa_convonet_ros.ros.serialized import CdrWriter


def _written(msg, arrays=None) -> bytes:
    writer = CdrWriter()
    writer.message(msg, arrays)
    return writer.bytes()


def _stats() -> ReconstructionStats:
    stats = ReconstructionStats(windows_run=7, out_of_time=True, device="cpu", point_spacing=0.013,
                                stage_names=["prepare", "optimize"], stage_seconds=[0.25, 12.5])
    stats.bbox_max = Point(x=1.0, y=-2.0, z=3.5)
    return stats


def _cloud() -> PointCloud2:
    fields = [PointField(name=axis, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, axis in enumerate("xyz")]
    data = np.arange(30, dtype=np.float32).tobytes()
    return PointCloud2(height=1, width=10, fields=fields, point_step=12, row_step=120, data=data, is_dense=True)


@pytest.mark.parametrize("msg", [
    _stats(), _cloud(), CompressedImage(format="png", data=b"\x89PNG\x00\x01"), Marker(text="a", frame_locked=True),
    MarkerArray(markers=[delete_all("map"), deleted("map", "block_1_2_3", 4)]),
], ids=["stats", "cloud", "image", "marker", "deletes"])
def test_messages_read_back_as_rclpy_reads_its_own(msg):
    ours = _written(msg)
    assert len(ours) == len(serialize_message(msg))
    assert deserialize_message(ours, type(msg)) == deserialize_message(serialize_message(msg), type(msg))


@pytest.mark.parametrize("colored", [True, False])
def test_triangle_markers_from_arrays_read_back_as_their_message_objects(colored):
    rng = np.random.default_rng(0)
    vertices, faces = rng.normal(size=(40, 3)), rng.integers(0, 40, (25, 3))
    array = NumpyMarkerArray([delete_all("map")])
    rgba = vertex_rgba8(rng.random((40, 3))) if colored else None
    assert array.add_triangles(vertices, faces, rgba, "map", "block_0_0_1", 10, lifetime=2.5) == 3
    array.append(deleted("map", "block_0_0_1", 3))
    objects = array.message()
    assert [len(m.points) for m in objects.markers] == [0, 30, 30, 15, 0]
    assert [len(m.colors) for m in objects.markers] == ([0, 30, 30, 15, 0] if colored else [0] * 5)
    wire = array.serialized()
    assert len(wire) == len(serialize_message(objects))
    assert deserialize_message(wire, MarkerArray) == deserialize_message(serialize_message(objects), MarkerArray)
    first = deserialize_message(wire, MarkerArray).markers[1]
    np.testing.assert_array_equal([[p.x, p.y, p.z] for p in first.points], vertices[faces[:10].reshape(-1)])


def test_only_structs_of_one_primitive_type_come_from_rows():
    writer = CdrWriter()
    with pytest.raises(TypeError, match="one primitive type"):
        writer.message(Marker(), {"header": np.zeros((1, 2))})
