"""The device round's dry run: the same stages as on a lent GPU, on this CPU, without Open3D (as there)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sa_convonet_ros.model import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("round")
    shim = tmp_path_factory.mktemp("shim")
    (shim / "open3d").mkdir()
    (shim / "open3d" / "__init__.py").write_text("raise ImportError('no open3d on the GPU machine')\n")
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(["bash", "scripts/device_round.sh", "--dry-run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    return result, out


def test_dry_run_passes_every_stage(dry_run):
    result, out = dry_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dry_run"] is True
    for stage in ("train_default", "train_gpu", "export_default", "export_default_last", "export_gpu", "bench",
                  "gpu_tests"):
        assert report["stages"][stage]["exit"] == 0, stage
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back


def test_dry_run_trains_and_exports_loadable_priors(dry_run):
    _, out = dry_run
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoints"] == ["default.pt", "default_last.pt", "gpu.pt"]
    shipped = load_model(None)
    default = load_model(out / "default.pt")
    assert default.config == shipped.config  # resumed from the shipped prior, same architecture
    assert load_model(out / "gpu.pt").config.grid_resolution == 16  # the dry run's small GPU architecture
    for name in ("default", "gpu"):
        summary = report["training"][name]
        assert summary["steps_this_call"] > 0 and 0.0 <= summary["best_iou"] <= 1.0
        assert summary["history"] and summary["data_seconds"] > 0
        metadata = torch.load(out / f"{name}.pt", map_location="cpu", weights_only=False)["metadata"]
        # crops grow with their scan's spacing as the windows do, validated at the scales they grow to
        assert metadata["train_config"]["data"]["crop_scale_follows_spacing"] is True
        assert metadata["data"]["val_crop_scales"] == [1.0, 2.0, 3.0]


def test_dry_run_measures_a_room_and_runs_the_gpu_tests(dry_run):
    _, out = dry_run
    report = json.loads((out / "report.json").read_text())
    bench = report["bench"]
    assert bench["points"] > 1000 and bench["profiles"][0]["profile"] == "fast"
    assert bench["profiles"][0]["faces"] > 0 and bench["profiles"][0]["seconds"] > 0
    assert "skipped" in report["gpu_tests"]  # no CUDA here
