"""A PointCloud2 writer for the tests: the layouts real drivers produce, to exercise the reader with."""
from __future__ import annotations

import array
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

# The PointField datatypes the writer stores -> numpy type code without byte order.
_NUMPY_CODES = {PointField.UINT8: "u1", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def arrays_to_cloud(
    points,
    colors=None,
    frame_id: str = "map",
    stamp: Optional[Time] = None,
    *,
    intensity=None,
    dtype: str = "float32",
    big_endian: bool = False,
    rgb_field: Optional[str] = "rgb",
    field_gap: int = 0,
    point_padding: int = 0,
    row_padding: int = 0,
    shape: Optional[tuple] = None,
) -> PointCloud2:
    """Build a PointCloud2 from arrays, in a choice of layouts.

    points: (N, 3) or organised (H, W, 3). colors: matching (..., 3) floats in [0, 1].
    dtype: 'float32' or 'float64' for x/y/z. rgb_field: how colours are stored:
    'rgb' (packed in a FLOAT32, PCL style), 'rgba' (packed in a UINT32 with alpha 255),
    'separate' (r, g, b UINT8 fields) or None (colours left out).
    field_gap: unused bytes after every field; point_padding: unused bytes at the end of
    each point; row_padding: unused bytes at the end of each row; shape: (height, width)
    to make an (N, 3) input an organised cloud.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 3:
        shape = shape or points.shape[:2]
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3) or (H, W, 3), got {points.shape}")
    points = points.reshape(-1, 3)
    height, width = shape if shape is not None else (1, points.shape[0])
    if height * width != points.shape[0]:
        raise ValueError(f"shape {shape} does not hold {points.shape[0]} points")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if rgb_field not in ("rgb", "rgba", "separate", None):
        raise ValueError(f"rgb_field must be 'rgb', 'rgba', 'separate' or None, got {rgb_field!r}")
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
        if colors.shape[0] != points.shape[0]:
            raise ValueError("colors must have one row per point")
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float32).reshape(-1)
        if intensity.shape[0] != points.shape[0]:
            raise ValueError("intensity must have one value per point")

    layout = _Layout(field_gap, big_endian)
    coord = PointField.FLOAT32 if dtype == "float32" else PointField.FLOAT64
    for name in "xyz":
        layout.add(name, coord)
    write_colors = colors is not None and rgb_field is not None
    if write_colors:
        if rgb_field == "separate":
            for name in "rgb":
                layout.add(name, PointField.UINT8)
        else:
            declared = PointField.FLOAT32 if rgb_field == "rgb" else PointField.UINT32
            # Stored through an integer view so the bit pattern is written untouched.
            layout.add(rgb_field, declared, storage="u4")
    if intensity is not None:
        layout.add("intensity", PointField.FLOAT32)
    point_step = layout.size + point_padding

    records = np.zeros(points.shape[0], dtype=layout.numpy_dtype(point_step))
    for axis, name in enumerate("xyz"):
        records[name] = points[:, axis]
    if write_colors:
        channels = np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint32)
        if rgb_field == "separate":
            for axis, name in enumerate("rgb"):
                records[name] = channels[:, axis]
        else:
            packed = (channels[:, 0] << 16) | (channels[:, 1] << 8) | channels[:, 2]
            if rgb_field == "rgba":
                packed |= np.uint32(0xFF000000)
            records[rgb_field] = packed
    if intensity is not None:
        records["intensity"] = intensity

    row_step = width * point_step + row_padding
    data = array.array("B")
    if row_padding:
        rows = np.zeros((height, row_step), dtype=np.uint8)
        rows[:, : width * point_step] = records.view(np.uint8).reshape(height, width * point_step)
        data.frombytes(rows)
    else:
        data.frombytes(records.view(np.uint8))

    msg = PointCloud2()
    msg.header = Header(frame_id=frame_id, stamp=stamp if stamp is not None else Time())
    msg.height, msg.width = int(height), int(width)
    msg.fields = layout.fields
    msg.is_bigendian = bool(big_endian)
    msg.point_step = int(point_step)
    msg.row_step = int(row_step)
    msg.is_dense = bool(np.isfinite(points).all())
    msg.data = data
    return msg


class _Layout:
    """Accumulates PointFields one after another, with an optional gap after each."""

    def __init__(self, gap: int, big_endian: bool):
        self.fields: list = []
        self.size = 0
        self._gap = gap
        self._byte_order = ">" if big_endian else "<"
        self._storage: list = []

    def add(self, name: str, datatype: int, storage: Optional[str] = None) -> None:
        code = storage or _NUMPY_CODES[datatype]
        self.fields.append(PointField(name=name, offset=self.size, datatype=datatype, count=1))
        self._storage.append((name, self._byte_order + code, self.size))
        self.size += np.dtype(code).itemsize + self._gap

    def numpy_dtype(self, itemsize: int) -> np.dtype:
        names, formats, offsets = zip(*self._storage)
        return np.dtype({
            "names": list(names),
            "formats": list(formats),
            "offsets": list(offsets),
            "itemsize": itemsize,
        })
