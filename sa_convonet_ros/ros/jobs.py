"""What one reconstruction of the node is, and the one slot the node runs them in.

A `Job` is one request, goal or automatic run: its cloud and options, how far it got, whether it may still
be cancelled. It ends in one of two ways, decided at one instant under the job's lock: it is cancelled, and
then nothing is published and no file is left; or it commits, and from then on it publishes and moves its
files into place (outputs.py) while a cancel request is answered "too late".

The `JobSlot` runs one job at a time for the service, the action and the automatic mode alike: a job that
finds it taken is answered "busy" at once; a cancel reaches the running job, or an action goal before its
job starts. `ProgressReporter` turns the core's progress calls into messages, action feedback and logs.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from shape_msgs.msg import Mesh

from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
from sa_convonet_ros.cache import WindowCache
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.ros.pointcloud2 import CloudArrays, cloud_to_arrays
from sa_convonet_ros.ros.settings import Settings

PROGRESS_LOG_PERIOD = 2.0  # seconds between progress log lines within one stage
UINT32_MAX = 2**32 - 1


@dataclass
class Job:
    """One reconstruction: what to reconstruct and how far it got."""

    cloud: CloudArrays
    source: str  # where the cloud came from, for messages
    region: Optional[tuple] = None
    iterations: Optional[int] = None  # None = the configured value
    max_seconds: Optional[float] = None  # None = the node's max_seconds; 0 = no budget
    output_path: str = ''
    write_preview: bool = False
    omit_mesh: bool = False  # the answer without the mesh (it is still published)
    cache: Optional[WindowCache] = None
    goal: Any = None  # the action goal handle, when the job came from the action
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    stage: str = 'prepare'
    committed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request_cancel(self) -> bool:
        """Cancel the job unless it has committed to publishing; whether the cancel takes effect."""
        with self._lock:
            if self.committed:
                return False
            self.cancel.set()
            return True

    def commit(self) -> bool:
        """Commit to publishing unless the job was cancelled; whether it may publish."""
        with self._lock:
            if self.cancel.is_set():
                return False
            self.committed = True
            return True

    def deadline(self, default_seconds: float) -> Optional[float]:
        """The time.monotonic() at which the optimisation must stop, or None without a budget."""
        seconds = default_seconds if self.max_seconds is None else self.max_seconds
        return self.started + seconds if seconds > 0 else None


@dataclass
class Outcome:
    success: bool
    message: str
    mesh: Mesh = field(default_factory=Mesh)
    stats: ReconstructionStats = field(default_factory=ReconstructionStats)
    cancelled: bool = False


class JobSlot:
    """One job at a time, whichever entry point it came from. `cancel_service` is named in the busy answer;
    `log_error` hears of a job that failed by a bug."""

    def __init__(self, cancel_service: str, log_error: Callable[[str], None]) -> None:
        self._cancel_service, self._log_error = cancel_service, log_error
        self._busy = threading.Lock()  # held while a job runs
        self._lock = threading.Lock()  # a job's start against the cancel of its action goal
        self._job: Optional[Job] = None
        self._cancelled_goals: set = set()  # ids of action goals cancelled before their job started

    def run(self, make_job: Callable[[], Union[Job, Outcome]], work: Callable[[Job], Outcome]) -> Outcome:
        """`work` on the job `make_job` makes, unless another job holds the slot ("busy", at once: before even
        a request's cloud is converted) or `make_job` says why it cannot run. Never raises: a bug costs one
        job, not the node."""
        if not self._busy.acquire(blocking=False):
            return Outcome(False, self.busy_message())
        return self._hold(make_job, work)

    def run_if_free(self, make_job: Callable[[], Union[Job, Outcome]],
                    work: Callable[[Job], Outcome]) -> Optional[Outcome]:
        """As `run`, but None (and nothing done) when the slot is taken: the automatic mode tries later."""
        if not self._busy.acquire(blocking=False):
            return None
        return self._hold(make_job, work)

    def _hold(self, make_job, work) -> Outcome:
        try:
            job = make_job()
            if isinstance(job, Outcome):
                return job
            if not self._start(job):
                return Outcome(False, 'cancelled before it started', cancelled=True)
            return work(job)
        except Exception as error:  # a bug must cost one job, not the node
            self._log_error(f'internal error: {type(error).__name__}: {error}')
            return Outcome(False, f'internal error: {type(error).__name__}: {error}')
        finally:
            self._job = None
            self._busy.release()

    def _start(self, job: Job) -> bool:
        """Make `job` the running one; False when its action goal was cancelled before it started."""
        with self._lock:
            if job.goal is not None and goal_key(job.goal) in self._cancelled_goals:
                return False
            self._job = job
            return True

    def busy_message(self) -> str:
        job = self._job
        if job is None:
            return 'busy: another reconstruction is starting; try again later'
        return (f'busy: a reconstruction of {job.source} has been running for '
                f'{time.monotonic() - job.started:.1f} s (stage: {job.stage}); only one runs at a time. '
                f'Try again when it is done, or cancel it with {self._cancel_service}')

    def cancel(self) -> tuple[bool, str]:
        """Cancel the running job (the ~/cancel service): whether it took effect, and what to answer."""
        job = self._job
        if job is None:
            return False, 'no reconstruction is running'
        if job.request_cancel():
            return True, (f'cancelling the reconstruction of {job.source} (running for '
                          f'{time.monotonic() - job.started:.1f} s, stage: {job.stage}); nothing of it will be '
                          'published')
        return False, (f'too late to cancel: the reconstruction of {job.source} has finished and its result is '
                       f'being published (stage: {job.stage})')

    def cancel_goal(self, goal_handle) -> bool:
        """The standard action cancel: accepted while the goal's job can still be stopped (or has not
        started), rejected once it has committed to publishing its result."""
        with self._lock:
            job = self._job
            if job is not None and job.goal is goal_handle:
                return job.request_cancel()
            if goal_handle.is_active:
                self._cancelled_goals.add(goal_key(goal_handle))
                return True
            return False

    def forget_goal(self, goal_handle) -> None:
        """The goal has ended: a cancel recorded for it is no longer needed."""
        with self._lock:
            self._cancelled_goals.discard(goal_key(goal_handle))

    def cancel_running(self) -> None:
        job = self._job
        if job is not None:
            job.request_cancel()


def goal_key(goal_handle) -> bytes:
    return bytes(goal_handle.goal_id.uuid)


# ---------------------------------------------------------------------------------------- requests

def job_from_request(request, settings: Optional[Settings], latest_map: Optional[CloudArrays],
                     map_topic: str) -> Union[Job, Outcome]:
    """The Job a service request (or action goal) asks for, or the Outcome that says why it cannot run."""
    refusal = _refusal(request, settings)
    if refusal:
        return Outcome(False, refusal)
    if _carries_a_cloud(request.cloud):
        try:
            cloud = cloud_to_arrays(request.cloud)
        except Exception as error:  # any malformed cloud gets an answer, never a crash
            return Outcome(False, f'the cloud in the request is unusable: {error}')
        source = 'the cloud in the request'
    elif latest_map is None:
        return Outcome(False, f'no map received yet on {map_topic} and the request carries no cloud')
    else:
        cloud, source = latest_map, f'the map from {map_topic}'
    region = None
    if request.use_region:
        low, high = request.region_min, request.region_max
        region = ((low.x, low.y, low.z), (high.x, high.y, high.z))
    return Job(cloud=cloud, source=source, region=region,
               iterations=None if request.iterations == -1 else request.iterations,
               max_seconds=None if request.max_seconds == -1 else float(request.max_seconds),
               output_path=request.output_path.strip(), write_preview=request.write_preview,
               omit_mesh=request.omit_mesh)


def _refusal(request, settings: Optional[Settings]) -> str:
    """Why the request's iterations or time budget cannot be run ('' when they can)."""
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


def _carries_a_cloud(cloud) -> bool:
    """Whether a request holds a cloud (which must then be readable): any point or any byte of data.
    Only a cloud with neither stands for "the latest map"."""
    return cloud.width * cloud.height > 0 or len(cloud.data) > 0


# ---------------------------------------------------------------------------------------- progress

class ProgressReporter:
    """Turns the core's progress(stage, done, total) calls into ~/progress messages, action feedback
    (for a job that came from the action) and log lines."""

    # Overall fraction at the start and end of each stage (optimisation and field evaluation
    # alternate per batch of windows, so they share one range).
    RANGES = {'prepare': (0.0, 0.05), 'optimize': (0.05, 0.85), 'field': (0.05, 0.85),
              'mesh': (0.85, 0.9), 'messages': (0.9, 0.95), 'write': (0.95, 1.0)}

    def __init__(self, node, job: Job, frame_id: str, publish: Callable[[ReconstructionProgress], None]):
        self._node, self._job, self._frame_id = node, job, frame_id
        self._publish_progress = publish
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
            return  # shutting down: publishers are gone
        # uint32 fields: a count beyond them is reported as their largest value, never wrapped.
        msg = ReconstructionProgress(stage=stage, done=min(max(int(done), 0), UINT32_MAX),
                                     total=min(max(int(total), 0), UINT32_MAX),
                                     fraction=float(self._fraction), message=message)
        msg.header.frame_id = self._frame_id
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._publish_progress(msg)
        if self._job.goal is not None:
            self._job.goal.publish_feedback(ReconstructSceneAction.Feedback(progress=msg))
