"""Batches in this process: workers side by side on a CPU's threads or on several devices."""
import threading

import numpy as np
import pytest
import torch

import sa_convonet_ros.local_runner as local_runner_module
from sa_convonet_ros.errors import ReconstructionCancelled
from sa_convonet_ros.local_runner import cpu_workers, side_by_side, windows_side_by_side
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.planning import plan_windows
from sa_convonet_ros.runners import evaluate_batch, optimize_batch

from helpers import small_config


def test_a_failing_task_stops_the_others():
    stop = threading.Event()

    def fails():
        raise RuntimeError("out of memory")

    def waits():
        assert stop.wait(10)
        return "stopped"

    with pytest.raises(RuntimeError, match="out of memory"):
        side_by_side([waits, fails], stop)
    assert stop.is_set()
    assert side_by_side([lambda: 1, lambda: 2], threading.Event()) == [1, 2]


def test_threads_share_out_the_round_s_windows_whatever_their_batch(tiny_model, room_corner, monkeypatch):
    """A long batch beside a short one: both threads decode the long batch's windows (a thread per batch would
    stand idle once the short one is done), and every batch gets the blocks decoding it alone gives."""
    config = small_config(iterations=1).updated(optimization={"window_batch": 4})
    plan = plan_windows(room_corner, config, steps=1)
    long_batch, short_batch = plan.batches[0], plan.batches[-1]
    short_batch.windows = short_batch.windows[:1]
    batches = [long_batch, short_batch]
    assert len(long_batch.windows) >= 3
    ensembles = [optimize_batch(batch, tiny_model, plan, room_corner, config.optimization) for batch in batches]
    alone = [evaluate_batch(batch, ensemble, plan, room_corner, config.meshing) for batch, ensemble in
             zip(batches, ensembles)]
    decoded_by, lock, first_two = {}, threading.Lock(), threading.Barrier(2)
    window_block = local_runner_module.window_block

    def recording(batch, ensemble, slot, *rest):
        with lock:
            decoded_by[(batch.number, slot)] = threading.get_ident()
            first = len(decoded_by) <= 2
        if first:  # each thread holds a window before either goes on: neither takes them all
            first_two.wait(10)
        return window_block(batch, ensemble, slot, *rest)

    monkeypatch.setattr(local_runner_module, "window_block", recording)
    shared = windows_side_by_side(batches, ensembles, plan, room_corner, config.meshing, False,
                                  threading.Event(), 2)
    long_threads = {decoded_by[(long_batch.number, slot)] for slot in range(len(long_batch.windows))}
    assert len(long_threads) == 2
    for one, other in zip(shared, alone):
        assert one.batch is other.batch and len(one.blocks) == len(other.blocks)
        for block, expected in zip(one.blocks, other.blocks):
            np.testing.assert_array_equal(block, expected)


def test_a_cpu_runs_batches_side_by_side_on_shares_of_its_threads(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert cpu_workers([cpu], 0) == ([cpu, cpu], 4)  # auto: two workers
    assert cpu_workers([cpu], 3) == ([cpu] * 3, 2)
    assert cpu_workers([cpu], 1) == ([cpu], None)  # one batch at a time on every thread
    assert cpu_workers([cpu, cpu], 0) == ([cpu, cpu], 4)  # a list names the workers
    assert cpu_workers([cuda, cuda], 4) == ([cuda, cuda], None)  # GPUs: one worker each, threads left alone
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert cpu_workers([cpu], 0) == ([cpu], None)
    assert cpu_workers([cpu], 2) == ([cpu, cpu], 1)


def test_the_run_leaves_torch_threads_as_it_found_them(tiny_model, room_corner):
    threads = torch.get_num_threads()
    seen = []
    config = small_config(iterations=1).updated(cpu_workers=2)
    result = reconstruct(room_corner, config, model=tiny_model,
                         progress=lambda stage, done, total: seen.append(torch.get_num_threads()))
    assert result.stats.device == "cpu,cpu" and torch.get_num_threads() == threads
    assert max(1, threads // 2) in seen  # the batches ran on a share of the threads
    stop = threading.Event()
    stop.set()
    with pytest.raises(ReconstructionCancelled):
        reconstruct(room_corner, config, model=tiny_model, cancel=stop)
    assert torch.get_num_threads() == threads


def test_windows_spread_over_several_devices_give_the_same_mesh(tiny_model, room_corner):
    config = small_config(iterations=2).updated(optimization={"window_batch": 2}, cpu_workers=3)
    one = reconstruct(room_corner, config, model=tiny_model)
    two = reconstruct(room_corner, config.updated(device="cpu,cpu,cpu"), model=tiny_model)
    assert one.stats.device == two.stats.device == "cpu,cpu,cpu" and two.stats.windows_run == one.stats.windows_run
    np.testing.assert_allclose(two.mesh.vertices, one.mesh.vertices, atol=1e-6)
    assert np.array_equal(two.mesh.faces, one.mesh.faces)
