"""Run the installed reconstruction node as its own process and talk to it with rclpy (demo and tests).

The node is started exactly as launch/reconstruct.launch.py starts it: the installed executable
lib/sa_convonet_ros/reconstruction_node with `--ros-args --params-file <share>/config/reconstruct.yaml`,
plus `-p name:=value` overrides. Its console output goes to a log file that tests can search.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor

PACKAGE = 'sa_convonet_ros'
EXECUTABLE = 'reconstruction_node'
NODE_NAME = 'sa_convonet_reconstruction'


def install_prefix() -> Path:
    prefix = os.environ.get('SA_CONVONET_ROS_PREFIX')
    if not prefix:
        raise RuntimeError('SA_CONVONET_ROS_PREFIX is not set: source scripts/ros_env.sh (or use '
                           'scripts/run_tests.sh) so the installed node can be found')
    return Path(prefix)


def node_executable() -> Path:
    return install_prefix() / 'lib' / PACKAGE / EXECUTABLE


def installed_params_file() -> Path:
    return install_prefix() / 'share' / PACKAGE / 'config' / 'reconstruct.yaml'


def ros_arg(value) -> str:
    """A parameter value as `-p name:=value` text (parsed as YAML by rcl)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return repr(value)
    return str(value)


class NodeProcess:
    """The reconstruction node in a child process; a context manager that always stops it."""

    def __init__(self, log_path: Path, parameters: dict | None = None, remappings: dict | None = None,
                 params_file: Path | None = None, torch_threads: int | None = None):
        self.log_path = Path(log_path)
        self.command = [str(node_executable()), '--ros-args',
                        '--params-file', str(params_file or installed_params_file())]
        for name, value in (parameters or {}).items():
            self.command += ['-p', f'{name}:={ros_arg(value)}']
        for old, new in (remappings or {}).items():
            self.command += ['-r', f'{old}:={new}']
        self.torch_threads = torch_threads
        self.process: subprocess.Popen | None = None

    def start(self) -> 'NodeProcess':
        env = dict(os.environ)
        # Unbuffered, so the log file can be read while the node runs.
        env.update(PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
        if self.torch_threads:
            env['OMP_NUM_THREADS'] = str(self.torch_threads)
        self._log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.log_path.parent)
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
    """An rclpy context, node and executor of the test process, with waiting helpers."""

    def __init__(self, name: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

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
