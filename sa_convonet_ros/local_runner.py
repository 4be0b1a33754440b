"""The batches of a plan run in this process: one worker per device, in rounds of one batch per worker.

On GPUs each listed device is a worker. On a CPU, batches run side by side in threads (`cpu_workers`) that
share torch's threads out among them: torch releases the GIL in its kernels, and a step's many small
operations leave one batch's threads waiting on each other. Each worker holds its own copy of the model.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from functools import partial
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch

from .config import MeshingConfig, ReconstructionConfig
from .devices import resolve_devices
from .errors import ReconstructionCancelled
from .model import ConvONet
from .optimize import WindowEnsemble
from .planning import PlannedBatch, WindowPlan
from .runners import (
    BatchResult,
    ProgressTally,
    StageClock,
    batch_result,
    evaluate_batch,
    load_on,
    optimize_batch,
    window_block,
)

T = TypeVar("T")

# Batches of windows side by side on a 2-core CPU, one torch thread each: 0.87x the time of one batch at a
# time on both threads for the whole CLI run (sparse room 100001; docs/benchmarks.md, "Batches side by side
# on a CPU"): the steps' small operations leave two threads waiting on each other.
AUTO_CPU_WORKERS = 2


class LocalRunner:
    """Batches on this process's devices, one worker each (the contract of runners.BatchRunner)."""

    def __init__(self, devices: list[torch.device], threads: int | None = None) -> None:
        self.devices = devices  # one worker each
        self.threads = threads  # torch's threads while the batches run (None: as they are)
        self.replicas: list[ConvONet] = []

    @classmethod
    def for_config(cls, config: ReconstructionConfig) -> "LocalRunner":
        """The workers `device` and `cpu_workers` ask for."""
        return cls(*cpu_workers(resolve_devices(config.device), config.cpu_workers))

    @property
    def round_size(self) -> int:
        return len(self.devices)  # one batch per worker

    def load(self, model: ConvONet | None, checkpoint: str | None) -> ConvONet:
        self.replicas = model_replicas(model, checkpoint, self.devices)
        return self.replicas[0]

    def run(self, plan: WindowPlan, points: np.ndarray, config: ReconstructionConfig, tally: ProgressTally,
            stop: threading.Event, clock: StageClock, encoder_points: np.ndarray | None = None,
            deadline: float | None = None) -> Iterator[BatchResult]:
        """Every batch of the plan, in its order, as it finishes: the UCE optimisation of its windows (until
        `deadline`), then their field blocks; in rounds of one batch per worker, run side by side. torch's
        threads are shared out among the workers until the last batch is taken (or the run is closed)."""
        if not self.replicas:
            raise RuntimeError("LocalRunner.run before load")
        keep_states, replicas = plan.settings_id is not None, self.replicas
        with torch_threads(self.threads):
            for first in range(0, len(plan.batches), len(replicas)):
                batches = plan.batches[first:first + len(replicas)]
                with clock.stage("optimize"):
                    ensembles = side_by_side([partial(optimize_batch, batch, replica, plan, points,
                                                      config.optimization, on_step=tally.on_step, cancel=stop,
                                                      deadline=deadline, encoder_points=encoder_points)
                                              for batch, replica in zip(batches, replicas)], stop)
                with clock.stage("field"):
                    if all(device.type == "cpu" for device in self.devices):
                        results = windows_side_by_side(batches, ensembles, plan, points, config.meshing, keep_states,
                                                       stop, len(batches))
                    else:  # each device decodes its own batch's windows, where their networks are
                        results = side_by_side([partial(evaluate_batch, batch, ensemble, plan, points,
                                                        config.meshing, keep_states, stop)
                                                for batch, ensemble in zip(batches, ensembles)], stop)
                del ensembles  # the round's networks go before the next round's are made
                for _ in batches:
                    tally.advance("field")
                if stop.is_set():
                    raise ReconstructionCancelled("reconstruction cancelled")
                yield from results

    def describe(self) -> str:
        return ",".join(str(device) for device in self.devices)

    def traffic(self) -> dict:
        return {}


def cpu_workers(devices: list[torch.device], workers: int) -> tuple[list[torch.device], int | None]:
    """The devices the batches run on, one worker each, and torch's threads while they run (None: as they
    are). A lone CPU gets `workers` workers (0: AUTO_CPU_WORKERS, at most one per torch thread); on a list of
    CPUs (`cpu,cpu`) each item is a worker. CPU workers share torch's threads out among them."""
    if any(device.type != "cpu" for device in devices):
        return devices, None
    threads = torch.get_num_threads()
    if len(devices) == 1:
        devices = devices * (workers or max(1, min(AUTO_CPU_WORKERS, threads)))
    return devices, (max(1, threads // len(devices)) if len(devices) > 1 else None)


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's intra-op threads set to `count` inside the block (None: left alone), restored after it."""
    saved = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def model_replicas(model: ConvONet | None, checkpoint: str | None, devices: list[torch.device]) -> list[ConvONet]:
    """One model per device (the given one, else the checkpoint's, on the first)."""
    model = load_on(model, checkpoint, devices[0])
    # One model per worker, even on the same device: functional_call swaps a module's parameters
    # while it runs, so two threads must never share one.
    return [model] + [copy.deepcopy(model).to(d) for d in devices[1:]]


def windows_side_by_side(batches: list[PlannedBatch], ensembles: list[WindowEnsemble], plan: WindowPlan,
                         points: np.ndarray, meshing: MeshingConfig, keep_states: bool, stop: threading.Event,
                         workers: int) -> list[BatchResult]:
    """The round's batch results, their windows' field blocks decoded by `workers` threads that each take the
    next window of any batch: no thread waits for another's last batch to end (on a dense room, one core stood
    idle for a third of the field stage when each thread decoded its own batch)."""
    tasks = [(number, slot) for number, batch in enumerate(batches) for slot in range(len(batch.windows))]
    blocks = [[None] * len(batch.windows) for batch in batches]
    taken = itertools.count()  # next() of a count is atomic under the GIL: each task goes to one thread

    def decode_windows() -> None:
        while (index := next(taken)) < len(tasks):
            number, slot = tasks[index]
            blocks[number][slot] = window_block(batches[number], ensembles[number], slot, plan, points, meshing,
                                                stop)

    side_by_side([decode_windows] * max(1, min(workers, len(tasks))), stop)
    return [batch_result(batch, ensemble, batch_blocks, keep_states)
            for batch, ensemble, batch_blocks in zip(batches, ensembles, blocks)]


def side_by_side(tasks: list[Callable[[], T]], stop: threading.Event) -> list[T]:
    """The results of the tasks, run at once in one thread each (torch releases the GIL in its kernels).
    When one fails, `stop` tells the others to end at their next step, and its error is raised."""
    if len(tasks) == 1:
        return [tasks[0]()]
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(task) for task in tasks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in done if future.exception() is not None]
        if failed:
            stop.set()
            raise failed[0].exception()
        return [future.result() for future in futures]
