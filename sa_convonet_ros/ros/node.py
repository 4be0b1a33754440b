"""ROS 2 node: accumulated point-cloud map in, SA-ConvONet surface mesh out.

The node declares its interface and wires the callbacks; the rest lives beside it: the parameters and the
model they load (parameters.py), one job at a time for every entry point (jobs.py), what a job does
(reconstruction.py) and the messages it publishes (messages.py). The reconstruction itself is
`sa_convonet_ros.pipeline.reconstruct`. Interface (see docs/ros.md):

  subscribes  map_cloud (sensor_msgs/PointCloud2; name from `input_topic`, remappable)
  service     /reconstruct_scene (sa_convonet_ros/ReconstructScene)
  action      ~/reconstruct (sa_convonet_ros/action/ReconstructScene): the same, with feedback and cancel
  service     ~/cancel (std_srvs/Trigger): cancels the running reconstruction
  publishes   ~/mesh_markers (visualization_msgs/MarkerArray, transient local)
              ~/mesh, ~/mesh/vertex_colors (mesh_msgs, transient local; where mesh_msgs is installed)
              ~/progress (sa_convonet_ros/ReconstructionProgress), ~/stats (ReconstructionStats)

Threading: a MultiThreadedExecutor runs the map subscription in its own callback group and the
reconstruction entry points (service, action, cancel, automatic-mode timer) in a reentrant group, so
maps, cancel requests and parameter services are served while a reconstruction runs. One
reconstruction runs at a time: a request arriving meanwhile is refused at once. A cancel either takes
effect (nothing is published) or, once the job has committed to publishing, is answered "too late".
"""
from __future__ import annotations

import hashlib
import signal
import threading
import time
from typing import Optional

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
from sa_convonet_ros.cache import WindowCache
from sa_convonet_ros.memory import keep_heap_compact
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.ros.jobs import Job, JobSlot, Outcome, job_from_request
from sa_convonet_ros.ros.marker_blocks import MARKER_HISTORY, MarkerBlocks
from sa_convonet_ros.ros.markers import NumpyMarkerArray
from sa_convonet_ros.ros.messages import mesh_msgs_types
from sa_convonet_ros.ros.parameters import NodeParameters
from sa_convonet_ros.ros.pointcloud2 import CloudArrays, cloud_to_arrays
from sa_convonet_ros.ros.reconstruction import Outlets, run_job
from sa_convonet_ros.ros.settings import NODE_NAME
from sa_convonet_ros.srv import ReconstructScene

ACTION_NAME = '~/reconstruct'
MESH_TOPIC = '~/mesh'  # mesh_msgs/MeshGeometryStamped; its colours on ~/mesh/vertex_colors
AUTO_CHECK_PERIOD = 0.5  # seconds between checks of the automatic mode
SIGNAL_CHECK_PERIOD = 0.1  # seconds the main thread waits for work before it looks for Ctrl-C
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
MARKER_QOS = QoSProfile(depth=MARKER_HISTORY, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Requests and goals wait here while the executor answers those before them: ROS's default of 10 drops the
# rest of a burst (a client without a timeout then waits forever); a busy node answers each one at once.
REQUEST_QUEUE = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.VOLATILE)


class ReconstructionNode(Node):

    def __init__(self):
        super().__init__(NODE_NAME)
        self._map_lock = threading.Lock()  # guards the map and its fingerprint
        self._map: Optional[CloudArrays] = None
        self._map_fingerprint = ''
        self._window_cache: Optional[WindowCache] = None  # made from window_cache_mb with the settings
        self._window_cache_mb = -1
        self._auto_done_fingerprint = ''  # the map the automatic mode last started on ('': none, or new settings)
        self._auto_last_start = -float('inf')
        self._node_parameters = NodeParameters(self, on_change=self._on_settings_changed)
        self._on_settings_changed()
        self._create_interface()
        self._slot = JobSlot(self.resolve_service_name('~/cancel'), self.get_logger().error)
        self._outlets = Outlets(self, self._publish_markers, MarkerBlocks(), self._stats_publisher.publish,
                                self._progress_publisher.publish, *self._mesh_msgs_outlets())
        settings = self._node_parameters.settings
        qos = self._map_subscription.qos_profile
        self.get_logger().info(
            f'ready: map from {self._input_topic} ({qos.reliability.name.lower()}, {qos.durability.name.lower()}), '
            f'service {self._service_name}, action {self._action_name}, mesh markers on {self._marker_topic}; '
            + (f'model {settings.checkpoint or "(shipped default)"} on {settings.device}'
               if not self._node_parameters.problem() else f'NOT READY: {self._node_parameters.problem()}'))

    def _publish_markers(self, array: NumpyMarkerArray) -> None:
        self._marker_publisher.publish(array.serialized())  # the wire format at once: no message objects

    def _create_interface(self) -> None:
        # Maps are converted in their own group so they keep arriving during a reconstruction;
        # the reentrant group lets a second request (refused), ~/cancel and the timer run meanwhile.
        map_group = MutuallyExclusiveCallbackGroup()
        work_group = ReentrantCallbackGroup()
        names = self._node_parameters.entity_name
        self._input_topic = names('input_topic', self.resolve_topic_name)
        self._map_subscription = self.create_subscription(
            PointCloud2, self._input_topic, self._on_map, self._node_parameters.input_qos(), callback_group=map_group,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos))
        self._marker_topic = names('marker_topic', self.resolve_topic_name)
        # A late display gets the history: the last whole mesh and the block updates after it.
        self._marker_publisher = self.create_publisher(MarkerArray, self._marker_topic, MARKER_QOS)
        self._stats_publisher = self.create_publisher(ReconstructionStats, '~/stats', LATCHED)
        self._progress_publisher = self.create_publisher(ReconstructionProgress, '~/progress', 10)
        self._service_name = names('service_name', self.resolve_service_name)
        self._service = self.create_service(ReconstructScene, self._service_name, self._on_reconstruct,
                                            qos_profile=REQUEST_QUEUE, callback_group=work_group)
        self._action_name = self.resolve_service_name(ACTION_NAME)
        self._action_server = ActionServer(
            self, ReconstructSceneAction, ACTION_NAME, execute_callback=self._on_goal,
            goal_callback=lambda goal: GoalResponse.ACCEPT, cancel_callback=self._on_goal_cancel,
            goal_service_qos_profile=REQUEST_QUEUE, result_service_qos_profile=REQUEST_QUEUE,
            cancel_service_qos_profile=REQUEST_QUEUE, callback_group=work_group)
        self._cancel_service = self.create_service(Trigger, '~/cancel', self._on_cancel, qos_profile=REQUEST_QUEUE,
                                                   callback_group=work_group)
        self._mesh_publishers = self._mesh_msgs_publishers()
        self._auto_timer = self.create_timer(AUTO_CHECK_PERIOD, self._on_auto_timer, callback_group=work_group)

    def _mesh_msgs_publishers(self) -> tuple:
        """The latched mesh_msgs publishers (geometry, vertex colours), or () where they are off or missing."""
        wanted, types = self._node_parameters.choice('mesh_msgs'), mesh_msgs_types()
        if wanted == 'off' or types is None:
            if wanted == 'on':
                self.get_logger().error('parameter mesh_msgs is on but the mesh_msgs package is not installed: '
                                        'the mesh goes out as markers only')
            return ()
        geometry, colors = types
        return (self.create_publisher(geometry, MESH_TOPIC, LATCHED),
                self.create_publisher(colors, f'{MESH_TOPIC}/vertex_colors', LATCHED))

    def _mesh_msgs_outlets(self) -> tuple:
        if not self._mesh_publishers:
            return ()
        geometry, colors = self._mesh_publishers
        return geometry.publish, colors.publish, f'{self.get_fully_qualified_name()}/mesh'

    # ------------------------------------------------------------------------------------ input

    def _on_map(self, msg: PointCloud2) -> None:
        try:
            cloud = cloud_to_arrays(msg)
        except Exception as error:  # any malformed message is dropped, never fatal
            with self._map_lock:
                kept = f'{self._map.num_points} points' if self._map is not None else 'none yet'
            self.get_logger().error(f'dropped a map message on {self._input_topic}: {error} '
                                    f'(keeping the last good map: {kept})')
            return
        digest = hashlib.blake2b(cloud.points.tobytes(), digest_size=16)
        if cloud.colors is not None:
            digest.update(cloud.colors.tobytes())
        fingerprint = f'{cloud.frame_id}:{digest.hexdigest()}'
        with self._map_lock:
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

    def _on_settings_changed(self) -> None:
        self._auto_done_fingerprint = ''  # new settings: automatic mode may run again
        settings = self._node_parameters.settings
        megabytes = settings.options.window_cache_mb if settings is not None else 0
        if megabytes != self._window_cache_mb:
            self._window_cache, self._window_cache_mb = window_cache(megabytes), megabytes

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
            self._slot.forget_goal(goal_handle)
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
        accepted = self._slot.cancel_goal(goal_handle)
        if self.context.ok():
            self.get_logger().warning(f'{self._action_name}: cancel of a goal '
                                      + ('accepted' if accepted else 'rejected: too late, its result is being '
                                                                     'published'))
        return CancelResponse.ACCEPT if accepted else CancelResponse.REJECT

    def _on_cancel(self, request, response):
        response.success, response.message = self._slot.cancel()
        self.get_logger().warning(response.message)
        return response

    def _serve(self, request, goal_handle=None) -> Outcome:
        """One request or goal: refused at once while another reconstruction runs."""
        def make_job():
            with self._map_lock:
                latest = self._map
            job = job_from_request(request, self._node_parameters.settings, latest, self._input_topic)
            if isinstance(job, Job):
                job.goal, job.cache = goal_handle, self._window_cache
            return job

        return self._slot.run(make_job, self._work)

    def _work(self, job: Job) -> Outcome:
        settings, model, problem = self._node_parameters.snapshot()
        if problem:
            return Outcome(False, problem)
        return run_job(job, settings, model, self._outlets)

    def _log_outcome(self, entry: str, outcome: Outcome) -> None:
        # (rclpy wants one severity per logging call site, hence two calls.)
        if not self.context.ok():
            pass  # shutting down (Ctrl-C during a job): nothing left to log to
        elif outcome.success:
            self.get_logger().info(f'{entry}: done: {outcome.message}')
        else:
            self.get_logger().warning(f'{entry}: failed: {outcome.message}')

    # ----------------------------------------------------------------------------- automatic mode

    def _on_auto_timer(self) -> None:
        settings = self._node_parameters.settings
        with self._map_lock:
            cloud, fingerprint = self._map, self._map_fingerprint
        due = (settings is not None and settings.options.auto_reconstruct and cloud is not None
               and fingerprint != self._auto_done_fingerprint
               and time.monotonic() - self._auto_last_start >= settings.options.auto_min_period)
        if not due:
            return

        def make_job() -> Job:
            self._auto_done_fingerprint, self._auto_last_start = fingerprint, time.monotonic()
            return Job(cloud=cloud, source=f'the map from {self._input_topic} (automatic)', cache=self._window_cache)

        outcome = self._slot.run_if_free(make_job, self._work)
        if outcome is None:
            return  # another job runs: try again at the next check
        if outcome.success:
            self.get_logger().info(f'automatic reconstruction done: {outcome.message}')
        else:
            self.get_logger().error(f'automatic reconstruction failed: {outcome.message}')

    def cancel_running_job(self) -> None:
        self._slot.cancel_running()


def window_cache(megabytes: int) -> Optional[WindowCache]:
    """The cache of `megabytes` (None for 0): three quarters for field blocks, what reuse needs, the rest for
    the adapted states of warm starts."""
    if not megabytes:
        return None
    return WindowCache(max_state_bytes=megabytes * 2**20 // 4, max_block_bytes=megabytes * 2**20 * 3 // 4)


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
