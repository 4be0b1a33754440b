"""Headless PNG previews of meshes and point clouds.

No display and no OpenGL, so previews work on bare servers and in CI: a mesh is ray cast, one ray per
pixel, with Open3D's `RaycastingScene` (a multi-threaded BVH on the CPU), and each hit is shaded from
the hit triangle's normals and colours with Lambert + ambient lighting on two-sided normals; points are
drawn as square splats through a z-buffer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont
from scipy.spatial import cKDTree

from .colors import height_colors
from .io import PointCloudData
from .meshing import simplified

# A preview renders a mesh of more faces simplified to this many: a panel has fewer pixels than that, and
# ray casting the whole mesh costs 150-200 B a face (`bench.bench_scaling mesh`; a building-size mesh has
# tens of millions).
PREVIEW_MAX_FACES = 2_000_000
PREVIEW_SIZE = (1024, 768)  # pixels of a preview (width, height)

# Camera directions as (azimuth, elevation) in degrees around the up axis; azimuth 0 looks from +x
# (or +z for y-up data), and the default "iso" view looks down from an elevated front-right corner.
VIEWS = {
    "iso": (-50.0, 35.0),
    "front": (-90.0, 0.0),
    "back": (90.0, 0.0),
    "left": (180.0, 0.0),
    "right": (0.0, 0.0),
    "top": (-90.0, 90.0),
}

BACKGROUND = np.array([1.0, 1.0, 1.0])
MESH_BASE_COLOR = np.array([0.80, 0.80, 0.82])
FOV_DEGREES = 30.0
CREASE_DEGREES = 40.0
AMBIENT, KEY_LIGHT, HEAD_LIGHT = 0.22, 0.58, 0.28
# Light from the viewer's upper left, in camera coordinates (x right, y down, z forward).
KEY_LIGHT_DIRECTION_CAMERA = np.array([-0.5, -0.8, -1.0]) / np.linalg.norm([-0.5, -0.8, -1.0])

Renderable = Union[trimesh.Trimesh, trimesh.PointCloud, PointCloudData, np.ndarray]
View = Union[str, tuple]


# --------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Camera:
    """Pinhole camera: ``rotation`` rows are the camera's right, down and forward axes in world."""

    position: np.ndarray
    rotation: np.ndarray
    focal_px: float
    width: int
    height: int

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates u, v (continuous, pixel centres at +0.5) and depth."""
        local = (points - self.position) @ self.rotation.T
        depth = local[:, 2]
        safe = np.where(depth > 1e-9, depth, 1e-9)
        u = self.focal_px * local[:, 0] / safe + 0.5 * self.width
        v = self.focal_px * local[:, 1] / safe + 0.5 * self.height
        return u, v, depth


def _world_frame(up: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two horizontal axes and the up axis (right-handed) for z-up (ROS) or y-up data."""
    eye = np.eye(3)
    if up == "z":
        return eye[0], eye[1], eye[2]
    if up == "y":
        return eye[2], eye[0], eye[1]
    raise ValueError(f"up must be 'z' or 'y', got {up!r}")


def _view_angles(view: View) -> tuple[float, float]:
    if isinstance(view, str):
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; use one of {sorted(VIEWS)} or (azimuth, elevation)")
        return VIEWS[view]
    azimuth, elevation = view
    return float(azimuth), float(elevation)


def camera_for_points(points: np.ndarray, size: tuple[int, int], view: View = "iso", up: str = "z",
                      fill: float = 0.92) -> Camera:
    """A camera looking at ``points`` (N, 3) from ``view``, aimed and placed so that their projection
    is centred and fills ``fill`` of the image in its tighter direction."""
    width, height = int(size[0]), int(size[1])
    points = np.asarray(points, dtype=np.float64)
    axis_a, axis_b, up_axis = _world_frame(up)
    azimuth, elevation = np.radians(_view_angles(view))
    to_camera = (np.cos(elevation) * (np.cos(azimuth) * axis_a + np.sin(azimuth) * axis_b)
                 + np.sin(elevation) * up_axis)
    forward = -to_camera / np.linalg.norm(to_camera)
    right = np.cross(forward, up_axis)
    if np.linalg.norm(right) < 1e-6:  # looking straight down/up: keep axis_a pointing right
        right = np.cross(forward, axis_b) if forward @ up_axis < 0 else -np.cross(forward, axis_b)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    focal = 0.5 * min(width, height) / np.tan(np.radians(FOV_DEGREES) / 2)
    extent = max(float(np.ptp(points, axis=0).max()), 1e-6)

    def fitting_distance(target: np.ndarray) -> float:
        # Every point must satisfy |x| f / (d + z) <= half the image size (times fill).
        local = (points - target) @ rotation.T
        needed_x = np.abs(local[:, 0]) * focal / (0.5 * width * fill) - local[:, 2]
        needed_y = np.abs(local[:, 1]) * focal / (0.5 * height * fill) - local[:, 2]
        in_front = -local[:, 2].min() + 0.02 * extent  # camera stays in front of everything
        return float(max(needed_x.max(), needed_y.max(), in_front))

    # Perspective makes the projection off-centre; re-aim a few times at its middle.
    target = 0.5 * (points.min(axis=0) + points.max(axis=0))
    for _ in range(3):
        distance = fitting_distance(target)
        local = (points - target) @ rotation.T
        depth = local[:, 2] + distance
        u, v = focal * local[:, 0] / depth, focal * local[:, 1] / depth
        shift_u, shift_v = 0.5 * (u.min() + u.max()), 0.5 * (v.min() + v.max())
        target = target + (shift_u * right + shift_v * down) * distance / focal
    distance = fitting_distance(target)
    return Camera(position=target - forward * distance, rotation=rotation, focal_px=float(focal),
                  width=width, height=height)


def _framing_points(points: np.ndarray, limit: int = 50_000) -> np.ndarray:
    """Finite points, thinned with a stride, for camera fitting (exactness is not needed)."""
    points = points[np.isfinite(points).all(axis=1)]
    return points[:: max(1, len(points) // limit)]


# --------------------------------------------------------------------------------------------
# Visibility: ray casting (meshes) and a depth buffer (points)
# --------------------------------------------------------------------------------------------

def _cast_rays(vertices: np.ndarray, faces: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: the face its ray hits first (-1 for background), the barycentrics and the depth of the hit."""
    import open3d as o3d  # imported here: most processes that import previews never render a mesh

    scene = o3d.t.geometry.RaycastingScene()
    # Relative to the camera, so that float32 stays exact for maps far from their origin.
    scene.add_triangles(o3d.core.Tensor((vertices - camera.position).astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    hits = scene.cast_rays(o3d.core.Tensor(_pixel_rays(camera)))
    hit = np.isfinite(hits["t_hit"].numpy())
    face_buffer = np.where(hit, hits["primitive_ids"].numpy().astype(np.int64), -1)
    # The hit point is (1 - u - v) * corner 0 + u * corner 1 + v * corner 2.
    u, v = hits["primitive_uvs"].numpy().T
    bary_buffer = np.where(hit[:, None], np.stack([1.0 - u - v, u, v], axis=1), 0.0).astype(np.float32)
    return face_buffer, bary_buffer, hits["t_hit"].numpy()  # the rays' z is 1: t is the depth


def _pixel_rays(camera: Camera) -> np.ndarray:
    """(H * W, 6) float32 rays through the pixel centres, row by row, from the camera at the origin."""
    x = (np.arange(camera.width) + 0.5 - 0.5 * camera.width) / camera.focal_px
    y = (np.arange(camera.height) + 0.5 - 0.5 * camera.height) / camera.focal_px
    local = np.stack([*np.meshgrid(x, y), np.ones((camera.height, camera.width))], axis=-1).reshape(-1, 3)
    directions = local @ camera.rotation  # camera frame -> world (the rotation's rows are the camera axes)
    return np.hstack([np.zeros_like(directions), directions]).astype(np.float32)


class _DepthBuffer:
    """Keeps the nearest depth per pixel over successive batches of fragments."""

    def __init__(self, n_pixels: int):
        self.depth = np.full(n_pixels, np.inf)

    def nearest(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Indices of the fragments that are now front-most at their (then unique) pixels."""
        if pixels.size == 0:
            return pixels
        order = np.lexsort((depth, pixels))
        sorted_pixels = pixels[order]
        first_of_pixel = np.empty(order.size, dtype=bool)
        first_of_pixel[0] = True
        np.not_equal(sorted_pixels[1:], sorted_pixels[:-1], out=first_of_pixel[1:])
        winners = order[first_of_pixel]
        winners = winners[depth[winners] < self.depth[pixels[winners]]]
        self.depth[pixels[winners]] = depth[winners]
        return winners


# --------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------

def _lighting(normals: np.ndarray, view_dirs: np.ndarray, camera: Camera) -> np.ndarray:
    """Ambient + key light + head light intensity, normals flipped to face the viewer."""
    facing = np.einsum("ij,ij->i", normals, view_dirs)
    normals = np.where(facing[:, None] < 0, -normals, normals)
    key = camera.rotation.T @ KEY_LIGHT_DIRECTION_CAMERA
    diffuse = np.clip(normals @ key, 0.0, None)
    head = np.abs(facing)
    return np.clip(AMBIENT + KEY_LIGHT * diffuse + HEAD_LIGHT * head, 0.0, 1.0)


def _mesh_colors(mesh: trimesh.Trimesh) -> tuple[str, np.ndarray | None]:
    """('vertex' | 'face' | 'none', colours in [0, 1]) from the mesh's visuals."""
    kind = getattr(mesh.visual, "kind", None)
    if kind == "vertex":
        return "vertex", np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    if kind == "face":
        return "face", np.asarray(mesh.visual.face_colors)[:, :3] / 255.0
    if kind == "texture":
        try:
            return "vertex", np.asarray(mesh.visual.to_color().vertex_colors)[:, :3] / 255.0
        except Exception:  # textures without UVs or images: fall back to the base colour
            return "none", None
    return "none", None


def _shade_mesh(mesh: trimesh.Trimesh, camera: Camera, smooth: bool, color_by_height: bool,
                up: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB image (H, W, 3) in [0, 1] and the depth per pixel (H, W) (inf where no face)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    finite_faces = np.isfinite(vertices).all(axis=1)[faces].all(axis=1)
    face_buffer, bary_buffer, depth = _cast_rays(vertices, faces[finite_faces], camera)
    face_of_pixel = np.flatnonzero(finite_faces)

    covered = face_buffer >= 0
    face_index = face_of_pixel[face_buffer[covered]]
    bary = bary_buffer[covered].astype(np.float64)
    corners = faces[face_index]
    positions = np.einsum("ni,nij->nj", bary, vertices[corners])
    normals = _pixel_normals(vertices, faces, face_index, bary, smooth)
    view_dirs = camera.position - positions
    view_dirs /= np.maximum(np.linalg.norm(view_dirs, axis=1, keepdims=True), 1e-12)

    color_kind, colors = _mesh_colors(mesh)
    if color_kind == "vertex":
        base = np.einsum("ni,nij->nj", bary, colors[corners])
    elif color_kind == "face":
        base = colors[face_index]
    elif color_by_height:
        base = height_colors(positions @ _world_frame(up)[2])
    else:
        base = np.broadcast_to(MESH_BASE_COLOR, positions.shape)

    image = np.broadcast_to(BACKGROUND, (camera.height * camera.width, 3)).copy()
    image[covered] = base * _lighting(normals, view_dirs, camera)[:, None]
    return image.reshape(camera.height, camera.width, 3), depth.reshape(camera.height, camera.width)


MARK_COLOR = np.array([0.9, 0.05, 0.05])


def _mark_points(image: np.ndarray, depth: np.ndarray, points: np.ndarray, camera: Camera,
                 tolerance: float = 0.03) -> np.ndarray:
    """The image with `points` painted red (2 x 2 px) where the mesh does not hide them: nearer than its
    surface plus `tolerance` metres, or where it has none."""
    u, v, point_depth = camera.project(np.asarray(points, dtype=np.float64))
    x, y = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        inside = (point_depth > 0) & (x + dx >= 0) & (x + dx < camera.width) & (y + dy >= 0) & (y + dy < camera.height)
        px, py = x[inside] + dx, y[inside] + dy
        shown = point_depth[inside] <= depth[py, px] + tolerance
        image[py[shown], px[shown]] = MARK_COLOR
    return image


def _pixel_normals(vertices: np.ndarray, faces: np.ndarray, face_index: np.ndarray, bary: np.ndarray,
                   smooth: bool) -> np.ndarray:
    """Unit normals of the surface seen at each covered pixel (face `face_index`, barycentrics `bary`)."""
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    face_normals = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-12)
    if not smooth:
        return face_normals[face_index]
    # Area-weighted vertex normals: the sum of the cross products of the faces around each vertex.
    vertex_normals = np.stack([np.bincount(faces.ravel(), np.repeat(cross[:, axis], 3), len(vertices))
                               for axis in range(3)], axis=1)
    vertex_normals /= np.maximum(np.linalg.norm(vertex_normals, axis=1, keepdims=True), 1e-12)
    # Vertex normals averaged across a crease (box edges) would shade flat faces as curved;
    # corners whose vertex normal leaves the face normal by > CREASE_DEGREES use the latter.
    seen = face_normals[face_index]
    corner_normals = vertex_normals[faces[face_index]]
    creased = np.einsum("nij,nj->ni", corner_normals, seen) < np.cos(np.radians(CREASE_DEGREES))
    corner_normals = np.where(creased[..., None], seen[:, None, :], corner_normals)
    normals = np.einsum("ni,nij->nj", bary, corner_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _auto_point_size(points: np.ndarray, depth: np.ndarray, camera: Camera) -> int:
    """Splat size (pixels) that covers the typical point spacing at the typical depth, so the
    points of a surface tile it without holes."""
    if len(points) < 2:
        return 3
    rng = np.random.default_rng(0)
    subset = points[rng.choice(len(points), min(len(points), 50_000), replace=False)]
    distances, _ = cKDTree(subset).query(subset, k=2)
    # Thinning a surface sample by a factor m spreads its points by about sqrt(m).
    spacing = np.median(distances[:, 1]) * np.sqrt(len(subset) / len(points))
    size = 2.5 * camera.focal_px * spacing / max(float(np.median(depth)), 1e-9)
    return int(np.clip(np.ceil(size), 1, 8))


def _shade_points(points: np.ndarray, colors: np.ndarray | None, camera: Camera, point_size: int | None,
                  up: str) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(points).all(axis=1)
    points = points[finite]
    colors = None if colors is None else np.asarray(colors, dtype=np.float64)[finite]
    u, v, depth = camera.project(points)
    in_front = depth > 1e-9
    points, u, v, depth = points[in_front], u[in_front], v[in_front], depth[in_front]
    colors = height_colors(points @ _world_frame(up)[2]) if colors is None else colors[in_front]
    size = point_size or _auto_point_size(points, depth, camera)

    # Slightly darker with distance so overlapping layers stay readable without normals.
    if depth.size:
        near, far = depth.min(), depth.max()
        colors = colors * (1.0 - 0.35 * (depth - near) / max(far - near, 1e-9))[:, None]
    width, height = camera.width, camera.height
    depth_buffer = _DepthBuffer(width * height)
    image = np.broadcast_to(BACKGROUND, (height * width, 3)).copy()
    covered = np.zeros(height * width, dtype=bool)
    base_x = np.floor(u - 0.5 * (size - 1)).astype(np.int64)
    base_y = np.floor(v - 0.5 * (size - 1)).astype(np.int64)
    for dx in range(size):
        for dy in range(size):
            x, y = base_x + dx, base_y + dy
            visible = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            index = np.flatnonzero(visible)
            pixels = y[index] * width + x[index]
            winners = depth_buffer.nearest(pixels, depth[index])
            image[pixels[winners]] = colors[index[winners]]
            covered[pixels[winners]] = True
    return image.reshape(height, width, 3), covered.reshape(height, width)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def _as_renderable(item: Renderable) -> tuple[str, np.ndarray, object]:
    """('mesh', vertices, mesh) or ('points', points, colours)."""
    if isinstance(item, trimesh.Trimesh):
        item = simplified(item, PREVIEW_MAX_FACES)
        return "mesh", np.asarray(item.vertices, dtype=np.float64), item
    if isinstance(item, trimesh.PointCloud):
        colors = item.colors[:, :3] / 255.0 if len(item.colors) else None
        return "points", np.asarray(item.vertices, dtype=np.float64), colors
    if isinstance(item, PointCloudData):
        return "points", np.asarray(item.points, dtype=np.float64), item.colors
    array = np.asarray(item, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (3, 6):
        raise ValueError(f"points must have shape (N, 3) or (N, 6), got {array.shape}")
    return "points", array[:, :3], (array[:, 3:6] if array.shape[1] == 6 else None)


def _referenced_vertices(mesh: trimesh.Trimesh) -> np.ndarray:
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[np.asarray(mesh.faces).ravel()] = True
    return np.asarray(mesh.vertices, dtype=np.float64)[used]


def _font(size_px: int):
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _title_band_height(height: int) -> int:
    return max(18, int(round(0.06 * height)))


def _draw_title(image: Image.Image, title: str, band_height: int) -> None:
    draw = ImageDraw.Draw(image)
    font = _font(int(band_height * 0.65))
    left, top, right, bottom = draw.textbbox((0, 0), title, font=font)
    x = max(4, (image.width - (right - left)) // 2)
    y = (band_height - (bottom - top)) // 2 - top
    draw.text((x, y), title, fill=(20, 20, 20), font=font)


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), mode="RGB")


def _render_item(kind: str, data: np.ndarray, extra, camera: Camera, smooth: bool, color_by_height: bool,
                 point_size: int | None, up: str, marked: np.ndarray | None = None) -> np.ndarray:
    if kind == "mesh":
        image, depth = _shade_mesh(extra, camera, smooth, color_by_height, up)
        return image if marked is None else _mark_points(image, depth, marked, camera)
    return _shade_points(data, extra, camera, point_size, up)[0]


def _render_panel(item: Renderable, size: tuple[int, int], title: str | None, framing: np.ndarray,
                  view: View, up: str, smooth: bool, color_by_height: bool, point_size: int | None,
                  supersample: int, marked: np.ndarray | None = None) -> Image.Image:
    """One image of ``size`` with an optional title band above the view."""
    width, height = int(size[0]), int(size[1])
    band = _title_band_height(height) if title else 0
    kind, data, extra = _as_renderable(item)
    scale = max(1, int(supersample))
    camera = camera_for_points(framing, (width * scale, (height - band) * scale), view, up)
    if kind == "points" and point_size is not None:
        point_size = point_size * scale
    rendered = _to_pil(_render_item(kind, data, extra, camera, smooth, color_by_height, point_size, up, marked))
    if scale > 1:  # supersampling: average scale x scale samples per output pixel
        rendered = rendered.resize((width, height - band), Image.Resampling.BOX)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(rendered, (0, band))
    if title:
        _draw_title(canvas, title, band)
    return canvas


def render_mesh_png(mesh: trimesh.Trimesh, path: str | Path, size: tuple[int, int] = PREVIEW_SIZE,
                    view: View = "iso", title: str | None = None, up: str = "z", smooth: bool = True,
                    color_by_height: bool = False, supersample: int = 1, marked: np.ndarray | None = None) -> Path:
    """Render a mesh to a PNG of ``size`` (width, height) pixels.

    ``view``: one of VIEWS or (azimuth, elevation) degrees; ``up``: 'z' (ROS maps) or 'y'.
    Vertex/face colours are used when present, else light grey (or height colours).
    ``smooth`` interpolates vertex normals (except across creases); ``supersample`` > 1
    anti-aliases (cost grows with its square). `marked` (points (M, 3)) are painted red where the mesh
    does not hide them: the observed surface a mesh missed shows as red in its holes. Raises ValueError for a
    mesh without faces or finite vertices."""
    if len(mesh.faces) == 0:
        raise ValueError("cannot render an empty mesh (it has no faces)")
    framing = _framing_points(_referenced_vertices(mesh))
    if len(framing) == 0:
        raise ValueError("cannot render a mesh without finite vertices")
    image = _render_panel(mesh, size, title, framing, view, up, smooth, color_by_height, None, supersample, marked)
    return _save(image, path)


def render_side_by_side(panels: Sequence[tuple[str, Renderable]], path: str | Path,
                        panel_size: tuple[int, int] = (640, 480), view: View = "iso", up: str = "z",
                        columns: int | None = None, smooth: bool = True, point_size: int | None = None,
                        supersample: int = 1) -> Path:
    """Compose titled panels (meshes or point clouds) into one PNG grid, all seen by the same
    camera (fitted to all panels together) so they are directly comparable. An empty mesh gets a
    panel marked '(empty)' instead of failing the whole figure."""
    if not panels:
        raise ValueError("render_side_by_side needs at least one panel")
    items = []
    for title, item in panels:
        kind, data, extra = _as_renderable(item)
        empty = kind == "mesh" and len(extra.faces) == 0
        framing = _framing_points(_referenced_vertices(extra) if kind == "mesh" and not empty else data)
        # the mesh as it will be rendered (simplified when large), so that it is simplified only once
        items.append((title, extra if kind == "mesh" else item, empty or len(framing) == 0, framing))
    framings = [framing for _, _, empty, framing in items if not empty]
    if not framings:
        raise ValueError("none of the panels has finite geometry to render")
    shared_framing = _framing_points(np.concatenate(framings))

    columns = columns or len(items)
    rows = int(np.ceil(len(items) / columns))
    width, height = int(panel_size[0]), int(panel_size[1])
    gap = 4
    sheet = Image.new("RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap),
                      (200, 200, 200))
    for index, (title, item, empty, _) in enumerate(items):
        if empty:
            panel = Image.new("RGB", (width, height), (255, 255, 255))
            _draw_title(panel, f"{title} (empty)", _title_band_height(height))
        else:
            panel = _render_panel(item, (width, height), title, shared_framing, view, up, smooth, False,
                                  point_size, supersample)
        row, column = divmod(index, columns)
        sheet.paste(panel, (column * (width + gap), row * (height + gap)))
    return _save(sheet, path)


def _save(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
