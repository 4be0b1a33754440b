"""Training script: a tiny run on generated data, resume, export, initialisation from a shipped model."""
import math

import pytest
import torch

from sa_convonet_ros.model import ConvONet, load_model, save_model
from sa_convonet_ros.training import train as train_module
from sa_convonet_ros.training.crops import DataConfig
from sa_convonet_ros.training.train import TrainConfig, Trainer, evaluate, main

TINY_MODEL = ["--grid-resolution", "8", "--unet-levels", "2", "--unet-base-channels", "8", "--c-dim", "8",
              "--hidden-dim", "8"]
TINY = TINY_MODEL + [
    "--max-points", "512", "--uniform-queries", "64", "--near-queries", "64", "--surface-samples", "20000",
    "--batch-size", "2", "--train-seeds", "1000", "1001", "--val-seeds", "5000", "5001", "--val-crops", "4",
    "--val-every", "3", "--log-every", "1", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data_cache")


def test_tiny_run_resume_and_export(tmp_path, cache_dir):
    common = TINY + ["--name", "tiny", "--out-dir", str(tmp_path), "--cache-dir", str(cache_dir)]
    result = main(common + ["--steps", "4"])
    assert result["step"] == 4 and result["steps_this_call"] == 4
    last = torch.load(tmp_path / "tiny" / "last.pt", weights_only=False)
    assert last["step"] == 4 and all(math.isfinite(h["loss"]) for h in last["history"])
    assert (tmp_path / "tiny" / "train.log").read_text().count("step 4/4") == 1

    result = main(common + ["--steps", "6", "--resume"])
    assert result["step"] == 6 and result["steps_this_call"] == 2
    log = (tmp_path / "tiny" / "train.log").read_text()
    assert "resumed" in log and "at step 4" in log and "step 5/6" in log and "step 1/6" not in log

    path = main(common + ["--export", str(tmp_path / "model.pt")])
    model = load_model(path)
    assert model.config.grid_resolution == 8
    metadata = torch.load(path, weights_only=True)["metadata"]
    assert metadata["steps"] == 6 and 0.0 <= metadata["val_iou"] <= 1.0
    assert "--export" in metadata["command"] and "--steps 4" in metadata["command"]
    assert metadata["data"]["world"] == "training"
    for key in ("data", "hardware", "wall_minutes", "val_history", "train_config"):
        assert key in metadata

    last = load_model(main(common + ["--export-last", str(tmp_path / "last.pt")]))
    saved = torch.load(tmp_path / "tiny" / "last.pt", weights_only=False)["model"]
    for name, value in last.state_dict().items():
        torch.testing.assert_close(value, saved[name])
    assert torch.load(tmp_path / "last.pt", weights_only=True)["metadata"]["weights"] == "last"


def test_init_starts_from_a_shipped_model_with_its_architecture(tmp_path, cache_dir):
    torch.manual_seed(3)
    start = ConvONet(TrainConfig().model.__class__(c_dim=8, hidden_dim=8, grid_resolution=8, unet_levels=2,
                                                   unet_base_channels=8))
    save_model(start, tmp_path / "start.pt")
    config = TrainConfig(name="init", init=str(tmp_path / "start.pt"), out_dir=str(tmp_path), device="cpu",
                         threads=1, cache_dir=str(cache_dir))
    trainer = Trainer(config)
    assert trainer.config.model == start.config  # the checkpoint's architecture, not the default one
    for name, value in start.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value)


def test_bf16_training_steps_lower_the_loss(tmp_path, cache_dir):
    data = DataConfig(max_points=400, uniform_queries=100, near_queries=100, surface_samples=20000)
    config = TrainConfig(name="bf16", data=data, batch_size=2, lr=3e-3, precision="bf16", out_dir=str(tmp_path),
                         device="cpu", threads=1, cache_dir=str(cache_dir), train_seeds=(1000, 1001),
                         val_seeds=(1000, 1001), val_crops=2, warmup_steps=1)
    config.model.grid_resolution, config.model.unet_levels, config.model.unet_base_channels = 8, 2, 8
    config.model.c_dim = config.model.hidden_dim = 8
    trainer = Trainer(config, log_file=False)
    rooms, crops = trainer.load_data()
    before = evaluate(trainer.model, crops, trainer.device, 2)["loss"]
    trainer.sampler.batch = lambda rooms, size: crops  # the same batch every step
    for _ in range(15):
        trainer.train_step(rooms)
    assert evaluate(trainer.model, crops, trainer.device, 2)["loss"] < before


def test_validation_scores_each_crop_size_and_averages_them(tmp_path, cache_dir):
    config = TrainConfig(name="scales", data=DataConfig(max_points=300, uniform_queries=50, near_queries=50,
                                                        surface_samples=20000),
                         out_dir=str(tmp_path), device="cpu", threads=1, cache_dir=str(cache_dir),
                         train_seeds=(1000, 1001), val_seeds=(1000, 1001), val_crops=4, val_crop_scales=(1.0, 2.5))
    config.model.grid_resolution, config.model.unet_levels, config.model.unet_base_channels = 8, 2, 8
    trainer = Trainer(config, log_file=False)
    _, crops = trainer.load_data()
    metrics = evaluate(trainer.model, crops, trainer.device, 3)
    small, large = metrics["iou_1.60m"], metrics["iou_4.00m"]
    assert metrics["iou"] == pytest.approx((small + large) / 2)
    alone = evaluate(trainer.model, crops[:2], trainer.device, 3)
    assert alone["iou"] == pytest.approx(small) and "iou_1.60m" not in alone


def test_large_exports_store_half_precision_weights(tmp_path, cache_dir, monkeypatch):
    main(TINY + ["--name", "half", "--out-dir", str(tmp_path), "--cache-dir", str(cache_dir), "--steps", "1"])
    full = main(TINY + ["--name", "half", "--out-dir", str(tmp_path), "--export", str(tmp_path / "full.pt")])
    monkeypatch.setattr(train_module, "SHIPPED_FILE_LIMIT", full.stat().st_size - 1)
    half = main(TINY + ["--name", "half", "--out-dir", str(tmp_path), "--export", str(tmp_path / "half.pt")])
    assert half.stat().st_size < 0.75 * full.stat().st_size
    stored = torch.load(half, weights_only=True)["model"]
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    a, b = load_model(full), load_model(half)
    for name, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], value, atol=1e-2, rtol=1e-2)
        assert b.state_dict()[name].dtype == torch.float32


def test_precision_must_be_known():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
