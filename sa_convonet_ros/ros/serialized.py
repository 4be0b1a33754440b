"""Large mesh messages written straight to their wire format with numpy, for `Publisher.publish(bytes)`.

A mesh of a million faces as Python message objects is millions of Point and index objects, built one by
one; in CDR (the little-endian encoding DDS puts on the wire, which rclpy publishes as it is given) it is a
few contiguous arrays. Written here: `mesh_msgs`' MeshGeometryStamped and MeshVertexColorsStamped, and any
message whose large sequences of small structs come as arrays (`CdrWriter.message`: the RViz markers), the
rest of it read field by field from its definition, so it follows the ROS distribution's (rclpy's own
serializer has no path from numpy arrays).
"""
from __future__ import annotations

import struct

import numpy as np

CDR_LITTLE_ENDIAN = b"\x00\x01\x00\x00"  # the encapsulation header


class CdrWriter:
    """Appends CDR values to a buffer; alignment counts from the end of the encapsulation header."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [CDR_LITTLE_ENDIAN]
        self.size = 0  # bytes written after the header

    def _align(self, boundary: int) -> None:
        padding = -self.size % boundary
        if padding:
            self._put(b"\x00" * padding)

    def _put(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def uint32(self, value: int) -> None:
        self._align(4)
        self._put(np.uint32(value).tobytes())

    def int32(self, value: int) -> None:
        self._align(4)
        self._put(np.int32(value).tobytes())

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.uint32(len(data))
        self._put(data)

    def header(self, frame_id: str, sec: int = 0, nanosec: int = 0) -> None:
        """std_msgs/Header: builtin_interfaces/Time stamp, frame_id."""
        self.int32(sec)
        self.uint32(nanosec)
        self.string(frame_id)

    def sequence(self, rows: np.ndarray, dtype: str, alignment: int) -> None:
        """A sequence of fixed-size structs of one primitive type each (rows x columns of `dtype`)."""
        self.uint32(len(rows))
        if len(rows):
            self._packed(rows, dtype, alignment)

    def _packed(self, values, dtype: str, alignment: int) -> None:
        """Values of one primitive type in one piece, aligned to their size."""
        self._align(alignment)
        self._put(np.ascontiguousarray(values, dtype=dtype).tobytes())

    def bytes(self) -> bytes:
        return b"".join(self.parts)

    def message(self, msg, arrays: dict[str, np.ndarray] | None = None) -> None:
        """A message, field by field as its type defines them; `arrays` replaces sequences of structs of one
        primitive type (geometry_msgs/Point, std_msgs/ColorRGBA) by their rows, one per struct."""
        for name, kind in msg.get_fields_and_field_types().items():
            if arrays is not None and name in arrays:
                if not kind.startswith("sequence<"):
                    raise TypeError(f"{name} is a {kind}, not a sequence of structs of one primitive type")
                self.struct_rows(arrays[name], _element(kind))
            else:
                self.value(kind, getattr(msg, name))

    def value(self, kind: str, value) -> None:
        """One field's value by its type name (`get_fields_and_field_types`)."""
        if kind in PRIMITIVES:
            code = PRIMITIVES[kind]
            self._align(struct.calcsize(code))
            self._put(struct.pack("<" + code, value))
        elif kind == "string" or kind.startswith("string<"):
            self.string(value)
        elif kind.startswith("sequence<"):
            element = _element(kind)
            self.uint32(len(value))
            self._items(element, value)
        elif kind.endswith("]"):  # a fixed-size array: no length on the wire
            self._items(kind[:kind.index("[")], value)
        elif "/" in kind:
            self.message(value)
        else:
            raise TypeError(f"no CDR writer for the field type {kind!r}")

    def struct_rows(self, rows: np.ndarray, kind: str) -> None:
        """A sequence of structs whose fields share one primitive type, from an array of one row per struct."""
        fields = set(_message_class(kind).get_fields_and_field_types().values())
        if len(fields) != 1 or next(iter(fields)) not in PRIMITIVES:
            raise TypeError(f"{kind} is not a struct of one primitive type")
        code = PRIMITIVES[next(iter(fields))]
        self.sequence(rows, "<" + code, struct.calcsize(code))

    def _items(self, element: str, items) -> None:
        if element in PRIMITIVES and len(items):  # bytes and arrays of numbers in one piece
            code = PRIMITIVES[element]
            self._packed(items, "<" + code, struct.calcsize(code))
        else:
            for item in items:
                self.value(element, item)


# ROS 2 primitive type names -> struct codes (little-endian, no padding)
PRIMITIVES = {"boolean": "?", "octet": "B", "uint8": "B", "int8": "b", "uint16": "H", "int16": "h",
              "uint32": "I", "int32": "i", "uint64": "Q", "int64": "q", "float": "f", "double": "d"}


def _element(kind: str) -> str:
    """The element type of `sequence<T>` or `sequence<T, N>`."""
    return kind[len("sequence<"):-1].split(",")[0].strip()


def _message_class(kind: str):
    package, name = kind.split("/")
    module = __import__(f"{package}.msg", fromlist=[name])
    return getattr(module, name)


def mesh_geometry_stamped(vertices: np.ndarray, normals: np.ndarray, faces: np.ndarray, frame_id: str,
                          uuid: str, stamp: tuple[int, int] = (0, 0)) -> bytes:
    """mesh_msgs/MeshGeometryStamped: header, uuid, vertices and vertex_normals (geometry_msgs/Point: three
    float64 each), faces (MeshTriangleIndices: uint32[3] each)."""
    writer = CdrWriter()
    writer.header(frame_id, *stamp)
    writer.string(uuid)
    writer.sequence(np.asarray(vertices).reshape(-1, 3), "<f8", 8)
    writer.sequence(np.asarray(normals).reshape(-1, 3), "<f8", 8)
    writer.sequence(np.asarray(faces).reshape(-1, 3), "<u4", 4)
    return writer.bytes()


def mesh_vertex_colors_stamped(rgba: np.ndarray, frame_id: str, uuid: str, stamp: tuple[int, int] = (0, 0)) -> bytes:
    """mesh_msgs/MeshVertexColorsStamped: header, uuid, one std_msgs/ColorRGBA (four float32) per vertex."""
    writer = CdrWriter()
    writer.header(frame_id, *stamp)
    writer.string(uuid)
    writer.sequence(np.asarray(rgba).reshape(-1, 4), "<f4", 4)
    return writer.bytes()
