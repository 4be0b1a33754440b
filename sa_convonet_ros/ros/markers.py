"""Triangle meshes as messages: RViz markers (stock RViz, no plugin) and shape_msgs/Mesh.

A TRIANGLE_LIST marker lists every corner of its triangles as a geometry_msgs/Point (and a std_msgs/ColorRGBA):
millions of Python objects for a mesh of a million faces, slower to build and to serialize than the
reconstruction's own meshing. `NumpyMarkerArray` keeps the corners as arrays and writes them to the wire
directly (`serialized`); the message objects are built only where a caller asks for them.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from scipy.spatial import cKDTree
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from sa_convonet_ros.colors import COLOR_MODES, height_colors
from sa_convonet_ros.ros.serialized import CdrWriter

# Confidence ramp, from "filled in by the prior" (0) to "observed" (1): red, yellow, green.
_CONFIDENCE_ANCHORS = np.array([[0.85, 0.12, 0.12], [0.95, 0.80, 0.15], [0.15, 0.80, 0.30]])
UNIFORM_GREY = (0.7, 0.7, 0.75)  # the colour of color_mode 'uniform'
# A vertex within one grid cell of an observed point is observed; at the trim distance (the farthest the run
# keeps a face from the data) or, with the trim off, at this many cells, it is the prior's alone.
CONFIDENCE_FALLOFF_VOXELS = 4.0


def mesh_to_markers(
    vertices,
    faces,
    frame_id: str,
    *,
    colors=None,
    confidence=None,
    color_mode: str = "rgb",
    uniform_color: Sequence[float] = (*UNIFORM_GREY, 1.0),
    max_triangles_per_marker: int = 200_000,
    namespace: str = "reconstruction",
    lifetime: float = 0.0,
) -> MarkerArray:
    """A MarkerArray that replaces whatever this display showed with the given mesh.

    The first marker is a DELETEALL; then TRIANGLE_LIST markers with ids 0..k-1, each with
    at most `max_triangles_per_marker` triangles. An empty mesh gives only the DELETEALL,
    since RViz rejects a TRIANGLE_LIST without points.

    color_mode: 'rgb' uses the per-vertex `colors` (falls back to 'height' when None),
    'height' colours by z, 'confidence' by the per-vertex `confidence` in [0, 1] (green where
    observed, through yellow, to red where only the prior put the surface; see `vertex_confidence`),
    'uniform' uses `uniform_color` (r, g, b, a) as the marker colour
    with no per-point colours, which lets RViz shade the surface (it switches lighting off
    for meshes with per-point colours).
    """
    vertices, faces = _check_mesh(vertices, faces)
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    if max_triangles_per_marker < 1:
        raise ValueError("max_triangles_per_marker must be at least 1")
    if color_mode == "confidence" and confidence is None:
        raise ValueError("color_mode 'confidence' needs the per-vertex confidence")

    array = NumpyMarkerArray([delete_all(frame_id, namespace)])
    rgba = vertex_rgba8(vertex_rgb(color_mode, vertices, colors, confidence))
    array.add_triangles(vertices, faces, rgba, frame_id, namespace, max_triangles_per_marker, uniform_color, lifetime)
    return array.message()


class NumpyMarkerArray:
    """A MarkerArray whose TRIANGLE_LIST markers keep their corners (and the corners' colours) as arrays:
    `serialized()` is the message on the wire, for `Publisher.publish`; `markers` builds the message objects."""

    def __init__(self, markers: Iterable[Marker] = ()) -> None:
        # each marker without its points and colours, and those as arrays: "points" [3 k, 3] float64 and
        # "colors" [3 k, 4] float32 (none for a marker without them)
        self.entries: list[tuple[Marker, dict[str, np.ndarray]]] = [(marker, {}) for marker in markers]

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, marker: Marker, **arrays: np.ndarray) -> None:
        self.entries.append((marker, arrays))

    def add_triangles(self, vertices: np.ndarray, faces: np.ndarray, rgba: np.ndarray | None, frame_id: str,
                      namespace: str, max_triangles_per_marker: int,
                      uniform_color: Sequence[float] = (*UNIFORM_GREY, 1.0), lifetime: float = 0.0) -> int:
        """TRIANGLE_LIST markers of the faces, ids 0..k-1 in `namespace`, at most `max_triangles_per_marker`
        triangles each (none for no faces: RViz rejects an empty list); `rgba`: per-vertex colours, or None
        for `uniform_color`. Returns how many markers."""
        count = 0
        for marker_id, start in enumerate(range(0, len(faces), max_triangles_per_marker)):
            corners = faces[start:start + max_triangles_per_marker].reshape(-1)
            marker = _triangle_marker(frame_id, namespace, marker_id, lifetime)
            if rgba is None:
                marker.color = _color(uniform_color)
                self.append(marker, points=vertices[corners])
            else:
                self.append(marker, points=vertices[corners], colors=rgba[corners])
            count += 1
        return count

    @property
    def markers(self) -> list[Marker]:
        """The markers as message objects (new ones at each call)."""
        built = []
        for head, arrays in self.entries:
            marker = Marker()
            for name in Marker.get_fields_and_field_types():
                setattr(marker, name, getattr(head, name))
            if "points" in arrays:
                marker.points = [Point(x=x, y=y, z=z) for x, y, z in arrays["points"].tolist()]
            if "colors" in arrays:
                marker.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in arrays["colors"].tolist()]
            built.append(marker)
        return built

    def message(self) -> MarkerArray:
        return MarkerArray(markers=self.markers)

    def serialized(self) -> bytes:
        """visualization_msgs/MarkerArray in CDR, the corners written from their arrays."""
        writer = CdrWriter()
        writer.uint32(len(self.entries))
        for head, arrays in self.entries:
            writer.message(head, arrays)
        return writer.bytes()


def delete_all(frame_id: str, namespace: str = "reconstruction") -> Marker:
    """The marker that clears every marker of the display (RViz ignores its namespace)."""
    marker = Marker(action=Marker.DELETEALL, ns=namespace, id=0)
    marker.header.frame_id = frame_id
    return marker


def deleted(frame_id: str, namespace: str, marker_id: int) -> Marker:
    marker = Marker(action=Marker.DELETE, ns=namespace, id=marker_id)
    marker.header.frame_id = frame_id
    return marker


def assemble(arrays, current: dict | None = None) -> dict:
    """What a display shows after the MarkerArrays, in order: markers by (ns, id), DELETEALL and DELETE
    honoured, a marker of the same ns and id replaced."""
    shown = {} if current is None else current
    for array in arrays:
        for marker in array.markers:
            if marker.action == Marker.DELETEALL:
                shown.clear()
            elif marker.action == Marker.DELETE:
                shown.pop((marker.ns, marker.id), None)
            else:
                shown[(marker.ns, marker.id)] = marker
    return shown


def vertex_confidence(vertices, points, voxel_size: float, trim_distance: float | None = None) -> np.ndarray:
    """How sure the surface is at each vertex, in [0, 1], from its distance to the nearest observed point, on
    the scale of what the run kept (its grid and trim as run: they grow on sparse maps): 1 within one grid
    cell (the data put the surface there), falling linearly to 0 at the trim distance, or with the trim off
    at CONFIDENCE_FALLOFF_VOXELS cells (the network's prior filled it in)."""
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if len(vertices) == 0:
        return np.zeros(0)
    distance = cKDTree(np.asarray(points, dtype=np.float64)).query(vertices, workers=-1)[0]
    near = voxel_size
    trimmed = trim_distance is not None and np.isfinite(trim_distance) and trim_distance > 0
    far = max(trim_distance, 1.5 * voxel_size) if trimmed else CONFIDENCE_FALLOFF_VOXELS * voxel_size
    return np.clip((far - distance) / (far - near), 0.0, 1.0)


def confidence_colors(confidence) -> np.ndarray:
    """(N, 3) RGB in [0, 1] for confidences in [0, 1]: red (prior only), yellow, green (observed)."""
    t = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64).reshape(-1), nan=0.0), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_CONFIDENCE_ANCHORS))
    return np.stack([np.interp(t, stops, _CONFIDENCE_ANCHORS[:, c]) for c in range(3)], axis=1)


def mesh_to_shape_msg(vertices, faces) -> Mesh:
    """shape_msgs/Mesh: indexed triangles, vertices as Points."""
    vertices, faces = _check_mesh(vertices, faces)
    mesh = Mesh()
    mesh.vertices = _points(vertices)
    # Iterating uint32 rows is quicker than lists: the setter copies into a uint32 array anyway.
    mesh.triangles = [MeshTriangle(vertex_indices=tri) for tri in faces.astype(np.uint32)]
    return mesh


def _check_mesh(vertices, faces):
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if faces.size == 0:
        return vertices, np.empty((0, 3), dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces index vertices outside [0, {len(vertices)})")
    return vertices, faces.astype(np.int64, copy=False)


def _check_colors(colors, num_vertices: int) -> np.ndarray:
    colors = np.asarray(colors, dtype=np.float64)
    if colors.ndim != 2 or colors.shape[1] not in (3, 4) or colors.shape[0] != num_vertices:
        raise ValueError(
            f"colors must have shape ({num_vertices}, 3), one RGB row per vertex; "
            f"got {colors.shape}"
        )
    return colors[:, :3]


def vertex_rgb(color_mode: str, vertices: np.ndarray, colors=None, confidence=None) -> np.ndarray | None:
    """(V, 3) RGB in [0, 1] per vertex for the colour mode, or None for 'uniform'."""
    if color_mode == "rgb" and colors is not None:
        return _check_colors(colors, len(vertices))
    if color_mode in ("rgb", "height"):  # rgb without colours falls back to height
        return height_colors(np.asarray(vertices)[:, 2])
    if color_mode == "confidence":
        return confidence_colors(_check_values(confidence, len(vertices)))
    return None


def _check_values(values, num_vertices: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (num_vertices,):
        raise ValueError(f"confidence must have shape ({num_vertices},), one value per vertex; got {values.shape}")
    return values


def _triangle_marker(frame_id: str, namespace: str, marker_id: int, lifetime: float) -> Marker:
    marker = Marker(type=Marker.TRIANGLE_LIST, action=Marker.ADD, ns=namespace, id=marker_id)
    # A zero stamp tells RViz to use the latest transform of the frame.
    marker.header.frame_id = frame_id
    marker.pose.orientation.w = 1.0
    marker.scale.x = marker.scale.y = marker.scale.z = 1.0
    # RViz multiplies per-point alpha by this alpha, so keep it opaque white.
    marker.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    sec, nanosec = divmod(int(round(max(float(lifetime), 0.0) * 1e9)), 10**9)
    marker.lifetime = Duration(sec=sec, nanosec=nanosec)
    return marker


def _points(vertices: np.ndarray) -> list:
    return [Point(x=x, y=y, z=z) for x, y, z in vertices.tolist()]


def _color(rgba: Sequence[float]) -> ColorRGBA:
    r, g, b, *rest = (float(v) for v in rgba)
    return ColorRGBA(r=r, g=g, b=b, a=rest[0] if rest else 1.0)


def vertex_rgba8(rgb: np.ndarray | None) -> np.ndarray | None:
    """(V, 4) float32 RGBA per vertex, opaque, each channel rounded to 8 bits (what RViz renders, and what
    lets a marker block's digest ignore differences it cannot show); None stays None."""
    if rgb is None:
        return None
    channels = np.clip(np.rint(np.asarray(rgb, dtype=np.float64) * 255.0), 0, 255)
    rgba = np.ones((len(channels), 4), dtype=np.float32)
    rgba[:, :3] = channels / 255.0
    return rgba
