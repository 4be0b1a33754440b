"""Point-cloud maps from rosbag2 recordings (sqlite3 `.db3` and MCAP), read with `rosbags`: no ROS needed.

A recording is a rosbag2 directory (metadata.yaml beside its storage files) or one storage file. Its
PointCloud2 messages are deserialised by rosbags and read by the node's own reader
(`ros.pointcloud2.cloud_to_arrays`, which needs only the message's attributes), so a map recorded from a
topic gives the points the node would have received live.

Two ways to take a map from a topic:
  * the last message (the default): what a mapper publishing its accumulated map ended with;
  * every message merged (`all_messages`): clouds that are already in one fixed frame, such as a mapper's
    per-keyframe clouds, concatenated and deduplicated on a voxel grid (see `merge_voxel_size`).

Every failure is a `BagError` (a ValueError) with a one-line message naming the recording.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import apsw
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError
from rosbags.typesys import Stores, get_typestore

from .io import PointCloudData
from .ros.pointcloud2 import cloud_to_arrays

BAG_EXTENSIONS = (".db3", ".mcap")
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
# What rosbags, its MCAP reader and SQLite raise on a damaged recording, with messages that say enough.
_BAG_FAILURES = (AnyReaderError, ReaderError, apsw.Error)


class BagError(ValueError):
    """A recording that cannot give the requested cloud; the message names it and says why, in one line."""


@dataclass
class BagCloud:
    """A map read from a recording, and where it came from."""

    cloud: PointCloudData
    topic: str
    frame_id: str
    messages: int  # messages the points came from
    non_finite_removed: int  # NaN / infinite points dropped by the PointCloud2 reader

    def summary(self) -> dict:
        return {"topic": self.topic, "frame_id": self.frame_id, "messages": self.messages,
                "points": len(self.cloud), "non_finite_removed": self.non_finite_removed}


def is_bag(path: str | Path) -> bool:
    """A rosbag2 directory or storage file, by its form (a point-cloud file is never a directory)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in BAG_EXTENSIONS


def merge_voxel_size(grid_voxel_size: float) -> float:
    """The default voxel of `all_messages`: half the reconstruction grid's spacing. Points closer than that
    are the same evidence to the grid, so overlapping keyframes stop piling up points on shared surfaces,
    while the density the windows sample from is kept."""
    return grid_voxel_size / 2.0


def pointcloud_topics(path: str | Path) -> dict[str, int]:
    """The recording's PointCloud2 topics and their message counts, sorted by topic."""
    with _open_bag(path) as bag:
        return {name: info.msgcount for name, info in sorted(bag.topics().items()) if info.msgtype == POINTCLOUD2}


def read_bag_cloud(path: str | Path, topic: str, *, all_messages: bool = False,
                   merge_voxel: float | None = None) -> BagCloud:
    """The map on `topic`: its last message, or with `all_messages` every message merged, keeping the first
    point of each cube of `merge_voxel` metres (None or 0: every point)."""
    with _open_bag(path) as bag:
        connections = _topic_connections(bag, topic)
        if all_messages:
            return _merge_messages(bag, connections, topic, merge_voxel)
        last = None
        for connection, stamp, raw in bag.messages(connections):
            last = (connection, stamp, raw)  # the reader yields in time order; only the raw bytes are kept
        if last is None:
            raise BagError(f"{bag.path}: topic {topic} has no messages")
        connection, stamp, raw = last
        arrays = _read_message(bag.deserialize(raw, connection, topic), stamp, path=bag.path, topic=topic)
        cloud = PointCloudData(points=arrays.points, colors=arrays.colors)
        return BagCloud(cloud, topic, arrays.frame_id, 1, arrays.num_removed)


@contextlib.contextmanager
def _open_bag(path: str | Path):
    """An open recording, whose reading errors (and opening ones) are BagErrors naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_dir():
        _check_metadata_text(path)
    # Bags without embedded message definitions (sqlite3 bags before Iron) are read with Humble's types;
    # PointCloud2 has not changed since.
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    with _failures_named(path):
        reader = AnyReader([path], default_typestore=typestore)
        reader.open()
    with contextlib.closing(reader):
        yield _Recording(reader, path)


def _check_metadata_text(path: Path) -> None:
    """A recording folder holds metadata.yaml, as UTF-8 text (rosbags' own decoding error would not name the file)."""
    metadata = path / "metadata.yaml"
    if not metadata.is_file():
        raise BagError(f"{path}: not a rosbag2 recording: the folder has no metadata.yaml")
    try:
        metadata.read_bytes().decode("utf-8")
    except OSError as error:
        raise BagError(f"{path}: cannot read metadata.yaml ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise BagError(f"{path}: metadata.yaml is not UTF-8 text, damaged? ({error.reason} at byte "
                       f"{error.start:,})") from None


@contextlib.contextmanager
def _failures_named(path: Path):
    """Any exception raised meanwhile, as a one-line BagError naming the recording. Around calls into rosbags only:
    other exceptions than its own escape it from a damaged recording (a UnicodeDecodeError from binary metadata,
    a KeyError or TypeError from metadata of the wrong shape, a MemoryError from a corrupt length...), while a
    mistake of this module is not to be taken for a damaged recording."""
    try:
        yield
    except BagError:
        raise
    except Exception as error:
        raise BagError(f"{path}: cannot read the bag, damaged or truncated? ({_describe(error)})") from None


def _describe(error: Exception) -> str:
    """The first line of rosbags' or SQLite's own message; the exception's kind too for others (a bare KeyError
    says only the key)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, _BAG_FAILURES):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Recording:
    """An open AnyReader, each call of which turns the errors of a damaged recording into a BagError naming it."""

    def __init__(self, reader: AnyReader, path: Path) -> None:
        self.reader, self.path = reader, path

    def topics(self) -> dict:
        """name -> rosbags' TopicInfo, its message count made an int (metadata may hold anything there)."""
        with _failures_named(self.path):
            return {name: info._replace(msgcount=int(info.msgcount)) for name, info in self.reader.topics.items()}

    def messages(self, connections: list):
        with _failures_named(self.path):
            yield from self.reader.messages(connections=connections)

    def deserialize(self, raw, connection, topic: str):
        try:
            return self.reader.deserialize(raw, connection.msgtype)
        except KeyError:
            raise BagError(f"{self.path}: {topic}: the bag holds messages of type {connection.msgtype} but no "
                           "definition of it") from None
        except Exception as error:
            raise BagError(f"{self.path}: {topic}: cannot decode a message, damaged? ({_describe(error)})") from None


def _topic_connections(bag: _Recording, topic: str) -> list:
    topics = bag.topics()
    clouds = {name: info for name, info in topics.items() if info.msgtype == POINTCLOUD2}
    if not clouds:
        raise BagError(f"{bag.path}: the bag has no PointCloud2 topic")
    if topic not in clouds:
        kind = f"is a {topics[topic].msgtype} topic" if topic in topics else "is not in the bag"
        raise BagError(f"{bag.path}: {topic} {kind}; its PointCloud2 topics: {', '.join(sorted(clouds))}")
    return clouds[topic].connections


def _read_message(message, stamp: int, *, path: Path, topic: str):
    try:
        return cloud_to_arrays(message)
    except ValueError as error:
        raise BagError(f"{path}: {topic} message at t={stamp * 1e-9:.3f}s: {error}") from None
    except (AttributeError, TypeError) as error:  # a message type of that name defined otherwise in the bag
        raise BagError(f"{path}: {topic} message at t={stamp * 1e-9:.3f}s is no PointCloud2: "
                       f"{_describe(error)}") from None


def _is_empty(message) -> bool:
    """A message of zero points (an empty keyframe); a malformed one is left to `_read_message` to describe."""
    try:
        return int(message.height) * int(message.width) == 0
    except (AttributeError, TypeError, ValueError):
        return False


def _merge_messages(bag: _Recording, connections: list, topic: str, merge_voxel: float | None) -> BagCloud:
    path = bag.path
    merged, frames, messages, removed = _VoxelMerge(merge_voxel), set(), 0, 0
    for connection, stamp, raw in bag.messages(connections):
        message = bag.deserialize(raw, connection, topic)
        if _is_empty(message):
            continue  # an empty keyframe adds nothing
        arrays = _read_message(message, stamp, path=path, topic=topic)
        frames.add(arrays.frame_id)
        if len(frames) > 1:
            raise BagError(f"{path}: {topic} has messages in frames {', '.join(sorted(frames))}; "
                           "merging them needs one fixed frame")
        merged.add(arrays.points, arrays.colors)
        messages, removed = messages + 1, removed + arrays.num_removed
    if messages == 0:
        raise BagError(f"{path}: topic {topic} has no messages with points")
    points, colors = merged.result()
    return BagCloud(PointCloudData(points=points, colors=colors), topic, frames.pop(), messages, removed)


class _VoxelMerge:
    """Clouds concatenated, keeping the first point (in arrival order) of each voxel.

    Duplicates are dropped whenever the kept points have doubled since the last pass, so memory stays
    within about twice the merged map however many overlapping messages arrive. Colours are kept when
    every message has them.
    """

    def __init__(self, voxel: float | None) -> None:
        self.voxel = voxel or None
        self.points: list[np.ndarray] = []
        self.colors: list[np.ndarray] | None = []
        self.count = self.after_last_pass = 0

    def add(self, points: np.ndarray, colors: np.ndarray | None) -> None:
        self.points.append(points)
        if colors is None or self.colors is None:
            self.colors = None
        else:
            self.colors.append(colors)
        self.count += len(points)
        if self.voxel is not None and self.count > 2 * max(self.after_last_pass, 100_000):
            self._deduplicate()

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.voxel is not None:
            self._deduplicate()
        points = np.concatenate(self.points)
        return points, None if self.colors is None else np.concatenate(self.colors)

    def _deduplicate(self) -> None:
        points = np.concatenate(self.points)
        keep = first_per_voxel(points, self.voxel)
        self.points = [points[keep]]
        if self.colors is not None:
            self.colors = [np.concatenate(self.colors)[keep]]
        self.count = self.after_last_pass = len(keep)


def first_per_voxel(points: np.ndarray, voxel: float) -> np.ndarray:
    """Sorted indices of the first point of each cube of `voxel` metres (a grid anchored at the origin)."""
    cells = np.floor(points / voxel).astype(np.int64)
    order = np.lexsort(cells.T[::-1])  # stable: within a voxel, the earliest point comes first
    ordered = cells[order]
    starts = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)]
    return np.sort(order[starts])
