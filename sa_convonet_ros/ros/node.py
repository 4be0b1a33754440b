"""ROS 2 node: accumulated point-cloud map in, SA-ConvONet surface mesh out.

The node only converts messages, holds state and schedules work; the reconstruction itself is
`sa_convonet_ros.pipeline.reconstruct`. Interface (see docs/ros.md):

  subscribes  map_cloud (sensor_msgs/PointCloud2; name from `input_topic`, remappable)
  service     /reconstruct_scene (sa_convonet_ros/ReconstructScene)
  service     ~/cancel (std_srvs/Trigger): cancels the running reconstruction
  publishes   ~/mesh_markers (visualization_msgs/MarkerArray, transient local)
              ~/progress (sa_convonet_ros/ReconstructionProgress), ~/stats (ReconstructionStats)

Threading: a MultiThreadedExecutor runs the map subscription in its own callback group and the
reconstruction entry points (service, cancel, automatic-mode timer) in a reentrant group, so maps,
cancel requests and parameter services are served while a reconstruction runs. One reconstruction
runs at a time: a request arriving meanwhile is refused at once.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import rclpy
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from sensor_msgs.msg import PointCloud2
from shape_msgs.msg import Mesh
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sa_convonet_ros.errors import ReconstructionCancelled, ReconstructionError
from sa_convonet_ros.io import MESH_WRITE_EXTENSIONS, write_mesh
from sa_convonet_ros.model import load_model
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.pipeline import Result, WindowCache, reconstruct, subsample_evenly
from sa_convonet_ros.ros.markers import mesh_to_markers, mesh_to_shape_msg
from sa_convonet_ros.ros.parameters import PARAMETERS, SPECS, Settings, descriptor, settings_from_parameters
from sa_convonet_ros.ros.pointcloud2 import CloudArrays, cloud_to_arrays
from sa_convonet_ros.srv import ReconstructScene

NODE_NAME = 'sa_convonet_reconstruction'
AUTO_CHECK_PERIOD = 0.5  # seconds between checks of the automatic mode
PROGRESS_LOG_PERIOD = 2.0  # seconds between progress log lines within one stage

# Changing one of these (re)loads the model.
_MODEL_PARAMETERS = ('checkpoint', 'device', 'strict_device')


@dataclass
class Job:
    """One reconstruction: what to reconstruct and how far it got."""

    cloud: CloudArrays
    source: str  # where the cloud came from, for messages
    region: Optional[tuple] = None
    iterations: Optional[int] = None  # None = the configured value
    output_path: str = ''
    write_preview: bool = False
    cache: Optional[WindowCache] = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    stage: str = 'prepare'


@dataclass
class Outcome:
    success: bool
    message: str
    mesh: Mesh = field(default_factory=Mesh)
    stats: ReconstructionStats = field(default_factory=ReconstructionStats)


class ReconstructionNode(Node):

    def __init__(self):
        super().__init__(NODE_NAME)
        self._state_lock = threading.Lock()  # guards the map, settings and model below
        self._busy = threading.Lock()  # held while a reconstruction runs
        self._job: Optional[Job] = None
        self._map: Optional[CloudArrays] = None
        self._map_fingerprint = ''
        self._model = None
        self._model_error = 'the model has not been loaded'
        self._settings: Optional[Settings] = None
        self._settings_error = ''
        self._auto_cache = WindowCache()
        self._auto_done_fingerprint = ''
        self._auto_last_start = -float('inf')
        self._refused: dict = {}  # start-up values outside a parameter's range, until it is set

        self._declare_parameters()
        self._apply_startup_settings()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Maps are converted in their own group so they keep arriving during a reconstruction;
        # the reentrant group lets a second request (refused), ~/cancel and the timer run meanwhile.
        map_group = MutuallyExclusiveCallbackGroup()
        work_group = ReentrantCallbackGroup()
        self._input_topic = self._entity_name('input_topic', self.resolve_topic_name)
        self._map_subscription = self.create_subscription(
            PointCloud2, self._input_topic, self._on_map, self._input_qos(), callback_group=map_group,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos))
        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._marker_topic = self._entity_name('marker_topic', self.resolve_topic_name)
        self._marker_publisher = self.create_publisher(MarkerArray, self._marker_topic, latched)
        self._stats_publisher = self.create_publisher(ReconstructionStats, '~/stats', latched)
        self._progress_publisher = self.create_publisher(ReconstructionProgress, '~/progress', 10)
        self._service_name = self._entity_name('service_name', self.resolve_service_name)
        self._service = self.create_service(ReconstructScene, self._service_name, self._on_reconstruct,
                                            callback_group=work_group)
        self._cancel_service = self.create_service(Trigger, '~/cancel', self._on_cancel,
                                                   callback_group=work_group)
        self._auto_timer = self.create_timer(AUTO_CHECK_PERIOD, self._on_auto_timer, callback_group=work_group)

        reliability, durability = self._input_qos_names()
        self.get_logger().info(
            f'ready: map from {self._input_topic} ({reliability}, {durability}), service '
            f'{self._service_name}, mesh markers on {self._marker_topic}; '
            + (f'model {self._settings.checkpoint or "(shipped default)"} on {self._settings.device}'
               if self._model is not None else f'NOT READY: {self._problem()}'))

    # ------------------------------------------------------------------------------ parameters

    def _declare_parameters(self):
        for name, (default, _, _) in PARAMETERS.items():
            value = self._override(name, default)
            try:
                self.declare_parameter(name, value, descriptor(name), ignore_override=True)
            except InvalidParameterValueException:
                # Out of the parameter's range: the node holds the default, but validates the given
                # value like any invalid one, so requests fail saying why until the parameter is set.
                self._refused[name] = value
                self.declare_parameter(name, default, descriptor(name), ignore_override=True)
        known = set(PARAMETERS) | {'use_sim_time', 'start_type_description_service'}
        unknown = sorted(set(self._parameter_overrides) - known)
        if unknown:
            self.get_logger().warning(f'ignoring unknown parameter(s) {", ".join(unknown)} (typo?)')

    def _override(self, name: str, default):
        """The start-up value of a parameter: its override, where it has the parameter's type."""
        if name not in self._parameter_overrides:
            return default
        given = self._parameter_overrides[name].value
        if type(given) is type(default):
            return given
        # A wrongly typed override must not kill the node: an integer for a double is taken as
        # meant (1 -> 1.0), anything else falls back to the default.
        if isinstance(default, float) and isinstance(given, int) and not isinstance(given, bool):
            self.get_logger().warning(f'parameter {name}: integer {given} taken as {float(given)}')
            return float(given)
        self.get_logger().error(f'parameter {name}: {given!r} is not of type {type(default).__name__}; '
                                f'using the default {default!r}')
        return default

    def _parameter_values(self) -> dict:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        return {**values, **self._refused}

    def _apply_startup_settings(self) -> None:
        """Validate the parameters and load the model, logging (never raising) what is wrong."""
        try:
            settings = settings_from_parameters(self._parameter_values())
        except ValueError as error:
            self._settings_error = str(error)
            self.get_logger().error(f'invalid parameters: {error}; requests will fail until it is fixed')
            return
        for note in settings.notes:
            self.get_logger().warning(note)
        self._settings, self._settings_error = settings, ''
        self._model, self._model_error = self._try_load(settings)

    def _try_load(self, settings: Settings):
        """(model, '') or (None, why it failed)."""
        try:
            return self._load(settings), ''
        except (OSError, ValueError, RuntimeError) as error:
            self.get_logger().error(f'cannot load the model: {error}; requests will fail until the '
                                    'checkpoint parameter names a valid model')
            return None, str(error)

    def _load(self, settings: Settings):
        start = time.monotonic()
        model = load_model(settings.checkpoint, device=settings.device)
        self.get_logger().info(f'loaded model {settings.checkpoint or "(shipped default)"} on '
                               f'{settings.device} in {time.monotonic() - start:.1f} s')
        return model

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Accept a change only when the resulting settings are valid (and the model loads)."""
        values = self._parameter_values()
        values.update({p.name: p.value for p in parameters})
        try:
            settings = settings_from_parameters(values)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        model, model_error = self._model, self._model_error
        if any(p.name in _MODEL_PARAMETERS for p in parameters):
            # A new model source must load, or the change is refused and the current model stays.
            try:
                model, model_error = self._load(settings), ''
            except (OSError, ValueError, RuntimeError) as error:
                return SetParametersResult(successful=False, reason=f'cannot load the model: {error}')
        elif model is None:
            # Settings were invalid at start-up, so no model was loaded yet: try now.
            model, model_error = self._try_load(settings)
        for note in settings.notes:
            self.get_logger().warning(note)
        with self._state_lock:
            self._settings, self._settings_error = settings, ''
            self._model, self._model_error = model, model_error
            self._auto_done_fingerprint = ''  # new settings: automatic mode may run again
            for parameter in parameters:
                self._refused.pop(parameter.name, None)
        return SetParametersResult(successful=True)

    def _entity_name(self, parameter: str, resolve) -> str:
        """Fully qualified topic/service name from a parameter, or the default when invalid."""
        name = self.get_parameter(parameter).value
        try:
            return resolve(name)
        except Exception as error:  # rclpy raises several name-validation exception types
            default = PARAMETERS[parameter][0]
            self.get_logger().error(f'parameter {parameter}: invalid name {name!r} ({error}); '
                                    f'using {default!r}')
            return resolve(default)

    def _input_qos_names(self) -> tuple:
        return self._choice('input_reliability'), self._choice('input_durability')

    def _choice(self, parameter: str) -> str:
        """A start-up parameter's value, or its default (logged) when it is none of its choices."""
        value, spec = self.get_parameter(parameter).value, SPECS[parameter]
        if value in spec.choices:
            return value
        self.get_logger().error(f'parameter {parameter} must be {" or ".join(spec.choices)}, got {value!r}; '
                                f'using {spec.default}')
        return spec.default

    def _input_qos(self) -> QoSProfile:
        # Depth 1: only the newest map matters, older ones are superseded.
        reliability, durability = self._input_qos_names()
        return QoSProfile(
            depth=1, history=HistoryPolicy.KEEP_LAST,
            reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if durability == 'transient_local'
                        else DurabilityPolicy.VOLATILE))

    # ------------------------------------------------------------------------------------ input

    def _on_map(self, msg: PointCloud2) -> None:
        try:
            cloud = cloud_to_arrays(msg)
        except Exception as error:  # any malformed message is dropped, never fatal
            with self._state_lock:
                kept = f'{self._map.num_points} points' if self._map is not None else 'none yet'
            self.get_logger().error(f'dropped a map message on {self._input_topic}: {error} '
                                    f'(keeping the last good map: {kept})')
            return
        digest = hashlib.blake2b(cloud.points.tobytes(), digest_size=16)
        if cloud.colors is not None:
            digest.update(cloud.colors.tobytes())
        fingerprint = f'{cloud.frame_id}:{digest.hexdigest()}'
        with self._state_lock:
            changed = fingerprint != self._map_fingerprint
            self._map, self._map_fingerprint = cloud, fingerprint
        if changed:
            removed = f', {cloud.num_removed} non-finite dropped' if cloud.num_removed else ''
            self.get_logger().info(f'map received: {cloud.num_points} points in frame '
                                   f'"{cloud.frame_id}"{removed}')

    def _on_incompatible_qos(self, event) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self.get_logger().warning(
            f'a publisher on {self._input_topic} offers QoS incompatible with this subscription '
            f'({policy}); its maps are not received. A volatile publisher needs input_durability: '
            'volatile, a best-effort one input_reliability: best_effort (see docs/ros.md).',
            throttle_duration_sec=10.0)

    # ---------------------------------------------------------------------------------- service

    def _on_reconstruct(self, request: ReconstructScene.Request, response: ReconstructScene.Response):
        # Refuse at once while busy, before even converting a cloud carried by the request.
        if not self._busy.acquire(blocking=False):
            outcome = Outcome(False, self._busy_message())
        else:
            try:
                job = self._job_from_request(request)
                outcome = job if isinstance(job, Outcome) else self._run(job)
            except Exception as error:  # a bug must cost one request, not the node
                self.get_logger().error(f'internal error: {type(error).__name__}: {error}')
                outcome = Outcome(False, f'internal error: {type(error).__name__}: {error}')
            finally:
                self._job = None
                self._busy.release()
        response.success, response.message = outcome.success, outcome.message
        response.mesh, response.stats = outcome.mesh, outcome.stats
        # (rclpy wants one severity per logging call site, hence two calls.)
        if not self.context.ok():
            pass  # shutting down (Ctrl-C during a job): nothing left to log to
        elif outcome.success:
            self.get_logger().info(f'{self._service_name}: done: {outcome.message}')
        else:
            self.get_logger().warning(f'{self._service_name}: failed: {outcome.message}')
        return response

    def _job_from_request(self, request):
        """The Job a request asks for, or the Outcome that says why it cannot run."""
        if request.iterations < -1:
            return Outcome(False, f'iterations must be -1 (configured value) or >= 0, got {request.iterations}')
        if request.cloud.width * request.cloud.height > 0:
            try:
                cloud = cloud_to_arrays(request.cloud)
            except Exception as error:  # any malformed cloud gets an answer, never a crash
                return Outcome(False, f'the cloud in the request is unusable: {error}')
            source = 'the cloud in the request'
        else:
            with self._state_lock:
                cloud = self._map
            if cloud is None:
                return Outcome(False, f'no map received yet on {self._input_topic} and the request '
                                      'carries no cloud')
            source = f'the map from {self._input_topic}'
        region = None
        if request.use_region:
            low, high = request.region_min, request.region_max
            region = ((low.x, low.y, low.z), (high.x, high.y, high.z))
        return Job(cloud=cloud, source=source, region=region,
                   iterations=None if request.iterations == -1 else request.iterations,
                   output_path=request.output_path.strip(), write_preview=request.write_preview)

    def _busy_message(self) -> str:
        job = self._job
        if job is None:
            return 'busy: another reconstruction is starting; try again later'
        return (f'busy: a reconstruction of {job.source} has been running for '
                f'{time.monotonic() - job.started:.1f} s (stage: {job.stage}); only one runs at a time. '
                f'Try again when it is done, or cancel it with {self.resolve_service_name("~/cancel")}')

    def _on_cancel(self, request, response):
        job = self._job
        if job is None:
            response.success, response.message = False, 'no reconstruction is running'
        else:
            job.cancel.set()
            response.success = True
            response.message = (f'cancelling the reconstruction of {job.source} (running for '
                                f'{time.monotonic() - job.started:.1f} s, stage: {job.stage})')
            self.get_logger().warning(response.message)
        return response

    # ----------------------------------------------------------------------------- automatic mode

    def _on_auto_timer(self) -> None:
        with self._state_lock:
            settings, cloud, fingerprint = self._settings, self._map, self._map_fingerprint
            due = (settings is not None and settings.options.auto_reconstruct and cloud is not None
                   and fingerprint != self._auto_done_fingerprint
                   and time.monotonic() - self._auto_last_start >= settings.options.auto_min_period)
        if not due or not self._busy.acquire(blocking=False):
            return
        try:
            self._auto_done_fingerprint = fingerprint
            self._auto_last_start = time.monotonic()
            outcome = self._run(Job(cloud=cloud, source=f'the map from {self._input_topic} (automatic)',
                                    cache=self._auto_cache))
        except Exception as error:  # a bug must cost one run, not the node
            outcome = Outcome(False, f'internal error: {type(error).__name__}: {error}')
        finally:
            self._job = None
            self._busy.release()
        if outcome.success:
            self.get_logger().info(f'automatic reconstruction done: {outcome.message}')
        else:
            self.get_logger().error(f'automatic reconstruction failed: {outcome.message}')

    # -------------------------------------------------------------------------------------- work

    def _run(self, job: Job) -> Outcome:
        """One reconstruction (the caller holds the busy lock); publishes only when all succeeded."""
        self._job = job
        with self._state_lock:
            settings, model = self._settings, self._model
            problem = self._problem()
        if problem:
            return Outcome(False, problem)
        stats_msg = ReconstructionStats(device=settings.config.device, profile=settings.config.profile)
        try:
            output = self._output_paths(job, settings)
        except ValueError as error:
            return Outcome(False, str(error), stats=stats_msg)
        frame_id = settings.options.frame_id.strip() or job.cloud.frame_id or 'map'
        progress = _ProgressReporter(self, job, frame_id)
        try:
            result = self._reconstruct(job, settings, model, progress)
            progress('messages', 0, 1)
            start = time.perf_counter()
            markers, mesh_msg = self._messages(result.mesh, frame_id, settings, job.cloud.colors is not None)
            seconds = dict(result.stats.seconds, messages=time.perf_counter() - start)
            if output:
                progress('write', 0, 1)
                start = time.perf_counter()
                self._write(result.mesh, *output)
                seconds['write'] = time.perf_counter() - start
        except ReconstructionCancelled:
            progress.finish('cancelled', 'cancelled; the published mesh is unchanged')
            return Outcome(False, f'cancelled after {time.monotonic() - job.started:.1f} s; the '
                                  'published mesh is unchanged', stats=stats_msg)
        except ReconstructionError as error:
            progress.finish('failed', str(error))
            return Outcome(False, f'cannot reconstruct {job.source}: {error}', stats=stats_msg)
        except Exception as error:  # an unexpected failure must not take the node down
            self.get_logger().error(f'reconstruction failed: {type(error).__name__}: {error}')
            progress.finish('failed', str(error))
            return Outcome(False, f'reconstruction failed: {type(error).__name__}: {error}', stats=stats_msg)
        return self._publish(job, result, markers, mesh_msg, self._stats_msg(result.stats, seconds, output),
                             progress)

    def _reconstruct(self, job: Job, settings: Settings, model, progress) -> Result:
        """The core's reconstruction of the job's cloud (capped at max_points); never an empty mesh."""
        points, colors = job.cloud.points, job.cloud.colors
        cap = settings.options.max_points
        if cap and len(points) > cap:
            keep = subsample_evenly(points, cap)
            self.get_logger().info(f'{job.source} has {len(points)} points, more than max_points={cap}: '
                                   f'voxel-subsampled to {len(keep)}')
            points, colors = points[keep], (colors[keep] if colors is not None else None)
        config = settings.config
        self.get_logger().info(f'reconstructing {job.source}: {len(points)} points, profile '
                               f'{config.profile}, device {settings.device}')
        result = reconstruct(points, config, colors=colors, model=model, region=job.region,
                             iterations=job.iterations, progress=progress, cancel=job.cancel, cache=job.cache)
        if job.cancel.is_set():
            raise ReconstructionCancelled('reconstruction cancelled')
        if len(result.mesh.faces) == 0:
            raise ReconstructionError(
                f'the reconstruction produced an empty mesh (no surface at threshold '
                f'{config.meshing.threshold}); try more iterations or another threshold')
        return result

    @staticmethod
    def _messages(mesh, frame_id: str, settings: Settings, has_colors: bool) -> tuple[MarkerArray, Mesh]:
        vertex_colors = (np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
                         if mesh.visual.kind == 'vertex' and has_colors else None)
        markers = mesh_to_markers(mesh.vertices, mesh.faces, frame_id, colors=vertex_colors,
                                  color_mode=settings.options.color_mode,
                                  max_triangles_per_marker=settings.options.max_triangles_per_marker)
        return markers, mesh_to_shape_msg(mesh.vertices, mesh.faces)

    def _publish(self, job: Job, result: Result, markers: MarkerArray, mesh_msg: Mesh,
                 stats_msg: ReconstructionStats, progress) -> Outcome:
        cloud = job.cloud
        stats_msg.input_points = len(cloud.points) + cloud.num_removed  # as received, before any subsampling
        # One MarkerArray (DELETEALL + triangle lists) replaces the previous mesh in a single message.
        self._marker_publisher.publish(markers)
        self._stats_publisher.publish(stats_msg)
        progress.finish('done', f'{stats_msg.faces} faces in {stats_msg.total_seconds:.1f} s')
        written = f', wrote {stats_msg.output_path}' if stats_msg.output_path else ''
        return Outcome(True, f'reconstructed {job.source}: {stats_msg.vertices} vertices, '
                             f'{stats_msg.faces} faces from {result.stats.points_used} points in '
                             f'{stats_msg.total_seconds:.1f} s{written}', mesh_msg, stats_msg)

    def _problem(self) -> str:
        """Why no reconstruction can run now ('' when ready). Call with the state lock held."""
        if self._settings is None or self._settings_error:
            return f'invalid parameters: {self._settings_error}'
        if self._model is None:
            return (f'no model loaded: {self._model_error}. Set the checkpoint parameter to a valid '
                    'model file to retry')
        return ''

    @staticmethod
    def _output_paths(job: Job, settings: Settings):
        """(mesh path, preview path or None) for the request, or None; checked before any work."""
        if not job.output_path:
            return None
        path = Path(job.output_path).expanduser()
        if not path.is_absolute():
            output_dir = settings.options.output_dir.strip()
            path = Path(output_dir).expanduser() / path if output_dir else path.absolute()
        if path.is_dir():
            raise ValueError(f'output_path {str(path)!r} is a directory; give a mesh file name')
        if path.suffix.lower() not in MESH_WRITE_EXTENSIONS:
            raise ValueError(f'output_path {str(path)!r}: unsupported mesh extension {path.suffix!r} '
                             f'(use one of {", ".join(MESH_WRITE_EXTENSIONS)})')
        return path, (path.with_suffix('.png') if job.write_preview else None)

    @staticmethod
    def _write(mesh, path: Path, preview: Optional[Path]) -> None:
        write_mesh(mesh, path)
        if preview is not None:
            # Imported here: the renderer pulls in libraries that most runs never need.
            from sa_convonet_ros.preview import render_mesh_png
            render_mesh_png(mesh, preview, title=path.name)

    @staticmethod
    def _stats_msg(stats, seconds: dict, output) -> ReconstructionStats:
        values = stats.as_dict()
        msg = ReconstructionStats(
            input_points=values['input_points'], points_used=values['points_used'],
            windows_run=values['windows_run'], windows_skipped=values['windows_skipped'],
            windows_reused=values['windows_reused'], windows_warm_started=values['windows_warm_started'],
            iterations=values['iterations'],
            device=values['device'], profile=values['profile'],
            stage_names=list(seconds), stage_seconds=[float(s) for s in seconds.values()],
            total_seconds=float(sum(seconds.values())),
            vertices=values['vertices'], faces=values['faces'],
            bbox_min=Point(x=values['bbox_min'][0], y=values['bbox_min'][1], z=values['bbox_min'][2]),
            bbox_max=Point(x=values['bbox_max'][0], y=values['bbox_max'][1], z=values['bbox_max'][2]))
        if output:
            msg.output_path = str(output[0])
            msg.preview_path = str(output[1]) if output[1] is not None else ''
        return msg

    def cancel_running_job(self) -> None:
        job = self._job
        if job is not None:
            job.cancel.set()


class _ProgressReporter:
    """Turns the core's progress(stage, done, total) calls into ~/progress messages and log lines."""

    # Overall fraction at the start and end of each stage (optimisation and field evaluation
    # alternate per batch of windows, so they share one range).
    RANGES = {'prepare': (0.0, 0.05), 'optimize': (0.05, 0.85), 'field': (0.05, 0.85),
              'mesh': (0.85, 0.9), 'messages': (0.9, 0.95), 'write': (0.95, 1.0)}

    def __init__(self, node: ReconstructionNode, job: Job, frame_id: str):
        self._node, self._job, self._frame_id = node, job, frame_id
        self._fraction = 0.0
        self._last_log = 0.0
        self('prepare', 0, 0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        low, high = self.RANGES.get(stage, (self._fraction, self._fraction))
        share = done / total if total else 0.0
        self._fraction = max(self._fraction, low + (high - low) * min(share, 1.0))  # never goes back
        text = f'{stage} {done}/{total}' if total else stage
        now = time.monotonic()
        if stage != self._job.stage or now - self._last_log >= PROGRESS_LOG_PERIOD:
            self._node.get_logger().info(f'progress: {text} ({100 * self._fraction:.0f} %)')
            self._last_log = now
        self._job.stage = stage
        self._publish(stage, done, total, text)

    def finish(self, stage: str, message: str) -> None:
        if stage == 'done':
            self._fraction = 1.0
        self._job.stage = stage
        self._publish(stage, 0, 0, message)

    def _publish(self, stage: str, done: int, total: int, message: str) -> None:
        if not self._node.context.ok():
            return  # Ctrl-C: the job is being cancelled, and publishers are gone
        msg = ReconstructionProgress(stage=stage, done=max(int(done), 0), total=max(int(total), 0),
                                     fraction=float(self._fraction), message=message)
        msg.header.frame_id = self._frame_id
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._node._progress_publisher.publish(msg)


def main(args=None):
    rclpy.init(args=args)
    node = ReconstructionNode()
    # Four threads: one reconstruction, plus maps, cancel/refusals and parameter services.
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.cancel_running_job()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    main()
