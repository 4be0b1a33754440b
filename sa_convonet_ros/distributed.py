"""The windows' optimisation on Ray workers: past one machine.

`reconstruct` runs its jobs here instead of in its own process when `ray_address` is set ('local': a Ray
runtime started on this machine; else the address of a running cluster). Everything else stays on the
driver: the points are prepared and the windows planned there, and the field blocks come back to it, in
job order, into the same `mesh_blocks` / `StreamingMesher` as in one process. A worker runs the same
`optimize_job` and `evaluate_job` as the single process, with the job's own seed, on the same points, so
the mesh is the same.

    connect(config)            -> RayRunner: Ray imported and reached (ReconstructionError when it cannot be)
    RayRunner.run_jobs(...)    -> JobResults in job order, like pipeline.run_jobs
      RayRunner._workers          the workers: kept from the last run, or started with the model's weights
      JobWorker (a Ray actor)     the model's weights received once; then job after job:
        job_input(...)            what a job needs: its windows' points (only those), the grid, the band
        JobWorker.run             optimize_job + evaluate_job; the blocks packed (pack_block)
      unpack_block                the block as it was, on the driver

What travels per job: in, the points of its windows' crops (float64, each point once per job, however
many of its windows' crops hold it) and each window's indices into them (int32); out, each block's
grid points within the band of the points, as float32 logits, with a bit mask of where they are (the
rest of a block is EMPTY_LOGIT, which the driver fills back in: lossless). With a `WindowCache` (the node's
automatic mode) the windows' adapted states travel too, in for a warm start and out to be cached: with
`optimize_features`, 16 MB a window (its feature grid's change, float16 at 64³). The model's weights travel
once per worker through Ray's object store, whatever model the driver holds (a checkpoint's, the shipped
one or one built in memory), so workers need no files of their own; they need this package installed.

Workers compute on their CPUs, `ray_threads` torch threads each (a cluster's GPUs are not used yet).
The workers stay up for the process's next reconstruction with the same model (`release_workers` ends
them). Cancelling (`stop`) ends them at once (their running jobs too); a deadline is handed to the workers
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
from .errors import ReconstructionCancelled, ReconstructionError
from .meshing import EMPTY_LOGIT
from .model import ConvONet
from .optimize import WindowState
from .pipeline import JobResult, ProgressTally, StageClock, WindowJob, WindowPlan, evaluate_job, optimize_job
from .windows import WindowSet

JOBS_PER_WORKER = 2  # queued on a worker at once: the next job's points arrive while one runs
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
    return RayRunner(ray, address, workers, threads)


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
class JobInput:
    """One job as a worker sees it: a plan of just its windows, over just their points."""

    job: WindowJob  # the job, its windows renumbered 0 .. k-1 (its number, and so its seed, unchanged)
    plan: WindowPlan  # the grid and band of the whole plan; windows: the job's, crops indexing `points`
    points: np.ndarray  # (M, 3) float64: every point of the windows' crops, once
    encoder_points: np.ndarray | None  # the same points as measured, when the encoder sees those

    @property
    def nbytes(self) -> int:
        crops = sum(crop.nbytes for crop in self.plan.windows.crop_points)
        return self.points.nbytes + crops + (0 if self.encoder_points is None else self.encoder_points.nbytes)


def job_input(plan: WindowPlan, job: WindowJob, points: np.ndarray,
              encoder_points: np.ndarray | None = None) -> JobInput:
    """The job's windows with their crops' points, in the order the crops hold them (so the windows see
    exactly what they see in one process)."""
    crops = [plan.windows.crop_points[w] for w in job.windows]
    used = np.unique(np.concatenate(crops))
    index_type = np.int32 if len(used) < np.iinfo(np.int32).max else np.int64
    windows = WindowSet(plan.windows.index[job.windows], [np.searchsorted(used, crop).astype(index_type)
                                                          for crop in crops],
                        plan.windows.near_counts[job.windows], 0)
    own = dataclasses.replace(job, windows=list(range(len(job.windows))))
    return JobInput(own, WindowPlan(plan.grid, windows, plan.band, {}, [own], plan.settings_id, plan.sweep_axis),
                    points[used], None if encoder_points is None else encoder_points[used])


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
class JobOutput:
    """What a worker sends back for one job."""

    number: int
    blocks: list[PackedBlock]
    states: list[WindowState] | None
    final_loss: float
    steps_run: int
    out_of_time: bool
    seconds: float  # the worker's time on the job (optimisation and field)


# ---------------------------------------------------------------------------------------------- worker

def model_weights(model: ConvONet) -> dict[str, Any]:
    """The model as plain data: its architecture and its weights on the CPU."""
    return {"model_config": dataclasses.asdict(model.config),
            "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}}


class JobWorker:
    """A Ray actor (`ray.remote(JobWorker)`): the model built once from its weights, on the CPU with
    `threads` torch threads; then one job at a time, as in one process."""

    def __init__(self, weights: dict[str, Any], threads: int) -> None:
        torch.set_num_threads(threads)
        self.model = ConvONet(ModelConfig(**weights["model_config"]))
        self.model.load_state_dict(weights["model"])
        self.model.eval()

    def run(self, work: JobInput, optimization: OptimizationConfig, meshing: MeshingConfig, keep_states: bool,
            wall_deadline: float | None) -> JobOutput:
        start = time.perf_counter()
        deadline = None if wall_deadline is None else time.monotonic() + (wall_deadline - time.time())
        ensemble = optimize_job(work.job, self.model, work.plan, work.points, optimization,
                                encoder_points=work.encoder_points, deadline=deadline)
        result = evaluate_job(work.job, ensemble, work.plan, work.points, meshing, keep_states)
        return JobOutput(work.job.number, [pack_block(block) for block in result.blocks], result.states,
                         result.final_loss, result.steps_run, result.out_of_time, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- driver

@dataclass
class Traffic:
    """What a run moved and cost, summed over its jobs (bytes as sent through Ray's object store)."""

    jobs: int = 0
    windows: int = 0
    bytes_in: int = 0  # the jobs' points and crop indices
    bytes_out: int = 0  # the packed blocks
    bytes_out_dense: int = 0  # the same blocks whole (cells^3 float32)
    worker_seconds: float = 0.0  # the workers' time on the jobs, summed
    seconds_to_first_result: float = 0.0  # the first job, and the workers' start-up where they were started
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
    """Jobs on `workers` Ray actors of `threads` CPUs each; results streamed back in job order."""

    def __init__(self, ray, address: str, workers: int, threads: int) -> None:
        self.ray, self.address, self.workers, self.threads = ray, address, workers, threads
        self.traffic = Traffic()

    def describe(self) -> str:
        where = "local Ray runtime" if self.address == "local" else f"Ray at {self.address}"
        return f"{where}: {self.workers} worker(s) x {self.threads} thread(s), cpu"

    def run_jobs(self, plan: WindowPlan, points: np.ndarray, model: ConvONet, config: ReconstructionConfig,
                 tally: ProgressTally, stop: threading.Event, clock: StageClock,
                 encoder_points: np.ndarray | None = None, deadline: float | None = None) -> Iterator[JobResult]:
        """Every job of the plan, in its order, optimised and evaluated by the workers (the contract of
        pipeline.run_jobs). At most JOBS_PER_WORKER jobs per worker are out at once, so the blocks held
        wait only for the slowest job ahead of them."""
        workers = self._workers(model)
        wall_deadline = None if deadline is None else time.time() + (deadline - time.monotonic())
        keep_states = plan.settings_id is not None
        started, finished = time.perf_counter(), False
        try:
            out: dict[Any, tuple[int, int]] = {}  # task -> (job position, worker)
            load = [0] * len(workers)
            done: dict[int, JobOutput] = {}
            sent = given = 0
            while given < len(plan.jobs):
                while (sent < len(plan.jobs) and sent < given + JOBS_PER_WORKER * len(workers)
                       and min(load) < JOBS_PER_WORKER):
                    worker = load.index(min(load))
                    work = job_input(plan, plan.jobs[sent], points, encoder_points)
                    self.traffic.bytes_in += work.nbytes
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
                    yield self._result(plan.jobs[given], done.pop(given), tally, clock)
                    given += 1
                    if given == 1:
                        self.traffic.seconds_to_first_result = time.perf_counter() - started
            finished = True
        finally:
            if not finished:  # cancelled, failed or abandoned: their running jobs end with them
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
            actor = ray.remote(JobWorker).options(num_cpus=self.threads)
            _kept.update(key=key, workers=[actor.remote(weights, self.threads) for _ in range(self.workers)])
            self.traffic.workers_started = self.workers
        return _kept["workers"]

    def _wait(self, tasks: list, stop: threading.Event) -> list:
        while True:
            if stop.is_set():
                raise ReconstructionCancelled("reconstruction cancelled")
            ready, _ = self.ray.wait(tasks, num_returns=1, timeout=POLL_SECONDS)
            if ready:
                return ready

    def _get(self, task) -> JobOutput:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(task)
        except exceptions.RayTaskError as error:
            if isinstance(error.cause, ValueError):  # a ReconstructionError, SettingError: in its own words
                raise error.cause from None
            raise
        except (exceptions.RayActorError, exceptions.ObjectLostError, exceptions.NodeDiedError) as error:
            raise ReconstructionError(f"a Ray worker was lost: {_first_line(error)}") from None

    def _result(self, job: WindowJob, output: JobOutput, tally: ProgressTally, clock: StageClock) -> JobResult:
        with clock.stage("field"):
            blocks = [unpack_block(packed) for packed in output.blocks]
        traffic = self.traffic
        traffic.jobs += 1
        traffic.windows += len(blocks)
        traffic.bytes_out += sum(packed.nbytes for packed in output.blocks)
        traffic.bytes_out_dense += sum(block.nbytes for block in blocks)
        traffic.worker_seconds += output.seconds
        for _ in range(output.steps_run):
            tally.advance("optimize")
        tally.advance("field")
        return JobResult(job, blocks, output.states, output.final_loss, output.steps_run, output.out_of_time)
