"""Headless previews: right size, something drawn, no holes, clear errors."""
import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy import ndimage

from sa_convonet_ros.io import PointCloudData
from sa_convonet_ros.preview import render_mesh_png, render_side_by_side


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _foreground(image):
    return ~(image == 255).all(axis=2)


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4)


def test_mesh_png_has_size_and_shaded_surface_without_holes(tmp_path, sphere):
    path = render_mesh_png(sphere, tmp_path / "out" / "sphere.png", size=(320, 240), view="front")
    image = _pixels(path)
    assert image.shape == (240, 320, 3)
    covered = _foreground(image)
    assert 0.15 < covered.mean() < 0.9
    assert (ndimage.binary_fill_holes(covered) & ~covered).sum() == 0  # a closed sphere leaves no gaps
    shades = image[covered].mean(axis=1)
    assert shades.max() - shades.min() > 60  # lit and unlit sides differ


@pytest.mark.parametrize("view", ["iso", "top", "left", (30.0, 60.0)])
def test_views_and_title(tmp_path, sphere, view):
    path = render_mesh_png(sphere, tmp_path / "v.png", size=(200, 150), view=view, title="sphere")
    image = _pixels(path)
    assert image.shape == (150, 200, 3)
    assert _foreground(image[20:]).mean() > 0.1
    assert _foreground(image[:8]).any()  # title text in the band at the top


def test_vertex_colors_are_used(tmp_path, sphere):
    mesh = sphere.copy()
    mesh.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(mesh.vertices), 1))
    image = _pixels(render_mesh_png(mesh, tmp_path / "red.png", size=(160, 120)))
    surface = image[_foreground(image)].astype(int)
    assert (surface[:, 0] > surface[:, 1] + 30).mean() > 0.9


def test_y_up_and_supersampling(tmp_path, sphere):
    path = render_mesh_png(sphere, tmp_path / "y.png", size=(160, 120), up="y", supersample=2, smooth=False)
    assert _pixels(path).shape == (120, 160, 3)


def test_empty_mesh_raises(tmp_path):
    with pytest.raises(ValueError, match="empty mesh"):
        render_mesh_png(trimesh.Trimesh(), tmp_path / "empty.png")


def test_points_panel(tmp_path, sphere):
    points = sphere.sample(5000)
    points[0] = np.nan  # invalid returns are skipped, not fatal
    colors = np.tile([0.0, 0.0, 1.0], (len(points), 1))
    path = render_side_by_side([("points", PointCloudData(points, colors))], tmp_path / "p.png", panel_size=(200, 160))
    image = _pixels(path)
    assert image.shape == (160, 200, 3)
    view = image[20:]  # below the title
    drawn = view[_foreground(view)].astype(int)
    assert len(drawn) > 1000 and (drawn[:, 2] > drawn[:, 0]).all()
    with pytest.raises(ValueError):
        render_side_by_side([("bad", np.zeros((4, 2)))], tmp_path / "bad.png")


def test_side_by_side_uses_one_camera(tmp_path, sphere):
    small = sphere.copy()
    small.apply_scale(0.5)
    path = render_side_by_side([("input", sphere.sample(3000)), ("big", sphere), ("small", small),
                                ("failed", trimesh.Trimesh())], tmp_path / "grid.png", panel_size=(160, 120),
                               columns=2)
    image = _pixels(path)
    assert image.shape == (2 * 120 + 4, 2 * 160 + 4, 3)
    big, small_panel = image[:120, 164:], image[124:, :160]  # row-major: input, big / small, failed
    # Same camera: the half-size sphere covers about a quarter of the pixels.
    ratio = _foreground(small_panel[20:]).sum() / _foreground(big[20:]).sum()
    assert 0.15 < ratio < 0.35


def test_a_mesh_over_the_preview_budget_renders_simplified_to_nearly_the_same_image(tmp_path, monkeypatch):
    from sa_convonet_ros import preview

    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20,480 faces
    sphere.visual.vertex_colors = np.where(sphere.vertices[:, 2:] > 0, [200, 60, 60, 255], [60, 60, 200, 255])
    full = np.asarray(Image.open(render_mesh_png(sphere, tmp_path / "full.png", size=(160, 120))), dtype=float)
    monkeypatch.setattr(preview, "PREVIEW_MAX_FACES", 3000)
    simplified = np.asarray(Image.open(render_mesh_png(sphere, tmp_path / "simple.png", size=(160, 120))),
                            dtype=float)
    background = [np.all(image == image[0, 0], axis=2) for image in (full, simplified)]
    assert np.mean(background[0] != background[1]) < 0.02  # the same silhouette
    difference = np.mean(np.abs(full - simplified))
    assert 0 < difference < 4.0  # of 255: simplified, yet the same sphere, colours and shading


def test_marked_points_show_red_through_a_hole_and_not_behind_the_surface(tmp_path):
    """The missed surface of a mesh painted over it: visible in the hole, hidden where the mesh covers it."""
    from sa_convonet_ros.preview import MARK_COLOR

    box = trimesh.creation.box(extents=(2.0, 2.0, 0.02))
    for _ in range(4):
        box = box.subdivide()
    centres = box.triangles_center
    holed = box.submesh([np.flatnonzero(~((np.abs(centres[:, 0]) < 0.3) & (np.abs(centres[:, 1]) < 0.3)))],
                        append=True)
    rng = np.random.default_rng(0)
    in_hole = np.c_[rng.uniform(-0.25, 0.25, (2000, 2)), np.zeros(2000)]
    below = np.c_[rng.uniform(0.5, 0.9, (2000, 2)), np.full(2000, -0.3)]  # under the covered part
    path = render_mesh_png(holed, tmp_path / "holes.png", size=(200, 150), view="top",
                           marked=np.vstack([in_hole, below]))
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = np.all(np.abs(image - np.round(MARK_COLOR * 255)) <= 2, axis=2)
    rows, cols = np.nonzero(red)
    assert red.sum() > 100
    assert np.ptp(rows) < 0.3 * image.shape[0] and np.ptp(cols) < 0.3 * image.shape[1]  # only the hole
