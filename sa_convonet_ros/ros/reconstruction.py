"""What one job of the node does: the core's reconstruction of its cloud, the mesh's messages and files, the
commit, and the publishing. Nothing is published and no file is left unless every step succeeded and the
job was not cancelled first (jobs.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from rclpy.node import Node

from sa_convonet_ros.errors import ReconstructionCancelled, ReconstructionError
from sa_convonet_ros.memory import release_freed_memory
from sa_convonet_ros.meshing import simplified
from sa_convonet_ros.model import ConvONet
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.pipeline import Result, reconstruct
from sa_convonet_ros.points import subsample_evenly
from sa_convonet_ros.ros.jobs import Job, Outcome, ProgressReporter
from sa_convonet_ros.ros.marker_blocks import MarkerBlocks
from sa_convonet_ros.ros.markers import NumpyMarkerArray
from sa_convonet_ros.ros.messages import MeshMessages, mesh_messages, stats_message
from sa_convonet_ros.ros.outputs import OutputError, StagedFiles, output_paths
from sa_convonet_ros.ros.progressive import InterimMarkers, ShownMesh, shown_mesh
from sa_convonet_ros.ros.settings import Settings


@dataclass
class Outlets:
    """Where a job's results and reports go: the node (its logger and clock) and its publishers; the mesh_msgs
    ones (serialized messages, under `mesh_uuid`) only where the node publishes those."""

    node: Node
    markers: Callable[[NumpyMarkerArray], None]  # publishes `serialized()` on the marker topic
    marker_blocks: MarkerBlocks  # what the marker topic shows, block by block
    stats: Callable[[ReconstructionStats], None]
    progress: Callable[[ReconstructionProgress], None]
    mesh_geometry: Optional[Callable[[bytes], None]] = None
    mesh_colors: Optional[Callable[[bytes], None]] = None
    mesh_uuid: Optional[str] = None
    shown: Optional[ShownMesh] = None  # the last job's markers: what a progressive job puts back when cancelled


@dataclass
class Product:
    """What a successful job publishes and answers."""

    result: Result
    messages: MeshMessages
    stats: ReconstructionStats


def run_job(job: Job, settings: Settings, model: ConvONet, outlets: Outlets) -> Outcome:
    """One reconstruction (the caller holds the job slot); publishes only when all succeeded."""
    stats_msg = ReconstructionStats(device=settings.config.device, profile=settings.config.profile)
    options = settings.options
    try:
        output = output_paths(job.output_path, job.write_preview, options.output_dir, job.cloud.points)
    except ValueError as error:
        return Outcome(False, str(error), stats=stats_msg)
    frame_id = options.frame_id.strip() or job.cloud.frame_id or 'map'
    progress = ProgressReporter(outlets.node, job, frame_id, outlets.progress)
    # A later run whose windows the cache holds is quick, and the mesh shown meanwhile is its best preview.
    rerun = outlets.shown is not None and job.cache is not None and len(job.cache) > 0
    interim = (InterimMarkers(settings, frame_id, outlets.marker_blocks, outlets.markers, outlets.shown)
               if options.progressive and not rerun else None)
    try:
        product = _produce(job, settings, model, progress, frame_id, output, outlets, interim)
    except ReconstructionCancelled:
        _restore(interim, outlets)
        progress.finish('cancelled', 'cancelled; the published mesh is unchanged')
        return Outcome(False, f'cancelled after {time.monotonic() - job.started:.1f} s; the published mesh is '
                              'unchanged', stats=stats_msg, cancelled=True)
    except (ReconstructionError, OutputError) as error:
        _restore(interim, outlets)
        progress.finish('failed', str(error))
        cause = '' if isinstance(error, OutputError) else f'cannot reconstruct {job.source}: '
        return Outcome(False, f'{cause}{error}', stats=stats_msg)
    except Exception as error:  # an unexpected failure must not take the node down
        outlets.node.get_logger().error(f'reconstruction failed: {type(error).__name__}: {error}')
        _restore(interim, outlets)
        progress.finish('failed', str(error))
        return Outcome(False, f'reconstruction failed: {type(error).__name__}: {error}', stats=stats_msg)
    finally:
        release_freed_memory()
    if interim is not None and interim.error:
        outlets.node.get_logger().warning(f'progressive: the interim meshes stopped: {interim.error}')
    elif interim is not None:
        first = interim.first_shown - job.started
        outlets.node.get_logger().info(f'progressive: the preview went out {first:.1f} s into the job, then '
                                       f'{max(interim.updates - 1, 0)} interim update(s)')
    return _publish(job, product, progress, outlets)


def _restore(interim: Optional[InterimMarkers], outlets: Outlets) -> None:
    """Put back the markers shown before the job; a failure there is logged, the job's own error stays."""
    if interim is None:
        return
    try:
        interim.restore()
    except Exception as error:  # noqa: BLE001 -- the job's outcome must still be answered
        outlets.node.get_logger().error(f'could not restore the markers: {type(error).__name__}: {error}')


def _produce(job: Job, settings: Settings, model: ConvONet, progress: ProgressReporter, frame_id: str, output,
             outlets: Outlets, interim: Optional[InterimMarkers] = None) -> Product:
    """The mesh, its messages and its files; then the job commits to publishing them, unless it was
    cancelled meanwhile (ReconstructionCancelled, and no file is left)."""
    logger = outlets.node.get_logger()
    result, points = _reconstruct(job, settings, model, progress, logger, interim)
    progress('messages', 0, 1)
    start = time.perf_counter()
    options = settings.options
    shown = simplified(result.mesh, options.max_message_faces)
    if shown is not result.mesh:
        logger.info(f'the mesh has {len(result.mesh.faces)} faces, more than max_message_faces='
                    f'{options.max_message_faces}: the markers and the response carry it simplified to '
                    f'{len(shown.faces)} faces; a mesh file keeps every face')
    messages = mesh_messages(shown, points, frame_id, options, result.stats, job.cloud.colors is not None,
                             outlets.marker_blocks, outlets.mesh_uuid, with_shape=not job.omit_mesh)
    message_faces = len(shown.faces)
    now_shown = shown_mesh(shown, messages.rgb, frame_id, result.stats.window_size)
    del shown
    seconds = dict(result.stats.seconds, messages=time.perf_counter() - start)
    staged = StagedFiles()
    if output:
        progress('write', 0, 1)
        start = time.perf_counter()
        staged = StagedFiles.write(result.mesh, *output)
        seconds['write'] = time.perf_counter() - start
    if not job.commit():
        staged.discard()
        raise ReconstructionCancelled('reconstruction cancelled')
    staged.move_into_place()
    outlets.shown = now_shown
    stats_msg = stats_message(result.stats, seconds, output)
    stats_msg.message_faces = message_faces
    return Product(result, messages, stats_msg)


def _reconstruct(job: Job, settings: Settings, model: ConvONet, progress: ProgressReporter,
                 logger, interim: Optional[InterimMarkers] = None) -> tuple[Result, np.ndarray]:
    """The core's reconstruction of the job's cloud (capped at max_points), and the points it was given;
    never an empty mesh."""
    points, colors = job.cloud.points, job.cloud.colors
    cap = settings.options.max_points
    if cap and len(points) > cap:
        keep = subsample_evenly(points, cap)
        logger.info(f'{job.source} has {len(points)} points, more than max_points={cap}: voxel-subsampled to '
                    f'{len(keep)}')
        points, colors = points[keep], (colors[keep] if colors is not None else None)
    config = settings.config
    logger.info(f'reconstructing {job.source}: {len(points)} points, profile {config.profile}, device '
                f'{settings.device}')
    deadline = job.deadline(settings.options.max_seconds)
    if interim is not None:
        interim.preview(points, colors, model, job.region, job.cancel, deadline, progress)
    result = reconstruct(points, config, colors=colors, model=model, region=job.region, iterations=job.iterations,
                         progress=progress, cancel=job.cancel, cache=job.cache, deadline=deadline,
                         partial=None if interim is None else interim.on_partial)
    if job.cancel.is_set():
        raise ReconstructionCancelled('reconstruction cancelled')
    if result.stats.stray_points_removed:
        logger.warning(f'{job.source}: dropped {result.stats.stray_points_removed} stray point(s) far outside the '
                       "map's own extent")
    if len(result.mesh.faces) == 0:
        raise ReconstructionError(
            f'the reconstruction produced an empty mesh (no surface at threshold {config.meshing.threshold}); '
            'try more iterations or another threshold')
    return result, points


def _publish(job: Job, product: Product, progress: ProgressReporter, outlets: Outlets) -> Outcome:
    cloud, stats_msg, stats = job.cloud, product.stats, product.result.stats
    stats_msg.input_points = len(cloud.points) + cloud.num_removed  # as received, before any subsampling
    # Only the marker blocks that changed (every few runs the whole mesh, DELETEALL first): one message.
    update = product.messages.markers
    if update.markers:
        outlets.markers(update.markers)
        outlets.marker_blocks.commit(update)
    outlets.node.get_logger().info(
        f'markers: {"the whole mesh" if update.whole else "an update"}, {update.blocks_sent} of '
        f'{len(update.published)} blocks sent ({update.triangles} triangles), {update.blocks_deleted} deleted')
    if product.messages.geometry is not None:
        outlets.mesh_geometry(product.messages.geometry)
        outlets.mesh_colors(product.messages.colors)
    outlets.stats(stats_msg)
    progress.finish('done', f'{stats_msg.faces} faces in {stats_msg.total_seconds:.1f} s')
    written = f', wrote {stats_msg.output_path}' if stats_msg.output_path else ''
    budget = (f'; the time budget stopped the optimisation after {stats.steps_run} of {stats.steps_planned} '
              'steps' if stats.out_of_time else '')
    if stats.skipped_for_time:
        budget += f' and left out: {", ".join(stats.skipped_for_time)}'
    if stats.stray_points_removed:
        budget += f'; {stats.stray_points_removed} stray point(s) dropped'
    return Outcome(True, f'reconstructed {job.source}: {stats_msg.vertices} vertices, {stats_msg.faces} faces '
                         f'from {stats.points_used} points in {stats_msg.total_seconds:.1f} s{written}{budget}',
                   product.messages.shape, stats_msg)
