"""The node runner and rclpy client of sa_convonet_ros.ros.client, with what only the tests need:
remappings, a torch thread count for the node, and spinning for a while."""
from __future__ import annotations

from pathlib import Path

from sa_convonet_ros.ros import client
from sa_convonet_ros.ros.client import EXECUTABLE, NODE_NAME, PACKAGE, install_prefix

__all__ = ['EXECUTABLE', 'NODE_NAME', 'PACKAGE', 'NodeProcess', 'RosClient', 'install_prefix']


class NodeProcess(client.NodeProcess):
    def __init__(self, log_path: Path, parameters: dict | None = None, remappings: dict | None = None,
                 torch_threads: int | None = None):
        super().__init__(log_path, parameters)
        for old, new in (remappings or {}).items():
            self.command += ['-r', f'{old}:={new}']
        self.torch_threads = torch_threads

    def environment(self) -> dict:
        environment = super().environment()
        if self.torch_threads:
            environment['OMP_NUM_THREADS'] = str(self.torch_threads)
        return environment


class RosClient(client.RosClient):
    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)
