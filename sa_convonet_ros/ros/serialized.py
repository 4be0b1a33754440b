"""Large mesh messages written straight to their wire format with numpy, for `Publisher.publish(bytes)`.

A mesh of a million faces as Python message objects is millions of Point and index objects, built one by
one; in CDR (the little-endian encoding DDS puts on the wire, which rclpy publishes as it is given) it is a
few contiguous arrays. Only what the node publishes this way is written here: `mesh_msgs`'
MeshGeometryStamped and MeshVertexColorsStamped (rclpy's own serializer has no path from numpy arrays).
"""
from __future__ import annotations

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
            self._align(alignment)
            self._put(np.ascontiguousarray(rows, dtype=dtype).tobytes())

    def bytes(self) -> bytes:
        return b"".join(self.parts)


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
