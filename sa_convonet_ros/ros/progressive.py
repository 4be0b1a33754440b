"""Progressive results: what the marker topic shows while a job runs (the node's `progressive` parameter).

First a preview: the feed-forward field (no optimisation, no denoising) on a grid PREVIEW_GRID times coarser,
ready within seconds. Then, as the run's windows finish and its mesh is marched slab by slab along the map
(`pipeline.PartialMesh`), the optimised faces replace the preview's where they are final, at most every
INTERIM_PERIOD seconds. The job's result follows as usual, as the update of what these interim meshes left
shown. Each interim mesh goes out as marker blocks (marker_blocks.py): only the blocks that changed. A job
that is cancelled or fails puts back the mesh the topic showed before it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from sa_convonet_ros.errors import ReconstructionCancelled
from sa_convonet_ros.meshing import simplified
from sa_convonet_ros.model import ConvONet
from sa_convonet_ros.pipeline import PartialMesh, RunStats, reconstruct
from sa_convonet_ros.refine import color_from_points
from sa_convonet_ros.ros.marker_blocks import MarkerBlocks
from sa_convonet_ros.ros.markers import NumpyMarkerArray
from sa_convonet_ros.ros.messages import BLOCK_EDGE_IN_WINDOWS, mesh_messages
from sa_convonet_ros.ros.settings import Settings

PREVIEW_GRID = 3.0  # the preview's grid against the run's: a 27th of the grid points to decode
INTERIM_PERIOD = 3.0  # seconds at least between two interim updates: a few per minute of optimisation
# ... and at least this many times what the last one cost the node: interim updates take at most a fifth of it.
INTERIM_COST_FACTOR = 4.0


@dataclass
class ShownMesh:
    """The mesh a finished job left on the marker topic, as its blocks were made: what a later job that is
    cancelled after showing interim meshes puts back."""

    vertices: np.ndarray
    faces: np.ndarray
    rgb: Optional[np.ndarray]
    frame_id: str
    block_size: float


class InterimMarkers:
    """The preview and the interim updates of one job on the marker topic; `restore` undoes them."""

    def __init__(self, settings: Settings, frame_id: str, blocks: MarkerBlocks,
                 publish: Callable[[NumpyMarkerArray], None], before: Optional[ShownMesh]):
        self._settings, self._frame_id = settings, frame_id
        self._blocks, self._publish, self._before = blocks, publish, before
        self._points, self._colors = np.zeros((0, 3)), None
        self._preview: Optional[trimesh.Trimesh] = None
        self._tree: Optional[cKDTree] = None
        self._next = 0.0  # time.monotonic() from which an interim update may go out
        self.updates = 0  # interim updates published
        self.first_shown = float('nan')  # time.monotonic() when the preview's markers went out
        self.error: Optional[str] = None  # why the interim meshes stopped, if they failed: the job goes on

    def preview(self, points: np.ndarray, colors: Optional[np.ndarray], model: ConvONet, region, cancel,
                deadline: Optional[float], progress: Callable[[str, int, int], None]) -> None:
        """The feed-forward mesh of `points` on the coarse grid, published whole. ReconstructionCancelled once
        cancelled; any other failure only ends the interim meshes (`error`)."""
        self._points, self._colors = points, colors
        config = self._settings.config
        meshing = config.meshing
        coarse = config.updated(
            meshing={'voxel_size': PREVIEW_GRID * meshing.voxel_size, 'snap_distance': 0.0, 'crest_depth': 0.0,
                     'trim_distance': None if meshing.trim_distance is None else PREVIEW_GRID * meshing.trim_distance,
                     'color_from_input': False},
            denoise={'denoise': False})
        try:
            result = reconstruct(points, coarse, model=model, region=region, iterations=0, cancel=cancel,
                                 deadline=deadline, progress=lambda stage, done, total: progress('preview', 0, 1))
            self._preview = result.mesh
            self._show(simplified(result.mesh, self._settings.options.max_message_faces), result.stats)
        except ReconstructionCancelled:
            raise
        except Exception as error:  # noqa: BLE001 -- a preview that fails must not fail the job
            self.error = f'{type(error).__name__}: {error}'
            self._preview = None
            return
        self.first_shown = time.monotonic()
        progress('preview', 1, 1)

    def on_partial(self, part: PartialMesh) -> None:
        """`reconstruct`'s partial callback: the optimised faces so far, the preview's beyond them."""
        if part.complete or self._preview is None or time.monotonic() < self._next:
            return
        try:
            # As dense as the result's markers will be: max_message_faces shared out by the slabs marched.
            limit = self._settings.options.max_message_faces
            mesh = simplified(part.mesh(), limit and max(1, round(limit * part.share)))
            preview = self._preview  # its face centres are computed once and cached by trimesh
            ahead = np.flatnonzero(preview.triangles_center[:, part.axis] >= part.final_below)
            if len(ahead):
                mesh = trimesh.util.concatenate([mesh, preview.submesh([ahead], append=True)])
            self._show(mesh, RunStats(window_size=part.window_size, voxel_size=part.voxel_size,
                                      trim_distance=part.trim_distance))
        except Exception as error:  # noqa: BLE001 -- interim meshes that fail must not fail the job
            self.error, self._preview = f'{type(error).__name__}: {error}', None

    def restore(self) -> None:
        """Put back what the topic showed before the job (nothing, if it showed nothing), once it showed an
        interim mesh."""
        if not self.updates:
            return
        before = self._before
        if before is None:
            update = self._blocks.update(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), None, self._frame_id,
                                         1.0, self._settings.options.max_triangles_per_marker)
        else:
            update = self._blocks.update(before.vertices, before.faces, before.rgb, before.frame_id,
                                         before.block_size, self._settings.options.max_triangles_per_marker)
        if update.markers:
            self._publish(update.markers)
        self._blocks.commit(update)

    def _show(self, mesh: trimesh.Trimesh, stats: RunStats) -> None:
        if len(mesh.faces) == 0:
            return
        start = time.monotonic()
        if self._colors is not None:
            if self._tree is None:
                self._tree = cKDTree(self._points)
            color_from_points(mesh, self._points, self._colors, self._tree)
        messages = mesh_messages(mesh, self._points, self._frame_id, self._settings.options, stats,
                                 self._colors is not None, self._blocks, with_shape=False)
        if messages.markers.markers:
            self._publish(messages.markers.markers)
        self._blocks.commit(messages.markers)
        now = time.monotonic()
        self._next = now + max(INTERIM_PERIOD, INTERIM_COST_FACTOR * (now - start))
        self.updates += 1


def shown_mesh(mesh: trimesh.Trimesh, rgb: Optional[np.ndarray], frame_id: str, window_size: float) -> ShownMesh:
    """What a job's published markers show, kept for `InterimMarkers.restore`."""
    return ShownMesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), rgb, frame_id,
                     window_size * BLOCK_EDGE_IN_WINDOWS)
