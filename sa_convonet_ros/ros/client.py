"""Driving the installed node from another process: start it as the launch file does, reach its services
and topics with rclpy, and publish a map to it. The demo, the benchmarks and the node's tests use this.

Needs the environment of scripts/ros_env.sh (or a sourced ROS 2 workspace holding this package), which
says where the package is installed (SA_CONVONET_ROS_PREFIX).
"""
from __future__ import annotations

import array
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import PointCloud2, PointField

from sa_convonet_ros.ros.node import LATCHED
from sa_convonet_ros.ros.settings import NODE_NAME

__all__ = ['EXECUTABLE', 'LATCHED', 'NODE_NAME', 'PACKAGE', 'NodeProcess', 'RosClient', 'install_prefix',
           'map_message']

PACKAGE = 'sa_convonet_ros'
EXECUTABLE = 'reconstruction_node'


def install_prefix() -> Path:
    prefix = os.environ.get('SA_CONVONET_ROS_PREFIX')
    if not prefix:
        raise RuntimeError('SA_CONVONET_ROS_PREFIX is not set: source scripts/ros_env.sh (or use '
                           'scripts/demo.sh) so the installed node can be found')
    return Path(prefix)


def ros_arg(value) -> str:
    """A parameter value as `-p name:=value` text (parsed as YAML by rcl)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return repr(value)
    return str(value)


class NodeProcess:
    """The installed reconstruction node in a child process, started as the launch file starts it (the
    installed params file, plus `-p name:=value` overrides); its console output goes to a log file.
    A context manager that always stops it."""

    def __init__(self, log_path: Path, parameters: dict | None = None):
        self.log_path = Path(log_path)
        params_file = install_prefix() / 'share' / PACKAGE / 'config' / 'reconstruct.yaml'
        self.command = [str(install_prefix() / 'lib' / PACKAGE / EXECUTABLE), '--ros-args',
                        '--params-file', str(params_file)]
        for name, value in (parameters or {}).items():
            self.command += ['-p', f'{name}:={ros_arg(value)}']
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict:
        # Unbuffered, so the log file can be read while the node runs.
        return dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')

    def start(self) -> 'NodeProcess':
        self._log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=self.environment(), cwd=self.log_path.parent)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def log_tail(self, lines: int = 40) -> str:
        return '\n'.join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match:
        """First match of a regular expression in the log after character `start`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(self.log_text(), start)
            if match:
                return match
            if not self.alive:
                raise AssertionError(f'node exited (code {self.process.returncode}) before logging '
                                     f'{pattern!r}; log:\n{self.log_tail()}')
            if time.monotonic() > deadline:
                raise AssertionError(f'node did not log {pattern!r} within {timeout} s; log:\n{self.log_tail()}')
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C (SIGINT) like `ros2 launch` does; SIGKILL if it does not end in time."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> 'NodeProcess':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RosClient:
    """An rclpy context, node and executor of this process, with waiting helpers."""

    def __init__(self, name: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float) -> bool:
        """Process callbacks until predicate() is true (returns True) or the timeout (False)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(remaining, 0.05))
        return True

    def wait_for_service(self, client, timeout: float, process: NodeProcess | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not client.wait_for_service(timeout_sec=0.2):
            if process is not None and not process.alive:
                raise AssertionError(f'node exited while waiting for {client.srv_name}:\n{process.log_tail()}')
            if time.monotonic() > deadline:
                tail = process.log_tail() if process is not None else ''
                raise AssertionError(f'service {client.srv_name} not available within {timeout} s\n{tail}')

    def call(self, client, request, timeout: float, process: NodeProcess | None = None):
        future = client.call_async(request)
        self.spin_until(future.done, timeout)
        if not future.done():
            client.remove_pending_request(future)
            tail = process.log_tail() if process is not None else ''
            raise AssertionError(f'no answer from {client.srv_name} within {timeout} s\n{tail}')
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def map_message(points: np.ndarray, colors: np.ndarray, frame_id: str = 'map') -> PointCloud2:
    """The map as PCL-based mappers publish it: x, y, z FLOAT32 and the colour packed in a FLOAT32 rgb."""
    names = ('x', 'y', 'z', 'rgb')
    records = np.zeros(len(points), dtype={'names': names, 'formats': ['<f4', '<f4', '<f4', '<u4']})
    for axis, name in enumerate('xyz'):
        records[name] = points[:, axis]
    channels = np.clip(np.rint(np.asarray(colors, dtype=np.float64) * 255.0), 0, 255).astype(np.uint32)
    records['rgb'] = (channels[:, 0] << 16) | (channels[:, 1] << 8) | channels[:, 2]  # the bits of the float
    msg = PointCloud2(height=1, width=len(points), is_bigendian=False, point_step=records.itemsize,
                      row_step=records.nbytes, is_dense=bool(np.isfinite(points).all()))
    msg.header.frame_id = frame_id
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(names)]
    msg.data = array.array('B', records.tobytes())
    return msg
