"""ROS 2 node: accumulated point-cloud map in, SA-ConvONet surface mesh out.

The node only converts messages, holds state and schedules work; the reconstruction itself is
`sa_convonet_ros.pipeline.reconstruct`. Interface (see docs/ros.md):

  subscribes  map_cloud (sensor_msgs/PointCloud2; name from `input_topic`, remappable)
  service     /reconstruct_scene (sa_convonet_ros/ReconstructScene)
  action      ~/reconstruct (sa_convonet_ros/action/ReconstructScene): the same, with feedback and cancel
  service     ~/cancel (std_srvs/Trigger): cancels the running reconstruction
  publishes   ~/mesh_markers (visualization_msgs/MarkerArray, transient local)
              ~/progress (sa_convonet_ros/ReconstructionProgress), ~/stats (ReconstructionStats)

Threading: a MultiThreadedExecutor runs the map subscription in its own callback group and the
reconstruction entry points (service, action, cancel, automatic-mode timer) in a reentrant group, so
maps, cancel requests and parameter services are served while a reconstruction runs. One
reconstruction runs at a time: a request arriving meanwhile is refused at once. A cancel either takes
effect (nothing is published) or, once the job has committed to publishing, is answered "too late"
(see jobs.py).
"""
from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import rclpy
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import PointCloud2
from shape_msgs.msg import Mesh
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
from sa_convonet_ros.errors import ReconstructionCancelled, ReconstructionError
from sa_convonet_ros.io import check_mesh_path, check_output_file
from sa_convonet_ros.memory import keep_heap_compact, release_freed_memory
from sa_convonet_ros.meshing import simplified
from sa_convonet_ros.model import load_model
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.pipeline import Result, WindowCache, reconstruct, subsample_evenly
from sa_convonet_ros.ros.jobs import Job, Outcome, OutputError, ProgressReporter, StagedFiles
from sa_convonet_ros.ros.markers import mesh_to_markers, mesh_to_shape_msg, vertex_confidence
from sa_convonet_ros.ros.parameters import PARAMETERS, SPECS, Settings, descriptor, settings_from_parameters
from sa_convonet_ros.ros.pointcloud2 import CloudArrays, cloud_to_arrays
from sa_convonet_ros.srv import ReconstructScene

NODE_NAME = 'sa_convonet_reconstruction'
ACTION_NAME = '~/reconstruct'
AUTO_CHECK_PERIOD = 0.5  # seconds between checks of the automatic mode
SIGNAL_CHECK_PERIOD = 0.1  # seconds the main thread waits for work before it looks for Ctrl-C

# Changing one of these (re)loads the model.
_MODEL_PARAMETERS = ('checkpoint', 'device', 'strict_device')


@dataclass
class Product:
    """What a successful job publishes and answers."""

    result: Result
    markers: MarkerArray
    mesh: Mesh
    stats: ReconstructionStats


class ReconstructionNode(Node):

    def __init__(self):
        super().__init__(NODE_NAME)
        self._state_lock = threading.Lock()  # guards the map, settings and model below
        self._busy = threading.Lock()  # held while a reconstruction runs
        self._job: Optional[Job] = None
        self._job_lock = threading.Lock()  # a job's start against the cancel of its action goal
        self._cancelled_goals: set = set()  # ids of action goals cancelled before their job started
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
        self.add_pre_set_parameters_callback(self._on_pre_set_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._create_interface()

        reliability, durability = self._input_qos_names()
        self.get_logger().info(
            f'ready: map from {self._input_topic} ({reliability}, {durability}), service '
            f'{self._service_name}, action {self._action_name}, mesh markers on {self._marker_topic}; '
            + (f'model {self._settings.checkpoint or "(shipped default)"} on {self._settings.device}'
               if self._model is not None else f'NOT READY: {self._problem()}'))

    def _create_interface(self) -> None:
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
        self._action_name = self.resolve_service_name(ACTION_NAME)
        self._action_server = ActionServer(
            self, ReconstructSceneAction, ACTION_NAME, execute_callback=self._on_goal,
            goal_callback=lambda goal: GoalResponse.ACCEPT, cancel_callback=self._on_goal_cancel,
            callback_group=work_group)
        self._cancel_service = self.create_service(Trigger, '~/cancel', self._on_cancel,
                                                   callback_group=work_group)
        self._auto_timer = self.create_timer(AUTO_CHECK_PERIOD, self._on_auto_timer, callback_group=work_group)

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

    def _on_pre_set_parameters(self, parameters: list) -> list:
        """An integer for a floating-point parameter is taken as meant (1 -> 1.0) at run time too, as
        in a params file or on the command line at start-up."""
        taken = []
        for parameter in parameters:
            default = PARAMETERS.get(parameter.name, (None,))[0]
            if isinstance(default, float) and parameter.type_ == Parameter.Type.INTEGER:
                self.get_logger().warning(f'parameter {parameter.name}: integer {parameter.value} taken as '
                                          f'{float(parameter.value)}')
                parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
            taken.append(parameter)
        return taken

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

    # ------------------------------------------------------------------------ service and action

    def _on_reconstruct(self, request: ReconstructScene.Request, response: ReconstructScene.Response):
        outcome = self._serve(request)
        response.success, response.message = outcome.success, outcome.message
        response.mesh, response.stats = outcome.mesh, outcome.stats
        self._log_outcome(self._service_name, outcome)
        return response

    def _on_goal(self, goal_handle) -> ReconstructSceneAction.Result:
        """An action goal: the service's work, with feedback; ends succeeded, aborted or canceled."""
        try:
            outcome = self._serve(goal_handle.request, goal_handle)
        finally:
            with self._job_lock:
                self._cancelled_goals.discard(_goal_key(goal_handle))
        if outcome.cancelled and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()  # also a job cancelled through ~/cancel rather than the action's cancel
        self._log_outcome(self._action_name, outcome)
        return ReconstructSceneAction.Result(success=outcome.success, message=outcome.message,
                                             mesh=outcome.mesh, stats=outcome.stats)

    def _on_goal_cancel(self, goal_handle) -> CancelResponse:
        """The standard action cancel: accepted while the goal's job can still be stopped (or has not
        started), rejected once it has committed to publishing its result."""
        with self._job_lock:
            job = self._job
            if job is not None and job.goal is goal_handle:
                accepted = job.request_cancel()
            else:
                accepted = goal_handle.is_active
                if accepted:
                    self._cancelled_goals.add(_goal_key(goal_handle))
        if self.context.ok():
            self.get_logger().warning(f'{self._action_name}: cancel of a goal '
                                      + ('accepted' if accepted else 'rejected: too late, its result is being '
                                                                     'published'))
        return CancelResponse.ACCEPT if accepted else CancelResponse.REJECT

    def _serve(self, request, goal_handle=None) -> Outcome:
        """One request or goal: refused at once while another reconstruction runs."""
        # Refuse at once while busy, before even converting a cloud carried by the request.
        if not self._busy.acquire(blocking=False):
            return Outcome(False, self._busy_message())
        try:
            job = self._job_from_request(request)
            if isinstance(job, Outcome):
                return job
            job.goal = goal_handle
            if not self._start(job):
                return Outcome(False, 'cancelled before it started', cancelled=True)
            return self._run(job)
        except Exception as error:  # a bug must cost one request, not the node
            self.get_logger().error(f'internal error: {type(error).__name__}: {error}')
            return Outcome(False, f'internal error: {type(error).__name__}: {error}')
        finally:
            self._job = None
            self._busy.release()

    def _start(self, job: Job) -> bool:
        """Make `job` the running one; False when its action goal was cancelled before it started."""
        with self._job_lock:
            if job.goal is not None and _goal_key(job.goal) in self._cancelled_goals:
                return False
            self._job = job
            return True

    def _log_outcome(self, entry: str, outcome: Outcome) -> None:
        # (rclpy wants one severity per logging call site, hence two calls.)
        if not self.context.ok():
            pass  # shutting down (Ctrl-C during a job): nothing left to log to
        elif outcome.success:
            self.get_logger().info(f'{entry}: done: {outcome.message}')
        else:
            self.get_logger().warning(f'{entry}: failed: {outcome.message}')

    def _job_from_request(self, request):
        """The Job a request (or goal) asks for, or the Outcome that says why it cannot run."""
        refusal = self._refusal(request)
        if refusal:
            return Outcome(False, refusal)
        if _carries_a_cloud(request.cloud):
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
                   max_seconds=None if request.max_seconds == -1 else float(request.max_seconds),
                   output_path=request.output_path.strip(), write_preview=request.write_preview)

    def _refusal(self, request) -> str:
        """Why the request's iterations or time budget cannot be run ('' when they can)."""
        with self._state_lock:
            settings = self._settings
        if request.iterations < -1:
            return f'iterations must be -1 (configured value) or >= 0, got {request.iterations}'
        limit = settings.options.max_iterations if settings is not None else None
        if limit is not None and request.iterations > limit:
            return (f'iterations {request.iterations} is more than max_iterations ({limit}, a parameter of '
                    'the node); to bound the time of a request give max_seconds instead')
        seconds = request.max_seconds
        if seconds != -1 and not (math.isfinite(seconds) and seconds >= 0):
            return (f"max_seconds must be -1 (the node's max_seconds), 0 (no budget) or a number of seconds, "
                    f'got {seconds}')
        return ''

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
        elif job.request_cancel():
            response.success = True
            response.message = (f'cancelling the reconstruction of {job.source} (running for '
                                f'{time.monotonic() - job.started:.1f} s, stage: {job.stage}); nothing of it '
                                'will be published')
        else:
            response.success = False
            response.message = (f'too late to cancel: the reconstruction of {job.source} has finished and '
                                f'its result is being published (stage: {job.stage})')
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
            job = Job(cloud=cloud, source=f'the map from {self._input_topic} (automatic)', cache=self._auto_cache)
            self._start(job)
            outcome = self._run(job)
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
        progress = ProgressReporter(self, job, frame_id, self._progress_publisher.publish)
        try:
            product = self._produce(job, settings, model, progress, frame_id, output)
        except ReconstructionCancelled:
            progress.finish('cancelled', 'cancelled; the published mesh is unchanged')
            return Outcome(False, f'cancelled after {time.monotonic() - job.started:.1f} s; the '
                                  'published mesh is unchanged', stats=stats_msg, cancelled=True)
        except (ReconstructionError, OutputError) as error:
            progress.finish('failed', str(error))
            cause = '' if isinstance(error, OutputError) else f'cannot reconstruct {job.source}: '
            return Outcome(False, f'{cause}{error}', stats=stats_msg)
        except Exception as error:  # an unexpected failure must not take the node down
            self.get_logger().error(f'reconstruction failed: {type(error).__name__}: {error}')
            progress.finish('failed', str(error))
            return Outcome(False, f'reconstruction failed: {type(error).__name__}: {error}', stats=stats_msg)
        finally:
            release_freed_memory()
        return self._publish(job, product, progress)

    def _produce(self, job: Job, settings: Settings, model, progress, frame_id: str, output) -> Product:
        """The mesh, its messages and its files; then the job commits to publishing them, unless it was
        cancelled meanwhile (ReconstructionCancelled, and no file is left)."""
        result, points = self._reconstruct(job, settings, model, progress)
        progress('messages', 0, 1)
        start = time.perf_counter()
        shown = simplified(result.mesh, settings.options.max_message_faces)
        if shown is not result.mesh:
            self.get_logger().info(f'the mesh has {len(result.mesh.faces)} faces, more than max_message_faces='
                                   f'{settings.options.max_message_faces}: the markers and the response carry it '
                                   f'simplified to {len(shown.faces)} faces; a mesh file keeps every face')
        markers, mesh_msg = self._messages(shown, points, frame_id, settings, job.cloud.colors is not None)
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
        stats_msg = self._stats_msg(result.stats, seconds, output)
        stats_msg.message_faces = len(mesh_msg.triangles)
        return Product(result, markers, mesh_msg, stats_msg)

    def _reconstruct(self, job: Job, settings: Settings, model, progress) -> tuple[Result, np.ndarray]:
        """The core's reconstruction of the job's cloud (capped at max_points), and the points it was
        given; never an empty mesh."""
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
                             iterations=job.iterations, progress=progress, cancel=job.cancel, cache=job.cache,
                             deadline=job.deadline(settings.options.max_seconds))
        if job.cancel.is_set():
            raise ReconstructionCancelled('reconstruction cancelled')
        if len(result.mesh.faces) == 0:
            raise ReconstructionError(
                f'the reconstruction produced an empty mesh (no surface at threshold '
                f'{config.meshing.threshold}); try more iterations or another threshold')
        return result, points

    @staticmethod
    def _messages(mesh, points: np.ndarray, frame_id: str, settings: Settings,
                  has_colors: bool) -> tuple[MarkerArray, Mesh]:
        options = settings.options
        vertex_colors = (np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
                         if mesh.visual.kind == 'vertex' and has_colors else None)
        confidence = (vertex_confidence(mesh.vertices, points, settings.config.meshing.voxel_size)
                      if options.color_mode == 'confidence' else None)
        markers = mesh_to_markers(mesh.vertices, mesh.faces, frame_id, colors=vertex_colors, confidence=confidence,
                                  color_mode=options.color_mode,
                                  max_triangles_per_marker=options.max_triangles_per_marker)
        return markers, mesh_to_shape_msg(mesh.vertices, mesh.faces)

    def _publish(self, job: Job, product: Product, progress) -> Outcome:
        cloud, stats_msg, stats = job.cloud, product.stats, product.result.stats
        stats_msg.input_points = len(cloud.points) + cloud.num_removed  # as received, before any subsampling
        # One MarkerArray (DELETEALL + triangle lists) replaces the previous mesh in a single message.
        self._marker_publisher.publish(product.markers)
        self._stats_publisher.publish(stats_msg)
        progress.finish('done', f'{stats_msg.faces} faces in {stats_msg.total_seconds:.1f} s')
        written = f', wrote {stats_msg.output_path}' if stats_msg.output_path else ''
        budget = (f'; the time budget stopped the optimisation after {stats.steps_run} of {stats.steps_planned} '
                  'steps' if stats.out_of_time else '')
        return Outcome(True, f'reconstructed {job.source}: {stats_msg.vertices} vertices, '
                             f'{stats_msg.faces} faces from {stats.points_used} points in '
                             f'{stats_msg.total_seconds:.1f} s{written}{budget}', product.mesh, stats_msg)

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
        """(mesh path, preview path or None) for the request, or None; checked before any work
        (ValueError: "could not write ...")."""
        if not job.output_path:
            return None
        text = os.path.expanduser(job.output_path)  # text: Path() would drop a trailing slash
        if not os.path.isabs(text):
            output_dir = settings.options.output_dir.strip()
            text = os.path.join(os.path.expanduser(output_dir) if output_dir else os.getcwd(), text)
        farthest = float(np.abs(job.cloud.points).max(initial=0.0))
        path = check_mesh_path(text, max_abs_coordinate=farthest)
        preview = check_output_file(path.with_suffix('.png')) if job.write_preview else None
        return path, preview

    @staticmethod
    def _stats_msg(stats, seconds: dict, output) -> ReconstructionStats:
        values = stats.as_dict()
        msg = ReconstructionStats(
            input_points=values['input_points'], points_used=values['points_used'],
            windows_run=values['windows_run'], windows_skipped=values['windows_skipped'],
            windows_reused=values['windows_reused'], windows_warm_started=values['windows_warm_started'],
            iterations=values['iterations'], steps_run=values['steps_run'],
            steps_planned=values['steps_planned'], out_of_time=values['out_of_time'],
            device=values['device'], profile=values['profile'],
            point_spacing=float(values['spacing']), noise=float(values['noise']),
            window_size=float(values['window_size']), voxel_size=float(values['voxel_size']),
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
            job.request_cancel()


def _goal_key(goal_handle) -> bytes:
    return bytes(goal_handle.goal_id.uuid)


def _carries_a_cloud(cloud: PointCloud2) -> bool:
    """Whether a request holds a cloud (which must then be readable): any point or any byte of data.
    Only a cloud with neither stands for "the latest map"."""
    return cloud.width * cloud.height > 0 or len(cloud.data) > 0


def main(args=None):
    # Ctrl-C under `ros2 launch` reaches the node twice (the terminal's process group, then launch's own
    # SIGINT), possibly while it shuts down or in an atexit callback. So no signal raises anything here:
    # SIGINT and SIGTERM only set `stop`, which the main thread checks between waits for work.
    keep_heap_compact()  # before the executor's threads: repeated jobs must not ratchet the memory up
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = ReconstructionNode()
    # Four threads: one reconstruction, plus maps, cancel/refusals and parameter services.
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_CHECK_PERIOD)
    except ExternalShutdownException:
        pass
    finally:
        node.cancel_running_job()
        executor.shutdown()
        node.destroy_node()
        # rclpy would put back the handler it found at init (raising KeyboardInterrupt): keep ours.
        rclpy.try_shutdown(uninstall_handlers=False)
        # Python's finalisation resets every handler it installed to the default, which makes a late
        # SIGINT kill the exiting process; an ignored signal stays ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    return 0


if __name__ == '__main__':
    main()
