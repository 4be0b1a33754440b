"""Points and colours from a sensor_msgs/PointCloud2, as numpy arrays.

The reader follows the message definition rather than one producer's habits: every field
is located through its own offset and datatype, points are `point_step` bytes apart, rows are
`row_step` bytes apart and the byte order comes from `is_bigendian`. All of it is done with
a numpy structured dtype laid over the message buffer, so no Python loop runs per point.

It needs no ROS: any object with the attributes of a PointCloud2 will do (height, width, fields
with name / offset / datatype / count, is_bigendian, point_step, row_step, data, header.frame_id),
such as an rclpy message or a message read from a rosbag2 file.

Colour conventions understood:
  * `rgb` / `rgba` packed in 4 bytes (FLOAT32, UINT32 or INT32): 0xAARRGGBB bit pattern, the
    PCL convention; the alpha byte is ignored.
  * separate `r`, `g`, `b` fields: UINT8 (0..255) or FLOAT32/FLOAT64 (0..1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

# The PointField datatype codes, fixed by sensor_msgs/PointField.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
# PointField datatype code -> numpy type code without byte order.
_NUMPY_CODES = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4", FLOAT32: "f4",
                FLOAT64: "f8"}
_DATATYPE_NAMES = {INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16", INT32: "INT32",
                   UINT32: "UINT32", FLOAT32: "FLOAT32", FLOAT64: "FLOAT64"}
_FLOAT_TYPES = (FLOAT32, FLOAT64)
_PACKED_COLOUR_TYPES = (FLOAT32, UINT32, INT32)
_RGB_SHIFTS = np.array([16, 8, 0], dtype=np.uint32)


@dataclass
class CloudArrays:
    """The useful content of a PointCloud2, with non-finite points already removed."""

    points: np.ndarray  # (N, 3) float64
    colors: Optional[np.ndarray]  # (N, 3) float32 in [0, 1], or None
    frame_id: str
    num_removed: int = 0  # points dropped because x, y or z was NaN or infinite

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


def cloud_to_arrays(msg: Any, *, want_colors: bool = True) -> CloudArrays:
    """Read points (and colours when present) from any PointCloud2 layout.

    Raises ValueError when the message is malformed, has no usable x/y/z, or holds no point.
    """
    fields = _fields_by_name(msg.fields)
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        data = f" but {len(msg.data)} bytes of data" if len(msg.data) else ""
        raise ValueError(f"PointCloud2 has zero points (height={height}, width={width}){data}")
    _check_xyz_fields(fields)
    _check_layout(msg, fields)

    byte_order = ">" if msg.is_bigendian else "<"
    wanted = _wanted_fields(fields, want_colors)
    record_dtype = np.dtype({
        "names": [name for name, _ in wanted],
        "formats": [byte_order + code for _, code in wanted],
        "offsets": [fields[name].offset for name, _ in wanted],
        "itemsize": int(msg.point_step),
    })
    # A (height, width) view straight over the buffer; row padding is skipped by the strides.
    records = np.ndarray(
        shape=(height, width),
        dtype=record_dtype,
        buffer=_as_buffer(msg.data),
        strides=(int(msg.row_step), int(msg.point_step)),
    )

    points = np.empty((height, width, 3), dtype=np.float64)
    for axis, name in enumerate("xyz"):
        points[..., axis] = records[name]
    points = points.reshape(-1, 3)
    colors = _read_colors(records, fields) if want_colors else None
    colors = colors.reshape(-1, 3) if colors is not None else None

    finite = np.isfinite(points).all(axis=1)
    num_removed = int(finite.size - np.count_nonzero(finite))
    if num_removed == finite.size:
        raise ValueError(f"PointCloud2 has zero finite points (all {num_removed} are NaN/Inf)")
    if num_removed:
        points = points[finite]
        colors = colors[finite] if colors is not None else None

    return CloudArrays(points=points, colors=colors, frame_id=msg.header.frame_id, num_removed=num_removed)


def _fields_by_name(fields: Sequence[Any]) -> dict:
    """Map name -> field; the first field of a name wins, as in most ROS readers."""
    by_name = {}
    for field in fields:
        by_name.setdefault(field.name, field)
    return by_name


def _datatype_name(code: int) -> str:
    return _DATATYPE_NAMES.get(code, f"unknown datatype {code}")


def _check_xyz_fields(fields: dict) -> None:
    missing = [name for name in "xyz" if name not in fields]
    if missing:
        raise ValueError(
            f"PointCloud2 lacks field(s) {missing}; it has {sorted(fields)}"
        )
    for name in "xyz":
        datatype = fields[name].datatype
        # Integer coordinates need a scale the message cannot express, so reading them as
        # metres would be silently wrong.
        if datatype not in _FLOAT_TYPES:
            raise ValueError(
                f"PointCloud2 field '{name}' has datatype {_datatype_name(datatype)}; "
                "only FLOAT32 and FLOAT64 coordinates are supported"
            )


def _check_layout(msg: Any, fields: dict) -> None:
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    height, width = int(msg.height), int(msg.width)
    for field in fields.values():
        code = _NUMPY_CODES.get(field.datatype)
        if code is None:
            continue  # a field of unknown type is harmless unless we need it (checked later)
        end = field.offset + np.dtype(code).itemsize * max(int(field.count), 1)
        if end > point_step:
            raise ValueError(
                f"PointCloud2 point_step {point_step} is smaller than field '{field.name}' "
                f"needs (offset {field.offset} + size = {end} bytes)"
            )
    if row_step < width * point_step:
        raise ValueError(
            f"PointCloud2 row_step {row_step} is smaller than width*point_step "
            f"({width}*{point_step} = {width * point_step})"
        )
    # The last row may omit its trailing padding; anything beyond height*row_step is wrong.
    needed = row_step * (height - 1) + width * point_step
    available = len(msg.data)
    if not needed <= available <= row_step * height:
        raise ValueError(
            f"PointCloud2 data holds {available} bytes, inconsistent with height={height}, "
            f"width={width}, point_step={point_step}, row_step={row_step} "
            f"(expected {row_step * height})"
        )


def _wanted_fields(fields: dict, want_colors: bool) -> list:
    """(name, numpy code) of the fields to read."""
    wanted = [(name, _NUMPY_CODES[fields[name].datatype]) for name in "xyz"]
    if want_colors:
        packed = _packed_colour_field(fields)
        if packed is not None:
            # Read the four bytes as an integer: a FLOAT32 rgb is a bit pattern, not a number.
            wanted.append((packed.name, "u4"))
        elif all(name in fields for name in "rgb"):
            for name in "rgb":
                datatype = fields[name].datatype
                if datatype not in (UINT8,) + _FLOAT_TYPES:
                    raise ValueError(
                        f"PointCloud2 colour field '{name}' has datatype "
                        f"{_datatype_name(datatype)}; supported: UINT8, FLOAT32, FLOAT64 "
                        "(or pass want_colors=False)"
                    )
                wanted.append((name, _NUMPY_CODES[datatype]))
    return wanted


def _packed_colour_field(fields: dict) -> Optional[Any]:
    for name in ("rgb", "rgba"):
        field = fields.get(name)
        if field is None:
            continue
        if field.datatype not in _PACKED_COLOUR_TYPES:
            raise ValueError(
                f"PointCloud2 colour field '{name}' has datatype "
                f"{_datatype_name(field.datatype)}; packed colours must be FLOAT32, UINT32 "
                "or INT32 (or pass want_colors=False)"
            )
        return field
    return None


def _read_colors(records: np.ndarray, fields: dict) -> Optional[np.ndarray]:
    """(height, width, 3) float32 colours in [0, 1], or None when the cloud has none."""
    names = records.dtype.names
    packed = next((name for name in ("rgb", "rgba") if name in names), None)
    if packed is not None:
        channels = (records[packed][..., None] >> _RGB_SHIFTS) & 0xFF
        return channels.astype(np.float32) / np.float32(255.0)
    if all(name in names for name in "rgb"):
        colors = np.stack([records[name] for name in "rgb"], axis=-1)
        if fields["r"].datatype == UINT8:
            return colors.astype(np.float32) / np.float32(255.0)
        return np.clip(colors, 0.0, 1.0).astype(np.float32)
    return None


def _as_buffer(data) -> np.ndarray:
    """A uint8 array over the message data, without copying.

    The generated message setter stores `data` as array.array('B'), whatever it was given.
    """
    return np.frombuffer(data, dtype=np.uint8)
