"""Conversion between sensor_msgs/PointCloud2 and numpy arrays.

The reader follows the message definition rather than one producer's habits: every field
is located through its own offset and datatype, points are `point_step` bytes apart, rows are
`row_step` bytes apart and the byte order comes from `is_bigendian`. All of it is done with
a numpy structured dtype laid over the message buffer, so no Python loop runs per point.

Colour conventions understood:
  * `rgb` / `rgba` packed in 4 bytes (FLOAT32, UINT32 or INT32): 0xAARRGGBB bit pattern, the
    PCL convention; the alpha byte is ignored.
  * separate `r`, `g`, `b` fields: UINT8 (0..255) or FLOAT32/FLOAT64 (0..1).
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

# PointField datatype code -> numpy type code without byte order.
_NUMPY_CODES = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}
_DATATYPE_NAMES = {
    PointField.INT8: "INT8",
    PointField.UINT8: "UINT8",
    PointField.INT16: "INT16",
    PointField.UINT16: "UINT16",
    PointField.INT32: "INT32",
    PointField.UINT32: "UINT32",
    PointField.FLOAT32: "FLOAT32",
    PointField.FLOAT64: "FLOAT64",
}
_FLOAT_TYPES = (PointField.FLOAT32, PointField.FLOAT64)
_PACKED_COLOUR_TYPES = (PointField.FLOAT32, PointField.UINT32, PointField.INT32)
_RGB_SHIFTS = np.array([16, 8, 0], dtype=np.uint32)


@dataclass
class CloudArrays:
    """The useful content of a PointCloud2, with non-finite points already removed."""

    points: np.ndarray  # (N, 3) float64
    colors: Optional[np.ndarray]  # (N, 3) float32 in [0, 1], or None
    intensity: Optional[np.ndarray]  # (N,) float32, or None
    frame_id: str
    stamp: Time
    num_removed: int = 0  # points dropped because x, y or z was NaN or infinite

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


def cloud_to_arrays(msg: PointCloud2, *, want_colors: bool = True) -> CloudArrays:
    """Read points (and colours / intensity when present) from any PointCloud2 layout.

    Raises ValueError when the message is malformed, has no usable x/y/z, or holds no point.
    """
    fields = _fields_by_name(msg.fields)
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        raise ValueError(f"PointCloud2 has zero points (height={height}, width={width})")
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
    intensity = (
        records["intensity"].astype(np.float32).reshape(-1) if "intensity" in fields else None
    )

    finite = np.isfinite(points).all(axis=1)
    num_removed = int(finite.size - np.count_nonzero(finite))
    if num_removed == finite.size:
        raise ValueError(f"PointCloud2 has zero finite points (all {num_removed} are NaN/Inf)")
    if num_removed:
        points = points[finite]
        colors = colors[finite] if colors is not None else None
        intensity = intensity[finite] if intensity is not None else None

    return CloudArrays(
        points=points,
        colors=colors,
        intensity=intensity,
        frame_id=msg.header.frame_id,
        stamp=msg.header.stamp,
        num_removed=num_removed,
    )


def _fields_by_name(fields: Sequence[PointField]) -> dict:
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


def _check_layout(msg: PointCloud2, fields: dict) -> None:
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
                if datatype not in (PointField.UINT8,) + _FLOAT_TYPES:
                    raise ValueError(
                        f"PointCloud2 colour field '{name}' has datatype "
                        f"{_datatype_name(datatype)}; supported: UINT8, FLOAT32, FLOAT64 "
                        "(or pass want_colors=False)"
                    )
                wanted.append((name, _NUMPY_CODES[datatype]))
    if "intensity" in fields:
        code = _NUMPY_CODES.get(fields["intensity"].datatype)
        if code is None:
            raise ValueError(
                "PointCloud2 field 'intensity' has "
                f"{_datatype_name(fields['intensity'].datatype)}"
            )
        wanted.append(("intensity", code))
    return wanted


def _packed_colour_field(fields: dict) -> Optional[PointField]:
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
        if fields["r"].datatype == PointField.UINT8:
            return colors.astype(np.float32) / np.float32(255.0)
        return np.clip(colors, 0.0, 1.0).astype(np.float32)
    return None


def _as_buffer(data) -> np.ndarray:
    """A uint8 array over the message data, without copying.

    The generated message setter stores `data` as array.array('B'), whatever it was given.
    """
    return np.frombuffer(data, dtype=np.uint8)


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


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
    to make an (N, 3) input an organised cloud. The padding options exist to exercise
    readers with the layouts real drivers produce.
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
