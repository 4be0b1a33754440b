"""Training script: crops in the reconstruction's frame with exact labels, a tiny run, resume and export."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from sa_convonet_ros.config import ModelConfig
from sa_convonet_ros.model import load_model
from sa_convonet_ros.train import (
    TrainConfig,
    build_parser,
    config_from_args,
    evaluate,
    from_crop,
    load_room,
    main,
    sample_crop,
    to_crop,
    validation_crops,
)
from sa_convonet_ros.windows import WindowGrid

TINY = ["--grid-resolution", "8", "--unet-levels", "2", "--unet-base-channels", "8", "--c-dim", "8",
        "--hidden-dim", "8", "--max-points", "512", "--uniform-queries", "64", "--near-queries", "64",
        "--batch-size", "2", "--train-seeds", "1000", "1001", "--val-seeds", "5000", "5001", "--val-crops", "4",
        "--val-every", "3", "--log-every", "1", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(scope="module")
def room(cache_dir):
    return load_room(1000, cache_dir, surface_samples=20000)


def test_crop_frame_matches_the_reconstruction_windows():
    config = TrainConfig()
    grid = WindowGrid.from_sizes(config.window_size, config.voxel_size, config.margin)
    assert math.isclose(config.grid.crop_size, grid.crop_size) and math.isclose(grid.crop_size, 1.6)
    window = np.array([1, -2, 0])
    points = np.random.default_rng(0).uniform(-3, 3, (100, 3))
    np.testing.assert_allclose(to_crop(points, grid.center(window), np.eye(3), grid.crop_size),
                               grid.to_unit(points, window), atol=1e-6)


def test_crops_are_in_the_unit_cube_and_labels_are_exact(room):
    config = TrainConfig(max_points=1000, uniform_queries=200, near_queries=200)
    rng = np.random.default_rng(1)
    for _ in range(6):
        crop = sample_crop(room, config, rng)
        assert crop is not None
        assert config.min_points <= len(crop.points) <= config.max_points
        assert np.all(np.abs(crop.points) <= 0.5)
        assert np.all(np.abs(crop.queries) <= config.query_extent + 1e-6)
        assert np.allclose(crop.rotation @ crop.rotation.T, np.eye(3))
        world = from_crop(crop.queries, crop.centre, crop.rotation, config.grid.crop_size)
        np.testing.assert_array_equal(crop.labels, room.scene.occupancy(world))
        np.testing.assert_allclose(to_crop(world, crop.centre, crop.rotation, config.grid.crop_size),
                                   crop.queries, atol=1e-5)
        assert 0 < crop.labels[crop.n_uniform:].mean() < 1  # near-surface queries straddle the surface


def test_crops_are_deterministic(room):
    config = TrainConfig(max_points=300, uniform_queries=50, near_queries=50)
    a = sample_crop(room, config, np.random.default_rng(7))
    b = sample_crop(room, config, np.random.default_rng(7))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.queries, b.queries)


def test_tiny_run_resume_and_export(tmp_path, cache_dir):
    common = TINY + ["--name", "tiny", "--out-dir", str(tmp_path), "--cache-dir", str(cache_dir)]
    result = main(common + ["--steps", "4"])
    assert result["step"] == 4
    last = torch.load(tmp_path / "tiny" / "last.pt", weights_only=False)
    assert last["step"] == 4 and all(math.isfinite(h["loss"]) for h in last["history"])
    assert (tmp_path / "tiny" / "train.log").read_text().count("step 4/4") == 1

    result = main(common + ["--steps", "6", "--resume"])
    assert result["step"] == 6
    log = (tmp_path / "tiny" / "train.log").read_text()
    assert "resumed" in log and "at step 4" in log and "step 5/6" in log and "step 1/6" not in log

    path = main(common + ["--export", str(tmp_path / "model.pt")])
    model = load_model(path)
    assert model.config.grid_resolution == 8
    metadata = torch.load(path, weights_only=True)["metadata"]
    assert metadata["steps"] == 6 and 0.0 <= metadata["val_iou"] <= 1.0
    assert "--export" in metadata["command"] and "--steps 4" in metadata["command"]
    for key in ("data", "hardware", "wall_minutes", "val_history", "train_config"):
        assert key in metadata


def test_training_lowers_the_loss_on_one_batch(room):
    config = TrainConfig(max_points=400, uniform_queries=100, near_queries=100, batch_size=2)
    config.model.grid_resolution, config.model.unet_levels, config.model.unet_base_channels = 8, 2, 8
    crops = validation_crops([room], TrainConfig(**{**config.__dict__, "val_crops": 2}))
    from sa_convonet_ros.model import ConvONet
    from sa_convonet_ros.train import collate
    torch.manual_seed(0)
    model = ConvONet(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    points, mask, queries, labels = collate(crops, torch.device("cpu"))
    before = evaluate(model, crops, torch.device("cpu"), 2)["loss"]
    for _ in range(15):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(points, queries, mask), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert evaluate(model, crops, torch.device("cpu"), 2)["loss"] < before


def test_every_setting_of_the_training_has_a_flag():
    args = build_parser().parse_args(["--near-sigmas", "0.02", "0.04", "--no-augment", "--warmup-steps", "7",
                                      "--padding", "0.2", "--decoder-blocks", "3", "--max-minutes", "1.5"])
    config = config_from_args(args)
    assert config.near_sigmas == (0.02, 0.04) and config.augment is False and config.warmup_steps == 7
    assert config.model.padding == 0.2 and config.model.decoder_blocks == 3 and config.max_minutes == 1.5
    assert config.model.grid_resolution == TrainConfig().model.grid_resolution  # not given: the default
    options = {option for action in build_parser()._actions for option in action.option_strings}
    for item in dataclasses.fields(TrainConfig) + dataclasses.fields(ModelConfig):
        assert item.name == "model" or "--" + item.name.replace("_", "-") in options, item.name


def test_a_bad_architecture_is_named_by_its_flags(capsys):
    with pytest.raises(SystemExit):
        main(["--grid-resolution", "30", "--unet-levels", "3"])
    assert "--grid-resolution must be divisible by 4 (2 to the power --unet-levels - 1)" in capsys.readouterr().err
