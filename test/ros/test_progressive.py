"""Progressive results: the preview, the optimised slabs replacing it on the marker topic, and the way back."""
import threading

import numpy as np
import pytest
import trimesh

from sa_convonet_ros.errors import ReconstructionCancelled
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.ros import progressive
from sa_convonet_ros.ros.marker_blocks import MarkerBlocks
from sa_convonet_ros.ros.markers import assemble
from sa_convonet_ros.ros.progressive import InterimMarkers, shown_mesh
from sa_convonet_ros.ros.settings import NodeOptions, Settings

from helpers import small_config


def corridor(n=40_000, length=6.0):
    """Two walls 1 m apart along y: its mesh is marched in many slabs along y."""
    rng = np.random.default_rng(0)
    along, up = rng.uniform(0, length, n), rng.uniform(0, 1.5, n)
    return np.c_[np.where(np.arange(n) % 2, 0.1, 1.1) + rng.normal(0, 0.003, n), along, up]


def shown_triangles(arrays) -> np.ndarray:
    """The triangles a display shows after `arrays`, rounded to 0.1 mm, one row each, sorted."""
    points = [(p.x, p.y, p.z) for marker in assemble(arrays).values() for p in marker.points]
    return rows(np.array(points).reshape(-1, 3, 3))


def rows(triangles: np.ndarray) -> np.ndarray:
    return np.unique(np.round(triangles, 4).reshape(len(triangles), 9), axis=0) if len(triangles) else np.zeros((0, 9))


def test_the_preview_then_the_optimised_slabs_then_what_was_shown_before(tiny_model, monkeypatch):
    monkeypatch.setattr(progressive, 'INTERIM_PERIOD', 0.0)
    monkeypatch.setattr(progressive, 'INTERIM_COST_FACTOR', 0.0)
    walls = corridor()
    settings = Settings(small_config(), 'cpu', NodeOptions(color_mode='uniform', progressive=True))
    blocks, published = MarkerBlocks(), []
    earlier = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    first = blocks.update(earlier.vertices, earlier.faces, None, 'map', 0.4, 1000)
    blocks.commit(first)
    published.append(first.markers)
    interim = InterimMarkers(settings, 'map', blocks, published.append, shown_mesh(earlier, None, 'map', 0.8))
    stages = []
    interim.preview(walls, None, tiny_model, None, threading.Event(), None,
                    lambda stage, done, total: stages.append(stage))
    assert stages[-1] == 'preview' and interim.updates == 1
    preview = shown_triangles(published)
    assert preview[:, 1::3].max() > 5.0 and preview[:, 2::3].min() > -0.2  # the 6 m walls, not the box

    edges = []

    def on_partial(part):
        interim.on_partial(part)
        if not part.complete:
            edges.append((part.final_below, shown_triangles(published)))

    result = reconstruct(walls, settings.config, model=tiny_model, partial=on_partial)
    assert interim.updates == 1 + len(edges) > 3
    final = np.asarray(result.mesh.vertices)[np.asarray(result.mesh.faces)]
    for edge, shown in edges:
        done = rows(final[final[:, :, 1].mean(axis=1) < edge - 1e-9])
        ahead = shown[np.round(shown[:, 1::3].mean(axis=1), 4) >= edge - 1e-4]  # the preview's, still ahead
        assert len(np.unique(np.vstack([shown, done]), axis=0)) == len(shown)  # every final face below is shown
        assert len(shown) == len(done) + len(ahead)
    interim.restore()
    np.testing.assert_array_equal(shown_triangles(published), rows(earlier.vertices[earlier.faces]))


def test_nothing_to_restore_before_anything_was_shown_and_an_empty_topic_stays_empty(tiny_model):
    settings = Settings(small_config(), 'cpu', NodeOptions(progressive=True))
    blocks, published = MarkerBlocks(), []
    interim = InterimMarkers(settings, 'map', blocks, published.append, None)
    interim.restore()
    assert published == []
    interim.preview(corridor(), None, tiny_model, None, threading.Event(), None, lambda *args: None)
    assert len(shown_triangles(published)) > 0
    interim.restore()
    assert len(shown_triangles(published)) == 0


def test_a_preview_that_fails_ends_the_interim_meshes_not_the_job(tiny_model):
    """Too few points for the coarse grid's windows: the preview fails, nothing is published, the job goes on."""
    settings = Settings(small_config(), 'cpu', NodeOptions(progressive=True))
    blocks, published = MarkerBlocks(), []
    interim = InterimMarkers(settings, 'map', blocks, published.append, None)
    interim.preview(np.zeros((3, 3)), None, tiny_model, None, threading.Event(), None, lambda *args: None)
    assert published == [] and interim.updates == 0 and 'ReconstructionError' in interim.error
    interim.restore()
    assert published == []


def test_a_cancelled_preview_cancels_the_job(tiny_model):
    settings = Settings(small_config(), 'cpu', NodeOptions(progressive=True))
    interim = InterimMarkers(settings, 'map', MarkerBlocks(), [].append, None)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ReconstructionCancelled):
        interim.preview(corridor(), None, tiny_model, None, cancel, None, lambda *args: None)
