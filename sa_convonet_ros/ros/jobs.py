"""What one reconstruction of the node is: its request, how far it got, whether it may still be
cancelled, its progress reports and its output files.

A job ends in one of two ways, decided at one instant under the job's lock: it is cancelled, and then
nothing is published and no file is left; or it commits, and from then on it publishes and moves
its files into place while a cancel request is answered "too late". Files are therefore written
under temporary names beside their final ones and only renamed after the commit.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from shape_msgs.msg import Mesh

from sa_convonet_ros.action import ReconstructScene as ReconstructSceneAction
from sa_convonet_ros.io import write_mesh
from sa_convonet_ros.msg import ReconstructionProgress, ReconstructionStats
from sa_convonet_ros.pipeline import WindowCache
from sa_convonet_ros.ros.pointcloud2 import CloudArrays

PROGRESS_LOG_PERIOD = 2.0  # seconds between progress log lines within one stage
UINT32_MAX = 2**32 - 1


class OutputError(Exception):
    """An output file could not be written (the message says "could not write ...")."""


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


@dataclass
class StagedFiles:
    """Output files written under temporary names beside their final ones (temporary, final)."""

    moves: list = field(default_factory=list)

    @classmethod
    def write(cls, mesh, path: Path, preview: Optional[Path]) -> 'StagedFiles':
        """The mesh (and its PNG preview) written under temporary names; OutputError when that fails."""
        staged = cls()
        target = path
        try:
            temporary = _temporary_name(path)
            staged.moves.append((temporary, path))
            write_mesh(mesh, temporary)
            if preview is not None:
                # Imported here: the renderer pulls in libraries that most runs never need.
                from sa_convonet_ros.preview import render_mesh_png
                target, temporary = preview, _temporary_name(preview)
                staged.moves.append((temporary, preview))
                render_mesh_png(mesh, temporary, title=path.name)
        except (OSError, ValueError) as error:
            staged.discard()
            reason = getattr(error, 'strerror', None) or str(error).replace(str(temporary), str(target))
            raise OutputError(f'could not write {target}: {reason}') from None
        return staged

    def move_into_place(self) -> None:
        for temporary, final in self.moves:
            try:
                os.replace(temporary, final)
            except OSError as error:
                self.discard()
                raise OutputError(f'could not write {final}: {error.strerror or error}') from None

    def discard(self) -> None:
        for temporary, _ in self.moves:
            Path(temporary).unlink(missing_ok=True)


def _temporary_name(path: Path) -> Path:
    # Hidden, beside the final file (so the rename stays on one file system), with the same suffix
    # (the writers choose the format by it).
    return path.with_name(f'.{path.stem}.partial-{os.getpid()}{path.suffix}')


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
