"""The UCE loss, its sampling, and the batched per-window optimisation."""
import math
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from sa_convonet_ros.config import ModelConfig, OptimizationConfig
from sa_convonet_ros.errors import ReconstructionCancelled
from sa_convonet_ros.feature_grids import FeatureGrids
from sa_convonet_ros.model import ConvONet
from sa_convonet_ros.optimize import (
    FusedAdam,
    cells_touched,
    optimize_windows,
    optimized_parameter_names,
    uce_per_query,
)
from sa_convonet_ros.window_batch import ResidualSampling, WindowBatch, sample_uce_queries

from helpers import TINY, uce_loss

CPU = torch.device("cpu")


def plane(n, seed, height=0.0):
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-0.4, 0.4, (n, 2)), np.full(n, height)].astype(np.float32)


def test_uce_loss_matches_the_formula_and_ignores_the_sign():
    logits = torch.tensor([[0.0, 2.0, -2.0, 10.0]])
    targets = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    def bce(p, t):
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = np.mean([bce(0.5, 0.5), bce(sig(2), 0.5), bce(sig(2), 1.0), bce(sig(10), 1.0)])
    assert uce_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(uce_loss(logits, targets), uce_loss(-logits, targets))
    # the minimum of the surface term is at logit 0 (occupancy 0.5), where it equals log 2
    assert uce_loss(torch.zeros(1, 1), torch.full((1, 1), 0.5)).item() == pytest.approx(math.log(2))


def test_sampling_uses_real_points_and_adds_noise_of_sigma():
    clouds = [plane(300, 0), plane(1000, 1, height=0.2)]
    batch = WindowBatch.from_arrays(clouds, CPU, max_points=5000, rng=np.random.default_rng(0))
    assert batch.points.shape == (2, 1000, 3) and batch.counts.tolist() == [300, 1000]
    generator = torch.Generator().manual_seed(0)
    queries, targets = sample_uce_queries(batch, 4000, 4000, sigma=0.05, generator=generator)
    assert queries.shape == (2, 8000, 3) and targets.shape == (2, 8000)
    assert torch.all(targets[:, :4000] == 0.5) and torch.all(targets[:, 4000:] == 1.0)
    for w, cloud in enumerate(clouds):
        surface = queries[w, :4000].numpy()
        # surface samples are input points (never the zero padding of the shorter window)
        distance = np.abs(surface[:, None, :] - cloud[None, :200]).sum(-1).min(1)
        assert np.all(np.isin(surface[:, 2], cloud[:, 2]))
        assert distance.min() == 0
        off = queries[w, 4000:, 2].numpy() - cloud[0, 2]
        assert off.std() == pytest.approx(0.05, rel=0.1)


def test_batch_caps_encoder_points_but_samples_all_points():
    cloud = plane(5000, 0)
    batch = WindowBatch.from_arrays([cloud], CPU, max_points=1000, rng=np.random.default_rng(0), max_samples=10000)
    assert batch.points.shape == (1, 1000, 3) and bool(batch.mask.all())
    assert batch.samples.shape == (1, 5000, 3)
    queries, _ = sample_uce_queries(batch, 20000, 0, 0.1, torch.Generator().manual_seed(0))
    assert len(np.unique(queries[0, :, 0].numpy())) > 3000  # drawn from all 5000 points, not the 1000


def test_residual_sampling_draws_where_the_fit_is_worst():
    clouds = [plane(300, 0), plane(1000, 1)]
    batch = WindowBatch.from_arrays(clouds, CPU, max_points=5000, rng=np.random.default_rng(0))
    residuals = ResidualSampling(batch, fraction=0.5)
    # before anything is drawn every real point may be drawn, never the padding of the shorter window
    assert residuals.weights[0, :300].min() > 0 and residuals.weights[0, 300:].max() == 0
    generator = torch.Generator().manual_seed(0)
    sample_uce_queries(batch, 1000, 0, 0.1, generator, residuals)
    assert residuals.last_pick.shape == (2, 1000) and residuals.last_pick[0].max() < 300
    # say points 0-9 of each window fit badly (3 logits off) and everything else fits
    residuals.weights.fill_(0.0)
    residuals.weights[:, :300] = 1.0
    picked = residuals.last_pick
    logits = torch.where(picked < 10, 3.0, 0.0)
    residuals.update(uce_per_query(logits, torch.full_like(logits, 0.5)))
    assert residuals.weights[0, picked[0, picked[0] < 10]].min() > 0.5
    assert residuals.weights[0, picked[0, picked[0] >= 10]].max() == pytest.approx(ResidualSampling.FLOOR)
    residuals.weights[:, 10:] = ResidualSampling.FLOOR  # all the rest seen and fitted
    queries, _ = sample_uce_queries(batch, 1000, 0, 0.1, generator, residuals)
    weighted = residuals.last_pick[:, :500]
    assert (weighted < 10).float().mean() > 0.8  # the weighted half goes to the 10 bad points
    assert (residuals.last_pick[:, 500:] < 10).float().mean() < 0.2  # the other half stays uniform


def test_residual_sampling_runs_in_the_optimisation():
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(500, 0), plane(400, 1)], CPU, max_points=5000, rng=np.random.default_rng(0))
    config = OptimizationConfig(iterations=5, surface_samples=64, off_surface_samples=32, residual_sampling=0.5)
    ensemble = optimize_windows(model, batch, config)
    assert len(ensemble.loss_history) == 5 and np.isfinite(ensemble.loss_history).all()
    with pytest.raises(ValueError, match="residual_sampling"):
        OptimizationConfig(residual_sampling=1.5)


def test_which_parameters_are_optimised():
    model = ConvONet(TINY)
    decoder = optimized_parameter_names(model, "decoder", freeze_norm=True)
    assert decoder and all(n.startswith("decoder.") for n in decoder)
    encoder = optimized_parameter_names(model, "encoder", freeze_norm=True)
    assert encoder and all(n.startswith("encoder.") and "groupnorm" not in n for n in encoder)
    assert any("groupnorm" in n for n in optimized_parameter_names(model, "all", freeze_norm=False))


@pytest.mark.parametrize("parts", ["decoder", "all"])
def test_optimisation_lowers_the_loss(parts):
    torch.manual_seed(0)
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(2000, 0), plane(2000, 1, 0.1)], CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=60, optimized_parts=parts, learning_rate=3e-3, decay_every=1000,
                                surface_samples=512, off_surface_samples=512, sigma=0.1)
    before = {n: p.clone() for n, p in model.named_parameters()}
    ensemble = optimize_windows(model, batch, config, seed=0)
    history = ensemble.loss_history
    assert len(history) == 60
    assert np.mean(history[-10:]) < np.mean(history[:10]) - 0.02
    # the pretrained weights themselves are untouched: every window adapted its own copy
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    first = next(iter(ensemble.stacked.values()))
    assert first.shape[0] == 2 and not torch.equal(first[0], first[1])


@pytest.mark.parametrize("parts, features", [("all", False), ("decoder", True)])
def test_windows_in_a_batch_are_independent(parts, features):
    """Window A ends up the same whichever window it shares its batch with."""
    config = OptimizationConfig(iterations=15, optimized_parts=parts, freeze_norm=False, learning_rate=1e-3,
                                optimize_features=features, surface_samples=256, off_surface_samples=128)
    a = plane(800, 0)
    results = []
    for partner in (plane(800, 1, 0.2), plane(800, 2, -0.3) * [1, 0.5, 1]):
        torch.manual_seed(0)
        model = ConvONet(TINY)
        batch = WindowBatch.from_arrays([a, partner], CPU, 5000, np.random.default_rng(0))
        ensemble = optimize_windows(model, batch, config, seed=3)
        results.append({n: t[0] for n, t in ensemble.stacked.items()} | {"features": ensemble.features[0]})
    for name in results[0]:
        assert torch.allclose(results[0][name], results[1][name], atol=1e-5), name


def test_zero_iterations_is_feed_forward_and_cancel_stops():
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(500, 0)], CPU, 5000, np.random.default_rng(0))
    ensemble = optimize_windows(model, batch, OptimizationConfig(iterations=0))
    assert ensemble.stacked == {} and ensemble.features is not None
    queries = torch.rand(1, 10, 3) - 0.5
    with torch.no_grad():
        assert torch.allclose(ensemble.decode_window(0, queries[0], ensemble.features), model(batch.points, queries)[0])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ReconstructionCancelled):
        optimize_windows(model, batch, OptimizationConfig(iterations=5), cancel=cancel)


def test_the_deadline_stops_the_steps_and_keeps_the_state_reached():
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(500, 0), plane(400, 1, 0.1)], CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=1000, surface_samples=64, off_surface_samples=32)
    optimize_windows(model, batch, OptimizationConfig(iterations=1))  # warm-up: later set-ups are quick
    steps = []

    def slow_step(step, total, loss):
        steps.append(step)
        time.sleep(0.2)

    started = time.monotonic()
    ensemble = optimize_windows(model, batch, config, on_step=slow_step, deadline=started + 2.0)
    assert ensemble.out_of_time and 1 <= len(ensemble.loss_history) == len(steps) <= 11
    assert time.monotonic() - started < 5.0  # the deadline plus one step, on however loaded a machine
    assert all(not t.requires_grad for t in ensemble.stacked.values())  # usable like a finished run
    adapted = ensemble.stacked["decoder.fc_out.weight"]
    assert not torch.equal(adapted[0], model.decoder.fc_out.weight.expand_as(adapted)[0])

    past = optimize_windows(model, batch, config, deadline=time.monotonic() - 1.0)
    assert past.out_of_time and past.loss_history == []
    finished = optimize_windows(model, batch, OptimizationConfig(iterations=2), deadline=time.monotonic() + 60)
    assert not finished.out_of_time and len(finished.loss_history) == 2


def test_adapting_the_feature_grid_fits_better_than_the_decoder_alone():
    torch.manual_seed(0)
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(2000, 0), plane(2000, 1, 0.1)], CPU, 5000, np.random.default_rng(0))
    with torch.no_grad():
        encoded = model.encode(batch.points, batch.mask)
    final = {}
    for features in (False, True):
        config = OptimizationConfig(iterations=40, optimized_parts="decoder", optimize_features=features,
                                    learning_rate=3e-3, feature_learning_rate=1e-2, decay_every=1000,
                                    surface_samples=512, off_surface_samples=512)
        ensemble = optimize_windows(model, batch, config, seed=0)
        final[features] = np.mean(ensemble.loss_history[-5:])
        assert not ensemble.features.requires_grad
        assert torch.equal(ensemble.features, encoded) != features  # adapted only when asked
    assert final[True] < final[False]


def test_feature_adaptation_needs_a_fixed_encoder():
    with pytest.raises(ValueError, match="optimize_features"):
        OptimizationConfig(optimized_parts="all", optimize_features=True)
    with pytest.raises(ValueError, match="feature_learning_rate"):
        OptimizationConfig(optimize_features=True, feature_learning_rate=0)


def test_a_warm_start_resumes_where_the_earlier_run_ended():
    torch.manual_seed(0)
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(2000, 0), plane(2000, 1, 0.1)], CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=40, optimize_features=True, learning_rate=3e-3, decay_every=1000,
                                surface_samples=512, off_surface_samples=512)
    earlier = optimize_windows(model, batch, config, seed=0)
    states = [earlier.window_state(0), None]  # window 1 starts cold
    assert states[0].feature_delta.dtype == torch.float16 and states[0].feature_delta.abs().max() > 0
    warm = optimize_windows(model, batch, config, iterations=1, seed=1, initial=states)
    cold = optimize_windows(model, batch, config, iterations=1, seed=1)
    # one step from the earlier result is far below one step from the pretrained weights, per window
    with torch.no_grad():
        queries, targets = sample_uce_queries(batch, 512, 512, config.sigma, torch.Generator().manual_seed(5))
        warm_loss = uce_loss(warm.decode(queries, warm.features), targets)
        cold_loss = uce_loss(cold.decode(queries, cold.features), targets)
    assert warm_loss[0] < cold_loss[0] - 0.02
    assert warm_loss[1] == pytest.approx(cold_loss[1].item(), abs=1e-6)
    with pytest.raises(ValueError, match="initial states"):
        optimize_windows(model, batch, config, iterations=1, initial=states[:1])


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_follows_the_float32_optimisation(precision):
    batch = WindowBatch.from_arrays([plane(2000, 0)], CPU, 5000, np.random.default_rng(0))
    histories = {}
    for mode in ("fp32", precision):
        torch.manual_seed(0)
        model = ConvONet(TINY)
        config = OptimizationConfig(iterations=20, optimize_features=True, learning_rate=3e-3, precision=mode,
                                    surface_samples=512, off_surface_samples=512)
        histories[mode] = np.array(optimize_windows(model, batch, config, seed=0).loss_history)
    if precision == "tf32":  # TF32 only exists on CUDA: on the CPU it is exactly float32
        assert np.array_equal(histories["tf32"], histories["fp32"])
    else:
        np.testing.assert_allclose(histories[precision], histories["fp32"], atol=0.02)
        assert histories[precision][-1] < histories[precision][0]
    with pytest.raises(ValueError, match="precision"):
        OptimizationConfig(precision="fp8")


def test_the_fused_adam_kernel_takes_the_same_steps():
    batch = WindowBatch.from_arrays([plane(1000, 0), plane(1000, 1, 0.1)], CPU, 5000, np.random.default_rng(0))
    histories = []
    for fused in (True, False):
        torch.manual_seed(0)
        config = OptimizationConfig(iterations=15, optimize_features=True, learning_rate=3e-3, fused_adam=fused,
                                    surface_samples=256, off_surface_samples=256)
        histories.append(optimize_windows(ConvONet(TINY), batch, config, seed=0).loss_history)
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)


def test_our_fused_adam_steps_as_torchs_fused_adam_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    ours = [torch.randn(5, 7, generator=generator, requires_grad=True), torch.randn(3, generator=generator,
                                                                                  requires_grad=True)]
    theirs = [tensor.detach().clone().requires_grad_(True) for tensor in ours]
    rates = (1e-2, 3e-4)
    ours_adam = FusedAdam([{"params": [tensor], "lr": rate} for tensor, rate in zip(ours, rates)])
    their_adam = torch.optim.Adam([{"params": [tensor], "lr": rate} for tensor, rate in zip(theirs, rates)],
                                  fused=True)
    for step in range(12):
        gradients = [torch.randn(tensor.shape, generator=generator) for tensor in ours]
        for adam, tensors in ((ours_adam, ours), (their_adam, theirs)):
            adam.zero_grad(set_to_none=True)
            tensors[0].grad = gradients[0].clone()
            if step % 3:  # a parameter without a gradient keeps its value and its moments
                tensors[1].grad = gradients[1].clone()
            adam.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert all(torch.equal(ours_adam.state[a]["exp_avg_sq"], their_adam.state[b]["exp_avg_sq"])
               for a, b in zip(ours, theirs))


def test_optimising_does_not_import_torch_dynamo():
    """torch.optim's first use imports torch._dynamo, a second of every CLI run: the steps do without it."""
    script = (
        "import sys, numpy as np, torch\n"
        "sys.path.insert(0, 'test')\n"
        "from helpers import TINY\n"
        "from sa_convonet_ros.config import OptimizationConfig\n"
        "from sa_convonet_ros.model import ConvONet\n"
        "from sa_convonet_ros.optimize import optimize_windows\n"
        "from sa_convonet_ros.window_batch import WindowBatch\n"
        "points = np.random.default_rng(0).uniform(-0.5, 0.5, (500, 3)).astype(np.float32)\n"
        "batch = WindowBatch.from_arrays([points], torch.device('cpu'), 1000, np.random.default_rng(0))\n"
        "config = OptimizationConfig(iterations=3, optimize_features=True, surface_samples=64,\n"
        "                            off_surface_samples=64)\n"
        "optimize_windows(ConvONet(TINY), batch, config, seed=0)\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def crossing_sheets(n, seed):
    """Two thin sheets crossing at a right angle: harder to fit than one plane."""
    rng = np.random.default_rng(seed)
    flat = np.c_[rng.uniform(-0.4, 0.4, (n // 2, 2)), np.zeros(n // 2)]
    upright = np.c_[rng.uniform(-0.4, 0.4, n - n // 2), np.zeros(n - n // 2), rng.uniform(-0.4, 0.4, n - n // 2)]
    return np.concatenate([flat, upright]).astype(np.float32)


def test_each_window_stops_at_its_own_plateau_and_keeps_what_it_learned():
    torch.manual_seed(0)
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(2000, 0), crossing_sheets(2000, 1)], CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=150, optimize_features=True, learning_rate=3e-3, decay_every=1000,
                                surface_samples=512, off_surface_samples=256, early_stop_patience=8,
                                early_stop_tolerance=0.02)
    ensemble = optimize_windows(model, batch, config, seed=0)
    easy, hard = ensemble.window_steps
    assert easy < hard <= 150
    assert len(ensemble.loss_history) == hard  # the batch ended when its last window stopped
    # from its stop on the plane's window did not move: it equals a run of exactly its own steps
    alone = optimize_windows(model, batch, config.__class__(**{**vars(config), "early_stop_patience": 0}),
                             iterations=easy, seed=0)
    for name, tensor in ensemble.stacked.items():
        assert torch.allclose(tensor[0], alone.stacked[name][0], atol=1e-6), name
    assert torch.allclose(ensemble.features[0], alone.features[0], atol=1e-6)


def test_windows_left_adapting_take_the_steps_they_take_when_none_stopped():
    # Once a window stops, the others go on as a smaller batch; their samples and Adam moments carry over.
    torch.manual_seed(0)
    model = ConvONet(TINY)
    clouds = [plane(2000, 0), crossing_sheets(2000, 1), crossing_sheets(2000, 2)]
    batch = WindowBatch.from_arrays(clouds, CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=60, optimize_features=True, learning_rate=3e-3, decay_every=20,
                                surface_samples=512, off_surface_samples=256, early_stop_patience=8,
                                early_stop_tolerance=0.02)
    stopping = optimize_windows(model, batch, config, seed=0)
    steps = stopping.window_steps
    assert steps[0] < max(steps) and len(stopping.loss_history) == max(steps)
    last = int(np.argmax(steps))
    every = optimize_windows(model, batch, config.__class__(**{**vars(config), "early_stop_patience": 0}),
                             iterations=steps[last], seed=0)
    for name, tensor in stopping.stacked.items():
        assert torch.allclose(tensor[last], every.stacked[name][last], atol=1e-5), name
    assert torch.allclose(stopping.features[last], every.features[last], atol=1e-5)


def test_without_early_stop_every_window_takes_every_step():
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(500, 0), plane(500, 1)], CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=5, surface_samples=128, off_surface_samples=64)
    assert optimize_windows(model, batch, config, seed=0).window_steps == [5, 5]


def test_feature_grid_sampling_and_its_gradient_match_grid_sample():
    torch.manual_seed(0)
    model = ConvONet(ModelConfig(grid_resolution=8))
    volume = torch.randn(3, model.config.c_dim, 8, 8, 8)
    grids = FeatureGrids(volume.clone(), model.config.padding)
    reference = volume.clone().requires_grad_(True)
    for step in range(3):  # later steps reuse the gradient buffer: what an earlier step wrote must be gone
        queries = torch.rand(3, 50 - 10 * step, 3) - 0.5
        queries[0, 0] = torch.tensor([0.5, -0.5, 0.5])  # corners of the cube (clamped inside the grid)
        upstream = torch.randn(3, queries.shape[1], model.config.c_dim)
        sampled = grids.sample(queries)
        expected = model.decoder.sample_features(queries, reference)
        torch.testing.assert_close(sampled, expected, atol=1e-5, rtol=1e-5)
        (sampled * upstream).sum().backward()
        grids.backward()
        reference.grad = None
        (expected * upstream).sum().backward()
        torch.testing.assert_close(grids.values.grad.permute(0, 4, 1, 2, 3), reference.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grids.volume, volume)


@pytest.mark.parametrize("patience", [0, 5])
def test_adapting_only_the_touched_cells_takes_the_same_steps_as_adapting_every_cell(monkeypatch, patience):
    # Adam leaves a cell whose gradient was always zero where it is, so restricting it to the cells the steps
    # touch changes nothing, also when windows leave the batch early (their Adam moments are carried over).
    torch.manual_seed(0)
    model = ConvONet(ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=16, unet_levels=2, unet_base_channels=8))
    clouds = [plane(2000, 0), crossing_sheets(2000, 1), plane(2000, 2, height=0.3)]
    batch = WindowBatch.from_arrays(clouds, CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=40, optimize_features=True, learning_rate=3e-3, sigma=0.02,
                                surface_samples=256, off_surface_samples=128, early_stop_patience=patience,
                                early_stop_tolerance=0.02)
    restricted = optimize_windows(model, batch, config, seed=3)
    touched = restricted.grids.touched
    assert 0.05 < touched.float().mean() < 0.9
    assert torch.equal(restricted.grids.values.view(-1, 8)[~touched],
                       restricted.encoded.permute(0, 2, 3, 4, 1).reshape(-1, 8)[~touched])
    monkeypatch.setattr(FeatureGrids, "restrict", lambda self, touched: None)
    every = optimize_windows(model, batch, config, seed=3)
    assert restricted.window_steps == every.window_steps
    if patience:
        assert min(every.window_steps) < config.iterations
    torch.testing.assert_close(restricted.features, every.features, atol=0, rtol=0)
    for name, tensor in restricted.stacked.items():
        torch.testing.assert_close(tensor, every.stacked[name], atol=0, rtol=0, msg=name)


def test_the_replay_of_many_steps_gives_way_to_the_budget_and_the_cancel():
    # Before the first step the feature grids' touched cells are found by replaying every step's draws: at
    # 100,000 steps that alone would outlast a short budget, so the replay stops and every cell adapts.
    model = ConvONet(TINY)
    batch = WindowBatch.from_arrays([plane(500, 0), plane(400, 1, 0.1)], CPU, 5000, np.random.default_rng(0))
    config = OptimizationConfig(iterations=100_000, optimize_features=True, surface_samples=512,
                                off_surface_samples=256)
    started = time.monotonic()
    ensemble = optimize_windows(model, batch, config, deadline=started + 1.5)
    assert time.monotonic() - started < 4.0
    assert ensemble.out_of_time and len(ensemble.loss_history) >= 1 and ensemble.grids.touched is None
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ReconstructionCancelled):
        cells_touched(FeatureGrids(ensemble.encoded, 0.1), batch, config, torch.Generator(), 100_000, cancel)
    touched = cells_touched(FeatureGrids(ensemble.encoded, 0.1), batch, config, torch.Generator(), 3,
                            deadline=time.monotonic() + 60)
    assert touched is not None and 0 < touched.float().mean() < 1


def test_surface_samples_follow_the_point_weights_and_the_off_surface_centres_do_not():
    cloud = np.c_[np.arange(4) * 0.1, np.zeros(4), np.zeros(4)].astype(np.float32)
    batch = WindowBatch.from_arrays([cloud], CPU, max_points=10, rng=np.random.default_rng(0),
                                    weights=[np.array([0.0, 1.0, 1.0, 6.0])])
    queries, _ = sample_uce_queries(batch, 40_000, 40_000, sigma=1e-4, generator=torch.Generator().manual_seed(0))
    drawn = np.round(queries[0, :, 0].numpy() / 0.1).astype(int)
    surface, centres = np.bincount(drawn[:40_000], minlength=4), np.bincount(drawn[40_000:], minlength=4)
    assert surface[0] == 0  # a point of no area is never a surface sample
    assert surface / 40_000 == pytest.approx([0.0, 0.125, 0.125, 0.75], abs=0.01)
    assert centres / 40_000 == pytest.approx([0.25] * 4, abs=0.01)


def test_capped_samples_keep_their_own_weights():
    cloud = np.c_[np.arange(500) / 500, np.zeros(500), np.zeros(500)].astype(np.float32)
    weights = np.arange(500) + 1.0  # each point's weight from its own x
    batch = WindowBatch.from_arrays([cloud], CPU, max_points=100, rng=np.random.default_rng(0), max_samples=50,
                                    weights=[weights])
    kept = np.round(batch.samples[0, :, 0].numpy() * 500).astype(int)
    assert len(set(kept)) == 50
    shares = np.diff(batch.sample_cdf[0].numpy(), prepend=0.0)
    assert shares == pytest.approx((kept + 1.0) / (kept + 1.0).sum(), abs=1e-6)
    again = batch.subset(torch.tensor([0]))
    assert torch.equal(again.sample_cdf, batch.sample_cdf)
