"""A reconstruction's result as the node's messages: the mesh as RViz markers and as shape_msgs/Mesh, and
its statistics as a ReconstructionStats message, filled from the core's RunStats through one mapping."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import trimesh
from geometry_msgs.msg import Point
from shape_msgs.msg import Mesh
from visualization_msgs.msg import MarkerArray

from sa_convonet_ros.msg import ReconstructionStats
from sa_convonet_ros.pipeline import RunStats
from sa_convonet_ros.ros.markers import mesh_to_markers, mesh_to_shape_msg, vertex_confidence
from sa_convonet_ros.ros.settings import NodeOptions

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


def mesh_messages(mesh: trimesh.Trimesh, points: np.ndarray, frame_id: str, options: NodeOptions,
                  stats: RunStats, has_colors: bool) -> tuple[MarkerArray, Mesh]:
    """The mesh as one MarkerArray (DELETEALL, then TRIANGLE_LIST markers coloured as `color_mode` says) and
    as a shape_msgs/Mesh. `points`: the points it was made from, and `stats` its run's grid and trim as run
    (for the confidence colours)."""
    vertex_colors = (np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
                     if mesh.visual.kind == 'vertex' and has_colors else None)
    confidence = (vertex_confidence(mesh.vertices, points, stats.voxel_size, stats.trim_distance)
                  if options.color_mode == 'confidence' else None)
    markers = mesh_to_markers(mesh.vertices, mesh.faces, frame_id, colors=vertex_colors, confidence=confidence,
                              color_mode=options.color_mode,
                              max_triangles_per_marker=options.max_triangles_per_marker)
    return markers, mesh_to_shape_msg(mesh.vertices, mesh.faces)


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
