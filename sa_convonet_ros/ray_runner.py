"""The batches of a plan run on Ray workers: past one machine (the contract of runners.BatchRunner).

`reconstruct` runs its batches here instead of in its own process when `ray_address` is set ('local': a Ray
runtime started on this machine; else the address of a running cluster). Everything else stays on the
driver: the points are prepared and the windows planned there, and the field blocks come back to it, in
batch order, into the same `mesh_blocks` / `StreamingMesher` as in one process. A worker runs the same
`optimize_batch` and `evaluate_batch` as the single process, with the batch's own seed, on the same points, so
the mesh is the same.

    connect(config)             -> RayRunner: Ray imported and reached (ReconstructionError when it cannot be)
    RayRunner.run(...)          -> BatchResults in batch order, like LocalRunner.run
      RayRunner._workers           the workers: kept from the last run, or started with the model's weights
      BatchWorker (a Ray actor)    the model's weights received once; then batch after batch:
        batch_input(...)           what a batch needs: its windows' points (only those), the grid, the band
        BatchWorker.run            optimize_batch + evaluate_batch; the blocks packed (pack_block)
      unpack_block                 the block as it was, on the driver

What travels per batch: in, the points of its windows' crops (float64, each point once per batch, however
many of its windows' crops hold it) and each window's indices into them (int32); out, each block's
grid points within the band of the points, as float32 logits, with a bit mask of where they are (the
rest of a block is EMPTY_LOGIT, which the driver fills back in: lossless). With a `WindowCache` (the node's
automatic mode) the windows' adapted states travel too, in for a warm start and out to be cached: with
`optimize_features`, 16 MB a window (its feature grid's change, float16 at 64³). The model's weights travel
once per worker through Ray's object store, whatever model the driver holds (a checkpoint's, the shipped
one or one built in memory), so workers need no files of their own; they need this package installed.

Workers compute on their CPUs, `ray_threads` torch threads each (a cluster's GPUs are not used yet).
The workers stay up for the process's next reconstruction with the same model (`release_workers` ends
them). Cancelling (`stop`) ends them at once (their running batches too); a deadline is handed to the workers
as wall-clock time, so a cluster's clocks should agree (NTP) to within what the deadline is meant to hold.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from .cache import model_fingerprint
from .config import MeshingConfig, ModelConfig, OptimizationConfig, ReconstructionConfig
from .devices import resolve_devices
from .errors import ReconstructionCancelled, ReconstructionError
from .meshing import EMPTY_LOGIT
from .model import ConvONet
from .optimize import WindowState
from .planning import PlannedBatch, WindowPlan
from .runners import BatchResult, ProgressTally, StageClock, evaluate_batch, load_on, optimize_batch
from .windows import WindowSet

BATCHES_PER_WORKER = 2  # queued on a worker at once: the next batch's points arrive while one runs
POLL_SECONDS = 0.1  # how often the driver looks at `stop` while it waits
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before giving up


# ------------------------------------------------------------------------------------------ connecting

def connect(config: ReconstructionConfig) -> "RayRunner":
    """Ray imported, connected (a local runtime started for 'local') and the workers sized; a
    ReconstructionError in one line when Ray is not installed, the address cannot be reached or the
    cluster has too few CPUs. A process already connected to Ray keeps that connection."""
    try:
        import ray
    except ImportError:
        raise ReconstructionError("ray_address is set but Ray is not installed: pip install "
                                  "'sa_convonet_ros[ray]' (or leave ray_address empty)") from None
    address = config.ray_address.strip()
    threads = config.ray_threads
    if not ray.is_initialized():
        if address == "local":
            cpus = max(os.cpu_count() or 1, config.ray_workers * threads)
            options, failure = {"num_cpus": cpus, "include_dashboard": False}, "cannot start a local Ray runtime"
        else:
            _check_reachable(address)
            options, failure = {"address": address}, f"cannot connect to the Ray cluster at {address!r}"
        try:
            ray.init(logging_level=logging.WARNING, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ReconstructionError(f"{failure}: {_first_line(error)}") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    workers = config.ray_workers or cpus // threads
    if workers < 1 or workers * threads > cpus:
        raise ReconstructionError(f"the Ray cluster has {cpus} CPU(s): too few for {max(workers, 1)} worker(s) of "
                                  f"{threads} thread(s) (ray_workers, ray_threads)")
    return RayRunner(ray, address, workers, threads, resolve_devices(config.device))


def _check_reachable(address: str) -> None:
    """Fail fast where Ray itself would retry for minutes: a HOST:PORT nobody answers on."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto' and the like: Ray resolves (and reports) them itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise ReconstructionError(f"cannot reach the Ray cluster at {address!r}: {error.strerror or error}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ------------------------------------------------------------------------------------ what travels

@dataclass
class BatchInput:
    """One batch as a worker sees it: a plan of just its windows, over just their points."""

    batch: PlannedBatch  # the batch, its windows renumbered 0 .. k-1 (its number, and so its seed, unchanged)
    plan: WindowPlan  # the grid and band of the whole plan; windows: the batch's, crops indexing `points`
    points: np.ndarray  # (M, 3) float64: every point of the windows' crops, once
    encoder_points: np.ndarray | None  # the same points as measured, when the encoder sees those

    @property
    def nbytes(self) -> int:
        crops = sum(crop.nbytes for crop in self.plan.windows.crop_points)
        return self.points.nbytes + crops + (0 if self.encoder_points is None else self.encoder_points.nbytes)


def batch_input(plan: WindowPlan, batch: PlannedBatch, points: np.ndarray,
              encoder_points: np.ndarray | None = None) -> BatchInput:
    """The batch's windows with their crops' points, in the order the crops hold them (so the windows see
    exactly what they see in one process)."""
    crops = [plan.windows.crop_points[w] for w in batch.windows]
    used = np.unique(np.concatenate(crops))
    index_type = np.int32 if len(used) < np.iinfo(np.int32).max else np.int64
    windows = WindowSet(plan.windows.index[batch.windows], [np.searchsorted(used, crop).astype(index_type)
                                                          for crop in crops],
                        plan.windows.near_counts[batch.windows], 0)
    own = dataclasses.replace(batch, windows=list(range(len(batch.windows))))
    band = plan.band[used] if isinstance(plan.band, np.ndarray) else plan.band  # per point: the used ones'
    # the driver's plan with only this batch: every other setting of it (the loss margin, ...) travels as it is
    clearance = None if plan.clearance is None else plan.clearance.among(used)
    work = dataclasses.replace(plan, windows=windows, band=band, reused={}, batches=[own], clearance=clearance)
    return BatchInput(own, work, points[used], None if encoder_points is None else encoder_points[used])


@dataclass
class PackedBlock:
    """A field block without its empty grid points: the band's logits and a bit mask of where they are."""

    shape: tuple[int, int, int]
    mask: np.ndarray  # uint8, np.packbits of the (cells,)^3 mask, C order
    values: np.ndarray  # float32 logits where the mask is set

    @property
    def nbytes(self) -> int:
        return self.mask.nbytes + self.values.nbytes


def pack_block(block: np.ndarray) -> PackedBlock:
    mask = block != EMPTY_LOGIT
    return PackedBlock(block.shape, np.packbits(mask), block[mask])


def unpack_block(packed: PackedBlock) -> np.ndarray:
    """The block exactly as packed: grid points outside the mask hold EMPTY_LOGIT, as they did."""
    size = int(np.prod(packed.shape))
    mask = np.unpackbits(packed.mask, count=size).view(bool).reshape(packed.shape)
    block = np.full(packed.shape, EMPTY_LOGIT, dtype=np.float32)
    block[mask] = packed.values
    return block


@dataclass
class BatchOutput:
    """What a worker sends back for one batch."""

    number: int
    blocks: list[PackedBlock]
    states: list[WindowState] | None
    final_loss: float
    steps_run: int
    out_of_time: bool
    seconds: float  # the worker's time on the batch (optimisation and field)
    window_steps: int = 0  # steps summed over the batch's windows


# ---------------------------------------------------------------------------------------------- worker

def model_weights(model: ConvONet) -> dict[str, Any]:
    """The model as plain data: its architecture and its weights on the CPU."""
    return {"model_config": dataclasses.asdict(model.config),
            "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}}


class BatchWorker:
    """A Ray actor (`ray.remote(BatchWorker)`): the model built once from its weights, on the CPU with
    `threads` torch threads; then one batch at a time, as in one process."""

    def __init__(self, weights: dict[str, Any], threads: int) -> None:
        torch.set_num_threads(threads)
        self.model = ConvONet(ModelConfig(**weights["model_config"]))
        self.model.load_state_dict(weights["model"])
        self.model.eval()

    def run(self, work: BatchInput, optimization: OptimizationConfig, meshing: MeshingConfig, keep_states: bool,
            wall_deadline: float | None) -> BatchOutput:
        start = time.perf_counter()
        deadline = None if wall_deadline is None else time.monotonic() + (wall_deadline - time.time())
        ensemble = optimize_batch(work.batch, self.model, work.plan, work.points, optimization,
                                encoder_points=work.encoder_points, deadline=deadline)
        result = evaluate_batch(work.batch, ensemble, work.plan, work.points, meshing, keep_states)
        return BatchOutput(work.batch.number, [pack_block(block) for block in result.blocks], result.states,
                         result.final_loss, result.steps_run, result.out_of_time, time.perf_counter() - start,
                         result.window_steps)


# ---------------------------------------------------------------------------------------------- driver

@dataclass
class Traffic:
    """What a run moved and cost, summed over its batches (bytes as sent through Ray's object store)."""

    batches: int = 0
    windows: int = 0
    bytes_in: int = 0  # the batches' points and crop indices
    bytes_out: int = 0  # the packed blocks
    bytes_out_dense: int = 0  # the same blocks whole (cells^3 float32)
    worker_seconds: float = 0.0  # the workers' time on the batches, summed
    seconds_to_first_result: float = 0.0  # the first batch, and the workers' start-up where they were started
    workers_started: int = 0  # 0: the workers of the last run were still up


# Workers stay up between the reconstructions of a process (a node's next request finds them ready): those
# of the last run, while the Ray session, the model and their number and threads stay the same.
_kept: dict[str, Any] = {"key": None, "workers": []}


def release_workers() -> None:
    """End the workers kept for the next reconstruction (each holds the model and torch's memory)."""
    ray, workers = sys.modules.get("ray"), _kept["workers"]
    _kept.update(key=None, workers=[])
    if ray is None or not ray.is_initialized():
        return
    for worker in workers:
        try:
            ray.kill(worker)
        except Exception:  # a worker of an earlier Ray session: gone already
            pass


class RayRunner:
    """Batches on `workers` Ray actors of `threads` CPUs each; results streamed back in batch order."""

    round_size = 1  # the workers take batches as they free up: no rounds

    def __init__(self, ray, address: str, workers: int, threads: int, devices: list[torch.device]) -> None:
        self.ray, self.address, self.workers, self.threads = ray, address, workers, threads
        self.devices = devices  # where the driver holds the model
        self.model: ConvONet | None = None
        self.moved = Traffic()

    def load(self, model: ConvONet | None, checkpoint: str | None) -> ConvONet:
        self.model = load_on(model, checkpoint, self.devices[0])
        return self.model

    def describe(self) -> str:
        where = "local Ray runtime" if self.address == "local" else f"Ray at {self.address}"
        return f"{where}: {self.workers} worker(s) x {self.threads} thread(s), cpu"

    def traffic(self) -> dict:
        return dataclasses.asdict(self.moved)

    def run(self, plan: WindowPlan, points: np.ndarray, config: ReconstructionConfig, tally: ProgressTally,
            stop: threading.Event, clock: StageClock, encoder_points: np.ndarray | None = None,
            deadline: float | None = None) -> Iterator[BatchResult]:
        """Every batch of the plan, in its order, optimised and evaluated by the workers. At most
        BATCHES_PER_WORKER batches per worker are out at once, so the blocks held wait only for the slowest
        batch ahead of them."""
        if self.model is None:
            raise RuntimeError("RayRunner.run before load")
        self.moved = Traffic()
        workers = self._workers(self.model)
        wall_deadline = None if deadline is None else time.time() + (deadline - time.monotonic())
        keep_states = plan.settings_id is not None
        started, finished = time.perf_counter(), False
        try:
            out: dict[Any, tuple[int, int]] = {}  # task -> (batch position, worker)
            load = [0] * len(workers)
            done: dict[int, BatchOutput] = {}
            sent = given = 0
            while given < len(plan.batches):
                while (sent < len(plan.batches) and sent < given + BATCHES_PER_WORKER * len(workers)
                       and min(load) < BATCHES_PER_WORKER):
                    worker = load.index(min(load))
                    work = batch_input(plan, plan.batches[sent], points, encoder_points)
                    self.moved.bytes_in += work.nbytes
                    task = workers[worker].run.remote(work, config.optimization, config.meshing, keep_states,
                                                      wall_deadline)
                    out[task], load[worker], sent = (sent, worker), load[worker] + 1, sent + 1
                with clock.stage("optimize"):
                    ready = self._wait(list(out), stop)
                for task in ready:
                    position, worker = out.pop(task)
                    load[worker] -= 1
                    done[position] = self._get(task)
                while given in done:
                    yield self._result(plan.batches[given], done.pop(given), tally, clock)
                    given += 1
                    if given == 1:
                        self.moved.seconds_to_first_result = time.perf_counter() - started
            finished = True
        finally:
            if not finished:  # cancelled, failed or abandoned: their running batches end with them
                release_workers()

    def _workers(self, model: ConvONet) -> list:
        """The workers kept from the last run where they hold this model; else new ones, given its weights
        once through the object store."""
        ray = self.ray
        context = ray.get_runtime_context()
        key = (context.get_job_id(), context.get_node_id(), model_fingerprint(model), self.workers, self.threads)
        if _kept["key"] != key:
            release_workers()
            weights = ray.put(model_weights(model))
            actor = ray.remote(BatchWorker).options(num_cpus=self.threads)
            _kept.update(key=key, workers=[actor.remote(weights, self.threads) for _ in range(self.workers)])
            self.moved.workers_started = self.workers
        return _kept["workers"]

    def _wait(self, tasks: list, stop: threading.Event) -> list:
        while True:
            if stop.is_set():
                raise ReconstructionCancelled("reconstruction cancelled")
            ready, _ = self.ray.wait(tasks, num_returns=1, timeout=POLL_SECONDS)
            if ready:
                return ready

    def _get(self, task) -> BatchOutput:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(task)
        except exceptions.RayTaskError as error:
            if isinstance(error.cause, ValueError):  # a ReconstructionError, SettingError: in its own words
                raise error.cause from None
            raise
        except (exceptions.RayActorError, exceptions.ObjectLostError, exceptions.NodeDiedError) as error:
            raise ReconstructionError(f"a Ray worker was lost: {_first_line(error)}") from None

    def _result(self, batch: PlannedBatch, output: BatchOutput, tally: ProgressTally, clock: StageClock) -> BatchResult:
        with clock.stage("field"):
            blocks = [unpack_block(packed) for packed in output.blocks]
        traffic = self.moved
        traffic.batches += 1
        traffic.windows += len(blocks)
        traffic.bytes_out += sum(packed.nbytes for packed in output.blocks)
        traffic.bytes_out_dense += sum(block.nbytes for block in blocks)
        traffic.worker_seconds += output.seconds
        for _ in range(output.steps_run):
            tally.advance("optimize")
        tally.advance("field")
        return BatchResult(batch, blocks, output.states, output.final_loss, output.steps_run, output.out_of_time,
                           output.window_steps)
