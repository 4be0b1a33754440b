"""rosbag2 input: recordings written with `rosbags` (sqlite3 and MCAP) read back, through `bags` and the CLI."""
import json
import re

import numpy as np
import pytest
import torch
import trimesh
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sa_convonet_ros.bags import BagError, first_per_voxel, is_bag, pointcloud_topics, read_bag_cloud
from sa_convonet_ros.cli import main
from sa_convonet_ros.config import ModelConfig
from sa_convonet_ros.model import ConvONet, save_model
from sa_convonet_ros.ros.pointcloud2 import FLOAT32, FLOAT64, INT32, UINT8, UINT32
from sa_convonet_ros.synthetic import generate_room, simulate_scans

TYPES = get_typestore(Stores.ROS2_HUMBLE)
PointCloud2, PointField = TYPES.types["sensor_msgs/msg/PointCloud2"], TYPES.types["sensor_msgs/msg/PointField"]
Header, Time, String = (TYPES.types[name] for name in ("std_msgs/msg/Header", "builtin_interfaces/msg/Time",
                                                       "std_msgs/msg/String"))
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
_POINT_FIELD_CODES = {"u1": UINT8, "i4": INT32, "u4": UINT32, "f4": FLOAT32, "f8": FLOAT64}


def cloud_message(records: np.ndarray, frame_id: str = "map", declared: dict | None = None, height: int = 1,
                  row_padding: int = 0):
    """A PointCloud2 over a structured array: one PointField per array field, at its offset and byte order;
    `declared` overrides a field's datatype (a packed `rgb` stored as uint32 bits is declared FLOAT32)."""
    declared = declared or {}
    fields = [PointField(name=name, offset=offset, datatype=declared.get(name, _POINT_FIELD_CODES[dtype.str[1:]]),
                         count=1) for name, (dtype, offset) in records.dtype.fields.items()]
    width = len(records) // height
    rows = np.zeros((height, width * records.dtype.itemsize + row_padding), dtype=np.uint8)
    rows[:, :width * records.dtype.itemsize] = records.view(np.uint8).reshape(height, -1)
    big_endian = records.dtype["x"].byteorder == ">"
    return PointCloud2(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=frame_id), height=height, width=width,
                       fields=fields, is_bigendian=big_endian, point_step=records.dtype.itemsize,
                       row_step=rows.shape[1], data=rows.reshape(-1), is_dense=True)


def xyz_records(points: np.ndarray, coordinate: str = "<f4", extra: tuple = (), itemsize: int | None = None):
    names = ["x", "y", "z"] + [name for name, _ in extra]
    formats = [coordinate] * 3 + [code for _, code in extra]
    dtype = np.dtype({"names": names, "formats": formats, "itemsize": itemsize} if itemsize else
                     list(zip(names, formats)))
    records = np.zeros(len(points), dtype=dtype)
    for axis, name in enumerate("xyz"):
        records[name] = points[:, axis]
    return records


def packed_rgb(colors: np.ndarray) -> np.ndarray:
    channels = np.rint(colors * 255).astype(np.uint32)
    return (channels[:, 0] << 16) | (channels[:, 1] << 8) | channels[:, 2]


def write_bag(path, storage: str, topics: dict) -> None:
    """topics: name -> list of messages (PointCloud2 or String), written one second apart."""
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        for topic, messages in topics.items():
            msgtype = "std_msgs/msg/String" if messages and isinstance(messages[0], String) else \
                "sensor_msgs/msg/PointCloud2"
            connection = writer.add_connection(topic, msgtype, typestore=TYPES)
            for second, message in enumerate(messages):
                writer.write(connection, (second + 1) * 10**9, TYPES.serialize_cdr(message, msgtype))


def sample(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-2.0, 2.0, size=(n, 3)).astype(np.float32).astype(np.float64)
    return points, np.rint(rng.uniform(0, 255, size=(n, 3))) / 255.0


def layout(name: str, points: np.ndarray, colors: np.ndarray):
    """(message, expected colours) of one of the layouts drivers produce."""
    if name == "xyz float32":
        return cloud_message(xyz_records(points)), None
    if name == "xyz float64 big-endian, packed rgb, padded points":
        records = xyz_records(points, ">f8", extra=(("rgb", ">u4"),), itemsize=40)
        records["rgb"] = packed_rgb(colors)
        return cloud_message(records, declared={"rgb": FLOAT32}), colors
    if name == "organised, r g b bytes, intensity, padded rows":
        records = xyz_records(points, extra=(("intensity", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")))
        for axis, channel in enumerate("rgb"):
            records[channel] = np.rint(colors[:, axis] * 255)
        return cloud_message(records, height=2, row_padding=6), colors
    records = xyz_records(points, extra=(("rgba", "<u4"),))
    records["rgba"] = packed_rgb(colors) | np.uint32(0xFF000000)
    return cloud_message(records), colors


LAYOUTS = ["xyz float32", "xyz float64 big-endian, packed rgb, padded points",
           "organised, r g b bytes, intensity, padded rows", "xyz float32, rgba uint32"]


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("name", LAYOUTS)
def test_a_written_cloud_reads_back_in_every_layout(tmp_path, storage, name):
    points, colors = sample(40)
    message, expected_colors = layout(name, points, colors)
    write_bag(tmp_path / "bag", storage, {"/map_cloud": [message]})
    bag = read_bag_cloud(tmp_path / "bag", "/map_cloud")
    np.testing.assert_array_equal(bag.cloud.points, points)
    if expected_colors is None:
        assert bag.cloud.colors is None
    else:
        np.testing.assert_allclose(bag.cloud.colors, expected_colors, atol=1e-6)
    assert (bag.topic, bag.frame_id, bag.messages) == ("/map_cloud", "map", 1)


@pytest.mark.parametrize("storage", STORAGES)
def test_the_last_message_is_the_map_and_the_storage_file_reads_like_its_directory(tmp_path, storage):
    maps = [sample(20 + 10 * k, seed=k)[0] for k in range(3)]
    write_bag(tmp_path / "bag", storage, {"/map_cloud": [cloud_message(xyz_records(m)) for m in maps],
                                          "/notes": [String(data="hello")]})
    assert pointcloud_topics(tmp_path / "bag") == {"/map_cloud": 3}
    storage_file = next(p for p in (tmp_path / "bag").iterdir() if p.suffix in (".db3", ".mcap"))
    assert is_bag(tmp_path / "bag") and is_bag(storage_file) and not is_bag(tmp_path / "map.npy")
    for source in (tmp_path / "bag", storage_file):
        np.testing.assert_array_equal(read_bag_cloud(source, "/map_cloud").cloud.points, maps[-1])


def test_first_per_voxel_keeps_the_earliest_point_of_each_voxel():
    points = np.array([[0.01, 0.01, 0.01], [0.5, 0.5, 0.5], [0.02, 0.03, 0.04], [-0.01, 0.0, 0.0]])
    np.testing.assert_array_equal(first_per_voxel(points, 0.1), [0, 1, 3])


def test_all_messages_merge_keyframes_without_their_overlaps(tmp_path):
    points, colors = sample(300)
    keyframes = [slice(0, 150), slice(100, 250), slice(200, 300)]  # each overlaps the one before
    messages = []
    for part in keyframes:
        records = xyz_records(points[part], extra=(("rgb", "<u4"),))
        records["rgb"] = packed_rgb(colors[part])
        messages.append(cloud_message(records, declared={"rgb": FLOAT32}))
    messages.insert(1, cloud_message(xyz_records(points[:0])))  # an empty keyframe is skipped
    write_bag(tmp_path / "bag", "mcap", {"/keyframes": messages})

    merged = read_bag_cloud(tmp_path / "bag", "/keyframes", all_messages=True, merge_voxel=1e-4)
    np.testing.assert_array_equal(merged.cloud.points, points)  # each point once, in arrival order
    np.testing.assert_allclose(merged.cloud.colors, colors, atol=1e-6)
    assert merged.messages == 3
    everything = read_bag_cloud(tmp_path / "bag", "/keyframes", all_messages=True, merge_voxel=0)
    assert len(everything.cloud) == 400
    coarse = read_bag_cloud(tmp_path / "bag", "/keyframes", all_messages=True, merge_voxel=1.0)
    np.testing.assert_array_equal(coarse.cloud.points, points[first_per_voxel(points, 1.0)])


def test_merging_refuses_messages_in_different_frames(tmp_path):
    points, _ = sample(10)
    write_bag(tmp_path / "bag", "sqlite3", {"/keyframes": [cloud_message(xyz_records(points), frame_id="odom"),
                                                           cloud_message(xyz_records(points), frame_id="map")]})
    with pytest.raises(BagError, match="frames map, odom"):
        read_bag_cloud(tmp_path / "bag", "/keyframes", all_messages=True)
    assert read_bag_cloud(tmp_path / "bag", "/keyframes").frame_id == "map"


def bad_bags(folder, storage: str) -> dict:
    """name -> (path, topic, what the one-line error says)."""
    points, _ = sample(10)
    write_bag(folder / "no_clouds", storage, {"/notes": [String(data="x")]})
    write_bag(folder / "empty", storage, {"/map_cloud": []})
    write_bag(folder / "clouds", storage, {"/map_cloud": [cloud_message(xyz_records(points))],
                                           "/notes": [String(data="x")]})
    write_bag(folder / "truncated", storage, {"/map_cloud": [cloud_message(xyz_records(points))]})
    stored = next(p for p in (folder / "truncated").iterdir() if p.suffix in (".db3", ".mcap"))
    stored.write_bytes(stored.read_bytes()[:len(stored.read_bytes()) // 2])
    broken = cloud_message(xyz_records(points))
    broken.point_step = 4  # smaller than its fields
    write_bag(folder / "malformed", storage, {"/map_cloud": [broken]})
    write_bag(folder / "binary_metadata", storage, {"/map_cloud": [cloud_message(xyz_records(points))]})
    (folder / "binary_metadata" / "metadata.yaml").write_bytes(b"\xa8" + np.random.default_rng(0).bytes(300))
    write_bag(folder / "listed_metadata", storage, {"/map_cloud": [cloud_message(xyz_records(points))]})
    (folder / "listed_metadata" / "metadata.yaml").write_text("- a list\n- not the bag's information\n")
    (folder / "not_a_bag").mkdir()
    return {"no PointCloud2 topic": (folder / "no_clouds", "/map_cloud", "has no PointCloud2 topic"),
            "empty topic": (folder / "empty", "/map_cloud", "topic /map_cloud has no messages"),
            "missing topic": (folder / "clouds", "/scan", "/scan is not in the bag; its PointCloud2 topics: "
                                                          "/map_cloud"),
            "other type": (folder / "clouds", "/notes", "/notes is a std_msgs/msg/String topic"),
            "truncated": (folder / "truncated", "/map_cloud", "cannot read the bag, damaged or truncated?"),
            "malformed message": (folder / "malformed", "/map_cloud", "point_step 4 is smaller"),
            "binary metadata": (folder / "binary_metadata", "/map_cloud", "metadata.yaml is not UTF-8 text, damaged? "
                                                                          "(invalid start byte at byte 0)"),
            "metadata of another shape": (folder / "listed_metadata", "/map_cloud",
                                          "cannot read the bag, damaged or truncated? (Invalid bag metadata"),
            "folder without metadata": (folder / "not_a_bag", "/map_cloud", "not a rosbag2 recording: the folder has "
                                                                            "no metadata.yaml")}


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bad_bag_gets_a_one_line_error_and_exit_code_2(tmp_path, storage, capsys):
    for name, (path, topic, says) in bad_bags(tmp_path, storage).items():
        with pytest.raises(BagError, match=re.escape(says)):
            read_bag_cloud(path, topic)
        assert main(["reconstruct", str(path), "--topic", topic, "-o", str(tmp_path / "x.ply"), "-q"]) == 2, name
        error = capsys.readouterr().err
        assert error.startswith("sa-convonet: error: ") and says in error and error.count("\n") == 1, (name, error)
        assert f"error: {path}: " in error and "Traceback" not in error


def test_listing_the_topics_of_a_bag_with_metadata_of_the_wrong_types_names_the_bag(tmp_path, capsys):
    write_bag(tmp_path / "bag", "mcap", {"/map_cloud": [cloud_message(xyz_records(sample(10)[0]))]})
    metadata = tmp_path / "bag" / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("message_count: 1", "message_count: many"))
    with pytest.raises(BagError, match=r"bag: cannot read the bag, damaged or truncated\? \(TypeError: "):
        pointcloud_topics(tmp_path / "bag")
    assert main(["reconstruct", str(tmp_path / "bag"), "-o", str(tmp_path / "x.ply")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"error: {tmp_path / 'bag'}: cannot read the bag" in err, err


def test_without_a_topic_the_cli_lists_the_cloud_topics_and_stops(tmp_path, capsys):
    points, _ = sample(10)
    write_bag(tmp_path / "bag", "mcap", {"/map_cloud": [cloud_message(xyz_records(points))] * 2,
                                         "/keyframes": [cloud_message(xyz_records(points))],
                                         "/notes": [String(data="x")]})
    assert main(["reconstruct", str(tmp_path / "bag"), "-o", str(tmp_path / "x.ply")]) == 2
    out, err = capsys.readouterr()
    assert out == "/keyframes\t1 message\n/map_cloud\t2 messages\n"
    assert "name the map's topic with --topic" in err and not (tmp_path / "x.ply").exists()
    write_bag(tmp_path / "none", "sqlite3", {})
    assert main(["reconstruct", str(tmp_path / "none"), "-o", str(tmp_path / "x.ply")]) == 2
    assert "has no PointCloud2 topic" in capsys.readouterr().err


def test_bag_flags_need_a_bag(tmp_path, capsys):
    np.save(tmp_path / "map.npy", sample(10)[0])
    assert main(["reconstruct", str(tmp_path / "map.npy"), "--topic", "/map", "-o", str(tmp_path / "x.ply")]) == 2
    assert "apply to rosbag2 input only" in capsys.readouterr().err
    write_bag(tmp_path / "bag", "mcap", {"/map": [cloud_message(xyz_records(sample(10)[0]))]})
    assert main(["reconstruct", str(tmp_path / "bag"), "--topic", "/map", "--merge-voxel", "0.01",
                 "-o", str(tmp_path / "x.ply")]) == 2
    assert "--merge-voxel must be >= 0 and goes with --all-messages" in capsys.readouterr().err


@pytest.fixture(scope="module")
def room_corner(tmp_path_factory):
    """A corner of a scanned room with colours, written as .npy, and a tiny model."""
    folder = tmp_path_factory.mktemp("bag_cli")
    points, _ = simulate_scans(generate_room(seed=5), "sparse", seed=1)
    points = points[np.all(points[:, :2] <= points[:, :2].min(axis=0) + 1.5, axis=1)].astype(np.float64)
    colors = np.rint(np.clip(0.5 + points[:, [2, 0, 1]] / 4, 0, 1) * 255) / 255.0
    np.save(folder / "map.npy", np.hstack([points, colors]))
    torch.manual_seed(0)
    model = save_model(ConvONet(ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=8, unet_levels=2,
                                            unet_base_channels=8)), folder / "tiny.pt")
    return folder, points, colors, model


def reconstruct_with_cli(source, output, model, *extra) -> None:
    assert main(["reconstruct", str(source), "-o", str(output), "--checkpoint", str(model), "--iterations", "2",
                 "--voxel-size", "0.04", "--json", "-q", *extra]) == 0


@pytest.fixture(scope="module")
def npy_mesh(room_corner):
    folder, _, _, model = room_corner
    reconstruct_with_cli(folder / "map.npy", folder / "from_npy.ply", model)
    return folder / "from_npy.ply"


def same_mesh(a, b) -> None:
    first, second = trimesh.load(a, process=False), trimesh.load(b, process=False)
    assert len(first.faces) > 0
    np.testing.assert_array_equal(first.vertices, second.vertices)
    np.testing.assert_array_equal(first.faces, second.faces)
    np.testing.assert_array_equal(first.visual.vertex_colors, second.visual.vertex_colors)


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bag_reconstructs_the_same_mesh_as_the_same_cloud_from_npy(room_corner, npy_mesh, storage, capsys):
    folder, points, colors, model = room_corner
    capsys.readouterr()
    records = xyz_records(points, "<f8", extra=(("rgb", "<u4"),))
    records["rgb"] = packed_rgb(colors)
    map_message = cloud_message(records, declared={"rgb": FLOAT32})
    half = cloud_message(xyz_records(points[: len(points) // 2]))  # an earlier, smaller map
    write_bag(folder / storage, storage, {"/map_cloud": [half, map_message]})
    reconstruct_with_cli(folder / storage, folder / f"from_{storage}.ply", model, "--topic", "/map_cloud")
    stats = json.loads(capsys.readouterr().out)
    assert stats["bag"] == {"topic": "/map_cloud", "frame_id": "map", "messages": 1, "points": len(points),
                            "non_finite_removed": 0}
    same_mesh(npy_mesh, folder / f"from_{storage}.ply")


def test_keyframes_merged_through_the_cli_reconstruct_the_map(room_corner, npy_mesh, capsys):
    folder, points, colors, model = room_corner
    third = len(points) // 3
    keyframes = []
    for k in range(3):  # each overlaps its neighbours by 50 points
        part = slice(max(0, k * third - 50), (k + 1) * third + 50)
        records = xyz_records(points[part], extra=(("rgb", "<u4"),))
        records["rgb"] = packed_rgb(colors[part])
        keyframes.append(cloud_message(records, declared={"rgb": FLOAT32}))
    write_bag(folder / "keyframes", "sqlite3", {"/keyframes": keyframes})
    capsys.readouterr()
    reconstruct_with_cli(folder / "keyframes", folder / "merged.ply", model, "--topic", "/keyframes",
                         "--all-messages", "--merge-voxel", "0.0001")
    assert json.loads(capsys.readouterr().out)["bag"]["messages"] == 3
    same_mesh(npy_mesh, folder / "merged.ply")
