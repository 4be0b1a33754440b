"""The README's ROS 2 commands, typed as a user types them: `ros2 launch ...` and `ros2 service call ...`
run verbatim with the real ros2 command line (from ../shared/ros-tools), then Ctrl-C in the terminal.

They run the node as shipped (its model, the fast profile, the params file), on a small map.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.ros.client import LATCHED

from cloud_messages import arrays_to_cloud
from node_harness import RosClient

REPO = Path(__file__).resolve().parents[2]
ROS2 = shutil.which('ros2')
MISSING = ("the ros2 command line is not installed (it comes from ../shared/ros-tools, which "
           "scripts/run_tests.sh installs when that folder exists): the README's ros2 launch / service call "
           "lines and Ctrl-C under ros2 launch were NOT tested")
pytestmark = pytest.mark.skipif(ROS2 is None, reason=MISSING)
# What a terminal shows when Ctrl-C is not handled quietly.
NOISE = ('Traceback', 'KeyboardInterrupt', 'Exception ignored', 'process has died')


def readme_ros_commands() -> dict:
    """The `ros2 ...` lines of the README's "Using it with ROS 2" block, by verb, comments dropped."""
    text = (REPO / 'README.md').read_text()
    section = text[text.index('## Using it with ROS 2'):]
    block = section[section.index('```bash') + len('```bash'):]
    block = block[:block.index('```')]
    lines = [line.split('  #')[0].strip() for line in block.strip().splitlines()]
    commands = {' '.join(line.split()[:2]): line for line in lines if line.startswith('ros2 ')}
    assert {'ros2 launch', 'ros2 service'} <= set(commands), commands
    return commands


def small_map() -> np.ndarray:
    """A 1 m corner (floor and two walls), 2 cm apart: a few windows of the shipped settings."""
    u, v = (g.ravel() for g in np.meshgrid(np.arange(0, 1.0, 0.02), np.arange(0, 1.0, 0.02)))
    zero = np.zeros_like(u)
    return np.concatenate([np.c_[u, v, zero], np.c_[u, zero, v], np.c_[zero, u, v]]) + [0.1, 0.1, 0.0]


class Terminal:
    """A command started in a session of its own, as a terminal starts it: Ctrl-C reaches its whole
    process group."""

    def __init__(self, command: str, log: Path, cwd: Path):
        self.log = log
        self._file = open(log, 'wb')
        self.process = subprocess.Popen(['bash', '-c', command], stdout=self._file, stderr=subprocess.STDOUT,
                                        cwd=cwd, start_new_session=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0'))

    def text(self) -> str:
        return self.log.read_text(errors='replace')

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text()):
            assert self.process.poll() is None, f'exited before {pattern!r}:\n{self.text()[-3000:]}'
            assert time.monotonic() < deadline, f'no {pattern!r} within {timeout} s:\n{self.text()[-3000:]}'
            time.sleep(0.1)

    def ctrl_c(self, timeout: float = 30.0) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._file.close()


@pytest.fixture
def stop_daemon():
    yield
    # `ros2` may have started its discovery daemon (in this session's ROS_DOMAIN_ID): stop it.
    subprocess.run([ROS2, 'daemon', 'stop'], capture_output=True, timeout=30)


def test_the_readme_launch_and_service_call_lines_work_as_typed(tmp_path, ros_domain, stop_daemon):
    commands = readme_ros_commands()
    launch_line, call_line = commands['ros2 launch'], commands['ros2 service']
    topic = re.search(r'input_topic:=(\S+)', launch_line).group(1)
    written = Path(re.search(r'output_path: ([^,}]+)', call_line).group(1))
    before = written.stat().st_mtime if written.exists() else None

    launch = Terminal(launch_line, tmp_path / 'launch.log', tmp_path)
    client = RosClient('readme_map_publisher')
    try:
        launch.wait_for(r'ready: map from ' + re.escape(topic), timeout=120)
        publisher = client.node.create_publisher(PointCloud2, topic, LATCHED)
        points = small_map()
        publisher.publish(arrays_to_cloud(points, frame_id='map'))
        client.spin_until(lambda: f'map received: {len(points)} points' in launch.text(), 30)
        launch.wait_for(f'map received: {len(points)} points', timeout=5)

        call = subprocess.run(['bash', '-c', call_line], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert call.returncode == 0, call.stderr[-2000:]
        assert 'success=True' in call.stdout, call.stdout[-2000:]
        # A few readable lines: the response leaves the mesh out (before, 48 MB of vertices for 20 k points).
        assert len(call.stdout) < 64_000 and 'vertices=[]' in call.stdout, len(call.stdout)
        # The request's defaults gave the configured profile's optimisation, not a feed-forward run.
        steps = get_profile('auto', device='auto').optimization.iterations
        assert re.search(rf'iterations={steps}, steps_run=[1-9]', call.stdout), call.stdout[-3000:]
        assert written.is_file() and written.stat().st_mtime != before
        assert written.with_suffix('.png').read_bytes()[:4] == b'\x89PNG'
    finally:
        client.close()
        code = launch.ctrl_c()
        if before is None:  # the README's own path: leave nothing behind that was not there
            written.unlink(missing_ok=True)
            written.with_suffix('.png').unlink(missing_ok=True)
    output = launch.text()
    assert code == 0, output[-3000:]
    assert 'process has finished cleanly' in output, output[-3000:]
    assert not [word for word in NOISE if word in output], output[-3000:]
