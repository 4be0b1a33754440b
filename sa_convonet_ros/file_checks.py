"""Point-cloud files checked before they are read, and Open3D kept quiet while it reads them.

Open3D reads the vertices a short PLY lacks (and the points of a short ASCII PCD) as zeros or leftover memory,
saying so only on the terminal, and no kept library reads these headers on its own: each format's header is
read here and held against the bytes or lines that follow it. What Open3D (and RPly, through C's stdio) print
while reading is captured, so a caller can turn it into one error message.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
import tempfile
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Iterator

import numpy as np

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_BYTE_ORDERS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}


@dataclass
class _PlyElement:
    name: str
    count: int
    # (name, numpy type of the value or of a list's items, numpy type of a list's length or None)
    properties: list[tuple[str, str, str | None]]

    @property
    def plural(self) -> str:
        return "vertices" if self.name == "vertex" else f"{self.name}s"

    @property
    def row_bytes(self) -> int | None:
        """Bytes of one binary row; None when a list property makes rows differ."""
        if any(length for _, _, length in self.properties):
            return None
        return sum(np.dtype(kind).itemsize for _, kind, _ in self.properties)


def check_ply(path: Path) -> None:
    """ValueError unless the PLY header is well formed, has vertices with x, y and z, and is followed by all the
    rows it declares (bytes for a binary file, lines for an ASCII one). Trailing bytes are fine."""
    file_format, elements, header_bytes = _read_ply_header(path)
    vertex = next((element for element in elements if element.name == "vertex"), None)
    if vertex is None or not {"x", "y", "z"} <= {name for name, _, _ in vertex.properties}:
        raise ValueError(f"{path}: malformed PLY header: no vertex element with x, y and z properties")
    if vertex.count == 0:
        raise ValueError(f"{path}: the file contains zero points (its header declares 0 vertices)")
    if file_format == "ascii":
        _check_ply_lines(path, elements, header_bytes)
    else:
        _check_ply_bytes(path, elements, header_bytes, _PLY_BYTE_ORDERS[file_format])


def _read_ply_header(path: Path) -> tuple[str, list[_PlyElement], int]:
    """The format, the elements and the length in bytes of a PLY header; ValueError saying what is wrong in it."""
    file_format, elements = None, []
    with path.open("rb") as stream:
        if stream.readline(16).rstrip(b"\r\n") != b"ply":
            raise ValueError(f"{path}: not a PLY file (it does not start with a 'ply' line)")
        for number, line in enumerate(iter(lambda: stream.readline(4096), b""), start=2):
            words = line.decode("latin-1").split()
            keyword = words[0] if words else ""
            if keyword == "end_header":
                break
            if keyword in ("", "comment", "obj_info"):
                continue
            if keyword == "format" and len(words) == 3 and words[1] in _PLY_BYTE_ORDERS:
                file_format = words[1]
            elif keyword == "element" and len(words) == 3 and words[2].isdigit():
                elements.append(_PlyElement(words[1], int(words[2]), []))
            elif keyword == "property" and elements and (described := _ply_property(words)):
                elements[-1].properties.append(described)
            else:
                raise ValueError(f"{path}: malformed PLY header: line {number} is {_header_line_shown(line)}")
        else:
            raise ValueError(f"{path}: malformed PLY header: no end_header line")
        if file_format is None:
            raise ValueError(f"{path}: malformed PLY header: no format line")
        return file_format, elements, stream.tell()


def _header_line_shown(line: bytes) -> str:
    """A header line quoted for a message, or "binary data" for the bytes of a file that is no such header."""
    text = line.decode("latin-1").strip()
    return repr(text[:60]) if text.isascii() and text.isprintable() else "binary data"


def _ply_property(words: list[str]) -> tuple[str, str, str | None] | None:
    """`property TYPE NAME` or `property list LENGTH_TYPE ITEM_TYPE NAME`; None for anything else."""
    if len(words) == 3 and words[1] in _PLY_TYPES:
        return words[2], _PLY_TYPES[words[1]], None
    if len(words) == 5 and words[1] == "list" and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
        return words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]
    return None


def _check_ply_bytes(path: Path, elements: list[_PlyElement], header_bytes: int, byte_order: str) -> None:
    size = path.stat().st_size
    offset, before = header_bytes, "the header"
    data = None  # the file's bytes, mapped once an element with lists needs its lengths read
    for element in elements:
        left = size - offset
        row = element.row_bytes
        if row is None:
            data = np.memmap(path, dtype=np.uint8, mode="r") if data is None else data
            end = _ply_list_rows_end(data, element, offset, byte_order)
            if end is None:
                raise ValueError(f"{path}: truncated: the {element.count:,} {element.plural} the header declares "
                                 f"run past the end of the file ({left:,} bytes follow {before})")
        else:
            end = offset + element.count * row
            if end > size:
                raise ValueError(f"{path}: truncated: the header declares {element.count:,} {element.plural} of "
                                 f"{row} bytes ({element.count * row:,} bytes) but {left:,} bytes follow {before}")
        offset, before = end, f"the {element.plural}"


def _ply_list_rows_end(data: np.ndarray, element: _PlyElement, start: int, byte_order: str) -> int | None:
    """Where the binary rows of an element with lists end, or None when the file ends first. The rows are taken
    to be as long as the first one (as a triangle mesh's faces are) and that is checked in one pass; rows of
    differing lengths are walked one by one."""
    if element.count == 0:
        return start
    first = _ply_row(data, element.properties, start, byte_order)
    if first is None:
        return None
    row, lengths = first
    end = start + element.count * row
    if end <= len(data) and all(
            np.all(np.ndarray(element.count, byte_order + kind, data, start + at, (row,)) == length)
            for at, kind, length in lengths):
        return end
    for _ in range(element.count):
        walked = _ply_row(data, element.properties, start, byte_order)
        if walked is None:
            return None
        start += walked[0]
    return start


def _ply_row(data: np.ndarray, properties: list, start: int, byte_order: str) -> tuple[int, list] | None:
    """(bytes, [(offset in the row, type, value) of each list's length]) of the binary row at `start`, or None
    when the file ends inside it."""
    at, lengths = 0, []
    for _, kind, length_kind in properties:
        if length_kind is not None:
            width = np.dtype(length_kind).itemsize
            if start + at + width > len(data):
                return None
            # A negative length is left to Open3D to refuse.
            length = max(int(data[start + at:start + at + width].view(byte_order + length_kind)[0]), 0)
            lengths.append((at, length_kind, length))
            at += width + length * np.dtype(kind).itemsize
        else:
            at += np.dtype(kind).itemsize
    return (at, lengths) if start + at <= len(data) else None


def _check_ply_lines(path: Path, elements: list[_PlyElement], header_bytes: int) -> None:
    """Each row of an ASCII PLY on a line of its own, holding the values its properties need."""
    with path.open("rb") as stream:
        stream.seek(header_bytes)
        rows = (line.split() for line in stream if not line.isspace())
        for element in elements:
            fixed = len(element.properties) if element.row_bytes is not None else None
            for index in range(element.count):
                values = next(rows, None)
                if values is None:
                    raise ValueError(f"{path}: truncated: the header declares {element.count:,} {element.plural} "
                                     f"but the file ends after {index:,} lines of them")
                needed = fixed or _ply_values_needed(element.properties, values)
                if len(values) < needed:
                    raise ValueError(f"{path}: truncated or malformed: {element.name} {index + 1:,} of "
                                     f"{element.count:,} holds {len(values)} values, its properties need {needed}")


def _ply_values_needed(properties: list, values: list[bytes]) -> int:
    """How many values an ASCII row with lists needs, given the lengths it states."""
    needed = 0
    for _, _, length_kind in properties:
        if length_kind is not None and needed < len(values) and values[needed].isdigit():
            needed += int(values[needed])
        needed += 1
    return needed


_PCD_KEYWORDS = ("VERSION", "FIELDS", "COLUMNS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT",
                 "POINTS", "DATA")
# The sizes Open3D's PCD reader understands for each type; it reads a coordinate of any other size as 0.
_PCD_READABLE_SIZES = {"F": (4,), "I": (1, 2, 4), "U": (1, 2, 4)}


def check_pcd(path: Path) -> None:
    """ValueError unless the PCD header is well formed, has x, y and z fields Open3D can read, and is followed by
    the points it declares (lines for ASCII, bytes for binary, the stated sizes for binary_compressed)."""
    header, header_bytes = _read_pcd_header(path)
    names = header.get("FIELDS") or header.get("COLUMNS") or []
    sizes = _pcd_integers(path, header, "SIZE", len(names), default=4)
    counts = _pcd_integers(path, header, "COUNT", len(names), default=1)
    types = header.get("TYPE", ["F"] * len(names))
    if len(types) != len(names) or not set(types) <= set(_PCD_READABLE_SIZES):
        raise ValueError(f"{path}: malformed PCD header: TYPE {' '.join(types)} does not give F, I or U for each "
                         f"of the {len(names)} fields")
    coordinates = {name: (kind, size) for name, kind, size in zip(names, types, sizes) if name in ("x", "y", "z")}
    if len(coordinates) < 3:
        raise ValueError(f"{path}: malformed PCD header: no x, y and z fields (FIELDS {' '.join(names)})")
    for name, (kind, size) in sorted(coordinates.items()):
        if size not in _PCD_READABLE_SIZES[kind]:
            raise ValueError(f"{path}: field {name} is of TYPE {kind} SIZE {size}, which Open3D's PCD reader reads as "
                             "0 (it reads 4-byte floats and 1-, 2- or 4-byte integers)")
    points = _pcd_integer(path, header, "POINTS") if "POINTS" in header else \
        _pcd_integer(path, header, "WIDTH") * _pcd_integer(path, header, "HEIGHT")
    if points == 0:
        raise ValueError(f"{path}: the file contains zero points (its header declares 0)")
    point_bytes = sum(size * count for size, count in zip(sizes, counts))
    _check_pcd_data(path, header["DATA"], header_bytes, points, point_bytes, sum(counts))


def _read_pcd_header(path: Path) -> tuple[dict[str, list[str]], int]:
    """keyword -> its values, up to the DATA line, and the header's length in bytes."""
    header: dict[str, list[str]] = {}
    with path.open("rb") as stream:
        for number, line in enumerate(iter(lambda: stream.readline(4096), b""), start=1):
            words = line.decode("latin-1").split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] not in _PCD_KEYWORDS:
                raise ValueError(f"{path}: malformed PCD header: line {number} is {_header_line_shown(line)}")
            header[words[0]] = words[1:]
            if words[0] == "DATA":
                return header, stream.tell()
    raise ValueError(f"{path}: malformed PCD header: no DATA line")


def _pcd_integers(path: Path, header: dict, keyword: str, fields: int, default: int) -> list[int]:
    words = header.get(keyword, [str(default)] * fields)
    if len(words) != fields or not all(word.isdigit() and int(word) > 0 for word in words):
        raise ValueError(f"{path}: malformed PCD header: {keyword} {' '.join(words)} does not give a positive "
                         f"integer for each of the {fields} fields")
    return [int(word) for word in words]


def _pcd_integer(path: Path, header: dict, keyword: str) -> int:
    words = header.get(keyword, [])
    if len(words) != 1 or not words[0].isdigit():
        raise ValueError(f"{path}: malformed PCD header: {keyword} {' '.join(words)} is not a count")
    return int(words[0])


def _check_pcd_data(path: Path, data: list[str], header_bytes: int, points: int, point_bytes: int,
                    values: int) -> None:
    body = path.stat().st_size - header_bytes
    kind = data[0].lower() if data else ""
    if kind == "ascii":
        with path.open("rb") as stream:
            stream.seek(header_bytes)
            rows = sum(1 for line in stream if len(line.split()) >= values)  # Open3D skips shorter lines
        if rows < points:
            raise ValueError(f"{path}: truncated: the header declares {points:,} points but {rows:,} lines of "
                             f"{values} values follow it")
    elif kind == "binary":
        if body < points * point_bytes:
            raise ValueError(f"{path}: truncated: the header declares {points:,} points of {point_bytes} bytes "
                             f"({points * point_bytes:,} bytes) but {body:,} bytes follow it")
    elif kind == "binary_compressed":
        _check_pcd_compressed(path, header_bytes, body, points, point_bytes)
    else:
        raise ValueError(f"{path}: malformed PCD header: DATA {' '.join(data)} is not ascii, binary or "
                         "binary_compressed")


def _check_pcd_compressed(path: Path, header_bytes: int, body: int, points: int, point_bytes: int) -> None:
    """binary_compressed data starts with its compressed and unpacked sizes (two little-endian uint32)."""
    if body < 8:
        raise ValueError(f"{path}: truncated: the header declares compressed data but {body} bytes follow it")
    with path.open("rb") as stream:
        stream.seek(header_bytes)
        compressed, unpacked = struct.unpack("<II", stream.read(8))
    if unpacked < points * point_bytes:
        raise ValueError(f"{path}: malformed: its compressed data unpacks to {unpacked:,} bytes, less than the "
                         f"{points:,} points of {point_bytes} bytes ({points * point_bytes:,} bytes) the header "
                         "declares")
    if body - 8 < compressed:
        raise ValueError(f"{path}: truncated: its compressed data is {compressed:,} bytes long but {body - 8:,} bytes "
                         "follow its sizes")




def check_npy_size(path: Path) -> None:
    """ValueError unless the file is a .npy array with all the bytes its header declares (np.load's own message
    for a short file differs between numpy versions and does not say so)."""
    header_readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with path.open("rb") as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version not in header_readers:
                return  # a newer layout: np.load checks it
            shape, _, dtype = header_readers[version](stream)
        except ValueError as error:
            raise ValueError(f"{path}: not a .npy array ({error})") from None
        body = path.stat().st_size - stream.tell()
    expected = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and body < expected:
        raise ValueError(f"{path}: truncated: the header declares a {shape} {dtype} array ({expected:,} bytes) "
                         f"but {body:,} bytes follow it")




@contextlib.contextmanager
def printed_lines() -> Iterator[list[str]]:
    """Keeps what is printed meanwhile off the terminal, and gives its lines (without colour codes and Open3D's
    level tags) in the list yielded once the block ends. Open3D prints through Python's sys.stdout, RPly with
    fprintf past Open3D's verbosity setting: both Python's streams and the file descriptors 1 and 2 are taken."""
    printed: list[str] = []
    python_text, native_text = StringIO(), StringIO()
    with _descriptors_captured(native_text), contextlib.redirect_stdout(python_text), \
            contextlib.redirect_stderr(python_text):
        yield printed
    text = re.sub(r"\x1b\[[0-9;]*m|\[Open3D \w+\] ", "", python_text.getvalue() + native_text.getvalue())
    printed.extend(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def _descriptors_captured(text: StringIO) -> Iterator[None]:
    """File descriptors 1 and 2 point at a temporary file meanwhile; what is written there goes to `text`."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                _flush_c_streams()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
            sink.seek(0)
            text.write(sink.read().decode(errors="replace"))
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _flush_c_streams() -> None:
    """fflush(NULL): text that C's stdio still buffers goes to the capture, not to the terminal afterwards."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
