"""A reconstruction's result as the node's messages: the mesh as RViz markers, as shape_msgs/Mesh and, where
mesh_msgs is installed, as serialized mesh_msgs (for rviz_mesh_tools_plugins), and its statistics as a
ReconstructionStats message, filled from the core's RunStats through one mapping."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import trimesh
from geometry_msgs.msg import Point
from shape_msgs.msg import Mesh

from sa_convonet_ros.msg import ReconstructionStats
from sa_convonet_ros.pipeline import RunStats
from sa_convonet_ros.ros.marker_blocks import MarkerBlocks, Update
from sa_convonet_ros.ros.markers import UNIFORM_GREY, mesh_to_shape_msg, vertex_confidence, vertex_rgb
from sa_convonet_ros.ros.serialized import mesh_geometry_stamped, mesh_vertex_colors_stamped
from sa_convonet_ros.ros.settings import NodeOptions

# The marker blocks' edge, in the windows' cores as run: a block about the field a changed window redoes.
BLOCK_EDGE_IN_WINDOWS = 0.5
# ReconstructionStats field <- RunStats field, for the values that go across as they are.
STATS_FIELDS = {
    'input_points': 'input_points', 'points_used': 'points_used', 'stray_points_removed': 'stray_points_removed',
    'windows_run': 'windows_run',
    'windows_skipped': 'windows_skipped', 'windows_reused': 'windows_reused',
    'windows_warm_started': 'windows_warm_started', 'iterations': 'iterations', 'steps_run': 'steps_run',
    'steps_planned': 'steps_planned', 'out_of_time': 'out_of_time', 'skipped_for_time': 'skipped_for_time',
    'device': 'device', 'profile': 'profile',
    'point_spacing': 'spacing', 'noise': 'noise', 'window_size': 'window_size', 'voxel_size': 'voxel_size',
    'vertices': 'vertices', 'faces': 'faces',
}


@dataclass
class MeshMessages:
    """One mesh as every message the node publishes or answers it with."""

    markers: Update  # the marker blocks that changed (or the whole mesh, DELETEALL first)
    shape: Mesh  # shape_msgs/Mesh, for the response (empty where the response leaves the mesh out)
    geometry: Optional[bytes] = None  # serialized mesh_msgs/MeshGeometryStamped, where asked for
    colors: Optional[bytes] = None  # serialized mesh_msgs/MeshVertexColorsStamped, the same uuid
    rgb: Optional[np.ndarray] = None  # the markers' vertex colours (None: uniform)


def mesh_messages(mesh: trimesh.Trimesh, points: np.ndarray, frame_id: str, options: NodeOptions, stats: RunStats,
                  has_colors: bool, blocks: MarkerBlocks, mesh_msgs_uuid: Optional[str] = None,
                  with_shape: bool = True) -> MeshMessages:
    """The mesh coloured as `color_mode` says, as the update of the marker `blocks` published so far, as
    (`with_shape`) shape_msgs/Mesh and as mesh_msgs under `mesh_msgs_uuid` when given. `points`: the points it
    was made from, and `stats` its run's grid, trim and windows as run (the confidence colours, the blocks)."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    rgb = vertex_rgb(options.color_mode, vertices, _input_colors(mesh, has_colors),
                     _confidence(mesh, points, options, stats))
    markers = blocks.update(vertices, faces, rgb, frame_id, stats.window_size * BLOCK_EDGE_IN_WINDOWS,
                            options.max_triangles_per_marker)
    messages = MeshMessages(markers, mesh_to_shape_msg(vertices, faces) if with_shape else Mesh(), rgb=rgb)
    if mesh_msgs_uuid is not None:
        normals = np.asarray(mesh.vertex_normals) if len(faces) else np.zeros_like(vertices)
        rgba = np.ones((len(vertices), 4), dtype=np.float32)
        rgba[:, :3] = UNIFORM_GREY if rgb is None else rgb
        messages.geometry = mesh_geometry_stamped(vertices, normals, faces, frame_id, mesh_msgs_uuid)
        messages.colors = mesh_vertex_colors_stamped(rgba, frame_id, mesh_msgs_uuid)
    return messages


def mesh_msgs_types():
    """(MeshGeometryStamped, MeshVertexColorsStamped) of mesh_msgs, or None where it is not installed."""
    try:
        from mesh_msgs.msg import MeshGeometryStamped, MeshVertexColorsStamped
    except ImportError:
        return None
    return MeshGeometryStamped, MeshVertexColorsStamped


def _input_colors(mesh: trimesh.Trimesh, has_colors: bool) -> np.ndarray | None:
    return np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0 if mesh.visual.kind == 'vertex' and has_colors else None


def _confidence(mesh: trimesh.Trimesh, points: np.ndarray, options: NodeOptions, stats: RunStats) -> np.ndarray | None:
    if options.color_mode != 'confidence':
        return None
    return vertex_confidence(mesh.vertices, points, stats.voxel_size, stats.trim_distance)


def stats_message(stats: RunStats, seconds: dict[str, float],
                  output: Optional[tuple[Path, Optional[Path]]] = None) -> ReconstructionStats:
    """The statistics of a run as a message; `seconds` per stage (the core's and the node's own), `output` the
    mesh file and its preview where they were written."""
    empty = ReconstructionStats()
    # Each value as the field's own Python type (numpy scalars are not ints to rclpy).
    msg = ReconstructionStats(**{name: type(getattr(empty, name))(getattr(stats, source))
                                 for name, source in STATS_FIELDS.items()})
    msg.stage_names = list(seconds)
    msg.stage_seconds = [float(value) for value in seconds.values()]
    msg.total_seconds = float(sum(seconds.values()))
    msg.bbox_min, msg.bbox_max = (Point(x=corner[0], y=corner[1], z=corner[2])
                                  for corner in (stats.bbox_min, stats.bbox_max))
    if output:
        msg.output_path = str(output[0])
        msg.preview_path = str(output[1]) if output[1] is not None else ''
    return msg
