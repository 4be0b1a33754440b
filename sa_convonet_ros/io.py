"""Reading point clouds and writing meshes / point clouds in the common file formats.

Readers return the cloud exactly as stored: NaN or infinite coordinates are *not* removed here,
so that callers decide how to treat invalid returns (see ``PointCloudData.finite_mask``).
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import os
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import trimesh

from .file_checks import check_npy_size, check_pcd, check_ply, printed_lines

POINT_CLOUD_READ_EXTENSIONS = (".ply", ".pcd", ".xyz", ".txt", ".pts", ".npy", ".npz")
POINT_CLOUD_WRITE_EXTENSIONS = (".ply", ".pcd", ".npy", ".xyz")
MESH_WRITE_EXTENSIONS = (".ply", ".obj", ".glb", ".stl", ".off")

_TEXT_EXTENSIONS = (".xyz", ".txt", ".pts")


@dataclass
class PointCloudData:
    """A point cloud: (N, 3) float64 points in metres, optional (N, 3) float32 colours in [0, 1]
    and optional (N, 3) float64 normals (only some formats carry them)."""

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def finite_mask(self) -> np.ndarray:
        """Boolean mask of the points whose three coordinates are finite."""
        return np.isfinite(self.points).all(axis=1)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def read_point_cloud(path: str | Path) -> PointCloudData:
    """Read a point cloud from .ply, .pcd, .xyz/.txt/.pts (text), .npy or .npz.

    Text files hold ``x y z [r g b]`` per line; colours may be 0-255 or 0-1 (detected from
    their range). .npy holds an (N, 3) or (N, 6) array (xyz + rgb); .npz holds ``points`` and
    optionally ``colors`` / ``normals``. Raises FileNotFoundError / ValueError naming the file,
    also for a file cut short or malformed (checked against its header where the format has one).
    NaN points are kept; use ``PointCloudData.finite_mask()`` to filter them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    ext = path.suffix.lower()
    if ext not in POINT_CLOUD_READ_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported point cloud extension '{path.suffix}' "
            f"(supported: {', '.join(POINT_CLOUD_READ_EXTENSIONS)})"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    if ext in (".ply", ".pcd"):
        (check_ply if ext == ".ply" else check_pcd)(path)
        cloud = _read_with_open3d(path)
    elif ext in _TEXT_EXTENSIONS:
        cloud = _read_text(path)
    elif ext == ".npy":
        cloud = _split_columns(_load_npy(path), path)
    else:
        cloud = _read_npz(path)
    if len(cloud) == 0:
        raise ValueError(f"{path}: the file contains zero points (empty or unreadable)")
    return cloud


def _read_with_open3d(path: Path) -> PointCloudData:
    import open3d as o3d

    with printed_lines() as printed:
        pcd = o3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
    if printed:  # Open3D and RPly print only when reading fails, and still return what they had read
        raise ValueError(f"{path}: Open3D cannot read it: {'; '.join(printed)}")
    points = np.asarray(pcd.points, dtype=np.float64).reshape(-1, 3)
    colors = np.asarray(pcd.colors, dtype=np.float32) if pcd.has_colors() else None
    normals = np.asarray(pcd.normals, dtype=np.float64) if pcd.has_normals() else None
    return PointCloudData(points=points.copy(), colors=colors, normals=normals)


def _read_text(path: Path) -> PointCloudData:
    skip_rows, declared = _text_header(path)
    try:
        with warnings.catch_warnings():  # an empty file is reported below as "zero points"
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, comments="#", ndmin=2, skiprows=skip_rows, dtype=np.float64)
    except ValueError as error:
        problem = _short_last_line(path, skip_rows) or f"not a numeric 'x y z [r g b]' table ({error})"
        raise ValueError(f"{path}: {problem}") from None
    if declared is not None and declared > len(table):
        raise ValueError(f"{path}: truncated: its first line declares {declared:,} points but {len(table):,} "
                         "rows follow it")
    if table.size == 0:
        return PointCloudData(points=np.zeros((0, 3)))
    if table.shape[1] < 3:
        raise ValueError(f"{path}: expected at least 3 columns (x y z [r g b]), found {table.shape[1]}")
    # Three columns after xyz are read as colours unless negative (then they are e.g. normals);
    # other layouts (x y z intensity ...) keep just the coordinates.
    has_colors = table.shape[1] >= 6 and not (table[:, 3:6] < 0).any()
    return _split_columns(table[:, :6] if has_colors else table[:, :3], path)


def _text_header(path: Path) -> tuple[int, int | None]:
    """(rows to skip, points declared): 1 row and its count when the first data line holds a single number (the
    point count of some .pts files), else (0, None)."""
    with path.open("r", errors="replace") as stream:
        for index, line in enumerate(stream):
            fields = line.split("#", 1)[0].split()
            if len(fields) == 1:
                return index + 1, int(fields[0]) if fields[0].isdigit() else None
            if fields:
                return 0, None
    return 0, None


def _short_last_line(path: Path, skip_rows: int) -> str | None:
    """'truncated: ...' when the last data line holds fewer values than the first, as a file cut short does."""
    first = last = None
    with path.open("r", errors="replace") as stream:
        for line in itertools.islice(stream, skip_rows, None):
            fields = line.split("#", 1)[0].split()
            if fields:
                first, last = first or fields, fields
    if first is not None and len(last) < len(first):
        return f"truncated: its last line holds {len(last)} values, its first {len(first)}"
    return None


def _load_npy(path: Path) -> np.ndarray:
    check_npy_size(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise ValueError(f"{path}: cannot read .npy array ({error})") from None
    return _numeric_array(array, path, "array")


# What numpy and zipfile raise on a cut or damaged archive.
_NPZ_FAILURES = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError)


def _read_npz(path: Path) -> PointCloudData:
    with path.open("rb") as stream:
        if stream.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ValueError(f"{path}: not an .npz archive (it does not start like a zip file)")
    try:
        archive = np.load(path, allow_pickle=False)
    except _NPZ_FAILURES as error:
        raise ValueError(f"{path}: truncated or damaged .npz archive ({error})") from None
    with archive:
        if "points" not in archive:
            raise ValueError(f"{path}: .npz has no 'points' array (keys: {', '.join(archive.files)})")
        points, colors, normals = (_npz_array(archive, name, path) if name in archive else None
                                   for name in ("points", "colors", "normals"))
    _check_columns(points, 3, path, "'points'")
    for name, extra in (("'colors'", colors), ("'normals'", normals)):
        if extra is not None and extra.shape != points.shape:
            raise ValueError(f"{path}: {name} has shape {extra.shape}, expected {points.shape} like 'points'")
    return PointCloudData(
        points=points.astype(np.float64),
        colors=None if colors is None else _normalise_colors(colors),
        normals=None if normals is None else normals.astype(np.float64),
    )


def _npz_array(archive, name: str, path: Path) -> np.ndarray:
    try:
        array = archive[name]
    except _NPZ_FAILURES as error:
        raise ValueError(f"{path}: cannot read '{name}' from the .npz archive, damaged? ({error})") from None
    return _numeric_array(array, path, f"'{name}'")


def _numeric_array(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{path}: {what} is not numeric (dtype {array.dtype})")
    return array


def _check_columns(array: np.ndarray, columns: int, path: Path, what: str) -> None:
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(f"{path}: {what} has shape {array.shape}, expected (N, {columns})")


def _split_columns(table: np.ndarray, path: Path) -> PointCloudData:
    """(N, 3) -> points; (N, 6) -> points + colours."""
    if table.ndim != 2 or table.shape[1] not in (3, 6):
        raise ValueError(f"{path}: array has shape {table.shape}, expected (N, 3) or (N, 6)")
    points = table[:, :3].astype(np.float64)
    colors = _normalise_colors(table[:, 3:6]) if table.shape[1] == 6 else None
    return PointCloudData(points=points, colors=colors)


def _normalise_colors(colors: np.ndarray) -> np.ndarray:
    """Colours to float32 in [0, 1]; integer types or values above 1 are taken as 0-255."""
    colors = np.asarray(colors)
    finite = colors[np.isfinite(colors)] if colors.dtype.kind == "f" else colors
    if colors.dtype.kind in "ui" or (finite.size and finite.max() > 1.0):
        colors = colors / 255.0
    return np.clip(colors, 0.0, 1.0).astype(np.float32)


def read_mesh(path: str | Path) -> trimesh.Trimesh:
    """Load a mesh file as one Trimesh (scenes are concatenated); a file without faces gives an
    empty mesh rather than an error so that failed reconstructions can still be scored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # trimesh's loaders raise many types, without the file's name
        raise ValueError(f"{path}: cannot read the mesh ({type(error).__name__}: {error})") from None
    if isinstance(loaded, trimesh.Trimesh):
        return loaded
    return trimesh.Trimesh()  # e.g. a PLY holding only vertices

MESH_READ_EXTENSIONS = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")


def read_mesh_or_cloud(path: str | Path) -> trimesh.Trimesh | PointCloudData:
    """What a file holds: a mesh when it has faces, else its points (a PLY of vertices only, PCD, XYZ, NPY...);
    FileNotFoundError / ValueError naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() in MESH_READ_EXTENSIONS:
        mesh = read_mesh(path)
        if len(mesh.faces):
            return mesh
        if path.suffix.lower() not in POINT_CLOUD_READ_EXTENSIONS:
            raise ValueError(f"{path}: the mesh has no faces")
    return read_point_cloud(path)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def write_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a mesh (.ply/.obj/.glb/.stl/.off), creating parent directories.

    Vertices keep their metric coordinates however far from the origin they lie: PLY stores them as
    doubles, GLB (float32 by its specification) stores them relative to an origin kept in the file's
    node transform, OBJ and OFF as decimal text. STL can only hold float32, so a mesh farther than
    `FLOAT32_SAFE_RANGE` from the origin is refused (its vertices would move by up to a millimetre
    or more). Vertex colours survive in PLY and GLB (OBJ/STL/OFF writers may drop them)."""
    path = check_mesh_path(path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if path.suffix.lower() == ".stl":
        _check_float32_range(vertices, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext == ".ply":
        with open(path, "wb") as stream:
            write_ply(mesh, stream)
    elif ext == ".glb":
        _export_glb(mesh, path)
    else:
        mesh.export(path, file_type=ext[1:])
    return path


# Coordinates up to this far from the origin keep a float32 spacing of 0.12 mm or finer.
FLOAT32_SAFE_RANGE = 1024.0


def check_mesh_path(path: str | Path, max_abs_coordinate: float = 0.0) -> Path:
    """The mesh path, checked before any work is done: a supported extension, not a directory (nor a
    name ending in a slash), and a place where a file can be created. `max_abs_coordinate` (the
    largest coordinate the mesh may have) refuses STL for far-away data up front. Raises ValueError
    saying "could not write <path>: ..." otherwise."""
    path = check_output_file(path)
    if path.suffix.lower() not in MESH_WRITE_EXTENSIONS:
        raise ValueError(f"could not write {shown_path(path)}: unsupported mesh extension '{path.suffix}' "
                         f"(supported: {', '.join(MESH_WRITE_EXTENSIONS)})")
    if path.suffix.lower() == ".stl" and max_abs_coordinate > FLOAT32_SAFE_RANGE:
        _check_float32_range(np.array([[max_abs_coordinate, 0.0, 0.0]]), path)
    return path


def check_output_file(path: str | Path) -> Path:
    """The path of a file to write, checked before any work: no control character in it, not a directory (nor a
    name ending in a slash, which Path would drop) and a place where a file can be created; ValueError otherwise."""
    text = str(path)
    refuse_control_characters(text)
    path = Path(path).expanduser()
    with _os_errors_refusing(text):
        if text.endswith(("/", os.sep)) or path.is_dir():
            raise ValueError(f"could not write {shown_path(text)}: it names a directory; give a file name")
    check_writable(path)
    return path


def check_writable(path: Path) -> None:
    """ValueError ("could not write ...") unless a file can be created at `path` (its missing parent
    folders included). Probes with a temporary file in the nearest existing folder, since permission
    bits say nothing for root and nothing about read-only or special file systems. A name the system
    refuses (too long, say) is refused too."""
    path = Path(path).absolute()
    with _os_errors_refusing(path):
        if _exists(path):
            if not path.is_file() or not os.access(path, os.W_OK):
                raise ValueError(f"could not write {shown_path(path)}: it exists and is not a writable file")
            return
        folder = path.parent
        while not _exists(folder):
            folder = folder.parent
        if not folder.is_dir():
            raise ValueError(f"could not write {shown_path(path)}: {shown_path(folder)} is a file, not a folder")
        _check_name_lengths(path, folder)
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise ValueError(f"could not write {shown_path(path)}: {error.strerror or error} in {shown_path(folder)}") \
                from None


@contextlib.contextmanager
def _os_errors_refusing(path: str | Path) -> Iterator[None]:
    """An OSError meanwhile (a name too long, a loop of links...) as ValueError("could not write <path>: ...")."""
    try:
        yield
    except OSError as error:
        raise ValueError(f"could not write {shown_path(path)}: {error.strerror or error}") from None


def _exists(path: Path) -> bool:
    """Path.exists, except that an error about the name itself (too long, say) is raised, not taken for absence."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _check_name_lengths(path: Path, folder: Path) -> None:
    """The names of `path` below `folder` (its nearest existing folder), each within the file system's limit: the
    system says "too long" only for names it looks up, and it looks no further than the first missing folder."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    for name in path.relative_to(folder).parts:
        if len(os.fsencode(name)) > limit:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


_CONTROL_NAMES = {"\n": "newline", "\r": "carriage return", "\t": "tab", "\0": "NUL", "\x1b": "escape",
                  "\x7f": "DEL"}


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or char == "\x7f"


def refuse_control_characters(text: str) -> None:
    """Control characters (C0 and DEL) in a name to write are refused: they are almost always a mistake of quoting,
    and they garble every listing and message that shows the name."""
    control = next((char for char in text if _is_control(char)), None)
    if control is not None:
        name = _CONTROL_NAMES.get(control, f"U+{ord(control):04X}")
        raise ValueError(f"could not write {shown_path(text)}: the name holds a control character ({name})")


def shown_path(path: str | Path) -> str:
    """A path as it goes into a one-line message: control characters escaped, an absurdly long path cut to its
    first 80 characters and its length."""
    text = str(path)
    shown = "".join(repr(char)[1:-1] if _is_control(char) else char for char in text)
    return shown if len(text) <= 255 else f"{shown[:80]}... ({len(text):,} characters)"


def _check_float32_range(vertices: np.ndarray, path: Path) -> None:
    largest = float(np.abs(vertices).max()) if vertices.size else 0.0
    if largest > FLOAT32_SAFE_RANGE:
        spacing = float(np.spacing(np.float32(largest)))
        raise ValueError(f"could not write {shown_path(path)}: STL stores float32 vertices, which {largest:.0f} m from "
                         f"the origin lie on a {100 * spacing:.2g} cm grid; write .ply, .glb, .obj or .off")


def write_ply(mesh: trimesh.Trimesh, stream: BinaryIO, chunk: int = 1 << 18) -> None:
    """A binary little-endian PLY: double-precision vertices, 8-bit RGBA vertex (or face) colours
    when the mesh has them, and triangles as int32 indices. Written `chunk` rows at a time, so that a
    mesh of tens of millions of faces is not copied whole into a table and a byte string first."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces).reshape(-1, 3)
    kind = mesh.visual.kind if len(vertices) else None
    vertex_fields = [("x", "<f8"), ("y", "<f8"), ("z", "<f8")]
    face_fields = [("count", "u1"), ("indices", "<i4", (3,))]
    colors = ("red", "green", "blue", "alpha")
    vertex_rgba = face_rgba = None
    if kind == "vertex":
        vertex_fields += [(c, "u1") for c in colors]
        vertex_rgba = np.asarray(mesh.visual.vertex_colors)
    elif kind == "face":
        face_fields += [(c, "u1") for c in colors]
        face_rgba = np.asarray(mesh.visual.face_colors)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}"]
    header += ["property double x", "property double y", "property double z"]
    header += [f"property uchar {c}" for c in colors] if kind == "vertex" else []
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header += [f"property uchar {c}" for c in colors] if kind == "face" else []
    header += ["end_header"]
    stream.write(("\n".join(header) + "\n").encode("ascii"))
    for start in range(0, len(vertices), chunk):
        rows = np.zeros(len(vertices[start:start + chunk]), dtype=vertex_fields)
        for axis, name in enumerate("xyz"):
            rows[name] = vertices[start:start + chunk, axis]
        _put_colors(rows, vertex_rgba, start, chunk, colors)
        stream.write(rows.tobytes())
    for start in range(0, len(faces), chunk):
        rows = np.zeros(len(faces[start:start + chunk]), dtype=face_fields)
        rows["count"], rows["indices"] = 3, faces[start:start + chunk]
        _put_colors(rows, face_rgba, start, chunk, colors)
        stream.write(rows.tobytes())


def _put_colors(rows: np.ndarray, rgba: np.ndarray | None, start: int, chunk: int, names: tuple[str, ...]) -> None:
    if rgba is not None:
        for channel, name in enumerate(names):
            rows[name] = rgba[start:start + chunk, channel]


def _export_glb(mesh: trimesh.Trimesh, path: Path) -> None:
    """GLB positions are float32: far from the origin the mesh is stored relative to a whole-metre
    origin near its centre, which the file's node transform (JSON doubles) adds back on loading."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if not len(vertices) or np.abs(vertices).max() <= FLOAT32_SAFE_RANGE:
        mesh.export(path, file_type="glb")
        return
    origin = np.round((vertices.min(axis=0) + vertices.max(axis=0)) / 2.0)
    local = mesh.copy()
    local.apply_translation(-origin)
    scene = trimesh.Scene()
    scene.add_geometry(local, transform=trimesh.transformations.translation_matrix(origin))
    scene.export(path, file_type="glb")


def write_point_cloud(points: np.ndarray, path: str | Path, colors: np.ndarray | None = None) -> Path:
    """Write points (N, 3) with optional colours (N, 3) in [0, 1] to .ply/.pcd/.npy/.xyz.

    .npy stores an (N, 3) or (N, 6) float array; .xyz stores ``x y z [r g b]`` with 0-255 colours."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in POINT_CLOUD_WRITE_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported point cloud extension '{path.suffix}' "
            f"(supported: {', '.join(POINT_CLOUD_WRITE_EXTENSIONS)})"
        )
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{path}: points have shape {points.shape}, expected (N, 3)")
    if colors is not None:
        colors = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0)
        if colors.shape != points.shape:
            raise ValueError(f"{path}: colors have shape {colors.shape}, expected {points.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)

    if ext in (".ply", ".pcd"):
        import open3d as o3d

        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        if colors is not None:
            pcd.colors = o3d.utility.Vector3dVector(colors)
        if not o3d.io.write_point_cloud(str(path), pcd, write_ascii=False):
            raise OSError(f"{path}: Open3D failed to write the point cloud")
    elif ext == ".npy":
        np.save(path, points if colors is None else np.hstack([points, colors]))
    else:  # .xyz
        if colors is None:
            np.savetxt(path, points, fmt="%.6f")
        else:
            table = np.hstack([points, np.round(colors * 255.0)])
            np.savetxt(path, table, fmt=["%.6f"] * 3 + ["%d"] * 3)
    return path
