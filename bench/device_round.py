"""The stages of a device round (run through scripts/device_round.sh), each under its own time cap.

    python -m bench.device_round --out OUT [--dry-run]

1. environment: nvidia-smi, torch, the CUDA device and its capability;
2. pre-training of two priors side by side on the device, on data generated there (crops that grow with
   their scan's spacing as the windows do, scales 1-3): `default` (the shipped
   CPU architecture, resumed from sa_convonet_ros/models/default.pt) and `gpu` (the published 64^3
   architecture, resumed from sa_convonet_ros/models/gpu.pt when it exists); bf16 autocast, fp32 when
   bf16 fails; the learning rate decays over the wall-clock budget; the best-validation models are
   exported to OUT/default.pt and OUT/gpu.pt, the fine-tuned prior's last weights to OUT/default_last.pt;
3. the GPU speed measurements (bench/bench_device.py);
4. the CUDA tests (test/test_gpu.py).
OUT/report.json gathers every stage's exit code and seconds, the training summaries (steps, losses,
validation IoU, data and training seconds) and the measurements; OUT/*.log hold the logs.
`--dry-run` runs the same stages on the CPU with tiny data, models and budgets.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PRIOR = "sa_convonet_ros/models/default.pt"
GPU_PRIOR = "sa_convonet_ros/models/gpu.pt"
# The windows grow with a sparse map's spacing (window_scale.py), so the prior sees its unit cube at those
# scales too: each scan's crops grow with its spacing as the windows would (scales 1 to 3 for voxels of
# 2-14 cm), times 1-1.3; free scales of 1-3 lost after the test-time optimisation (models/MODEL_CARD.md).
# Validated at three scales, the best model by their mean IoU.
CROP_SCALES = ["--crop-scale-range", "1", "1.3", "--crop-scale-follows-spacing", "--scan-voxel-range", "0.02", "0.14",
               "--val-crop-scales", "1", "2", "3"]
PUBLISHED_ARCHITECTURE = ["--grid-resolution", "64", "--unet-levels", "4", "--unet-base-channels", "32",
                          "--c-dim", "32", "--hidden-dim", "32"]


@dataclass
class Budget:
    """Caps (seconds) and sizes of one round."""

    device: str
    train_cap: float  # both priors train side by side within this
    train_minutes: float  # each trainer's own stop (its data loading and export come on top)
    bench_cap: float
    test_cap: float
    data: list[str]  # training data flags
    batch: dict[str, int]
    gpu_architecture: list[str]
    bench: list[str]


REAL = Budget(
    device="cuda", train_cap=360, train_minutes=4.3, bench_cap=100, test_cap=45,
    data=["--train-seeds", "1000", "1120", "--val-seeds", "5000", "5008", "--val-crops", "192", "--random-scans",
          "2", "--val-every", "250", "--log-every", "50", "--threads", "4", "--data-workers", "7", *CROP_SCALES],
    batch={"default": 64, "gpu": 32}, gpu_architecture=PUBLISHED_ARCHITECTURE,
    bench=["--size", "10", "10", "3", "--points", "1000000", "--profiles", "fast"])
DRY = Budget(
    # Caps with room for a busy CPU: the dry run checks that every stage works, not how fast.
    device="cpu", train_cap=150, train_minutes=0.25, bench_cap=180, test_cap=120,
    data=["--train-seeds", "1000", "1002", "--val-seeds", "5000", "5001", "--val-crops", "4", "--surface-samples",
          "20000", "--image-scale", "0.15", "--caster", "torch", "--max-points", "512", "--uniform-queries", "64",
          "--near-queries", "64", "--val-every", "5", "--log-every", "5", "--threads", "1", *CROP_SCALES],
    batch={"default": 2, "gpu": 1},
    gpu_architecture=["--grid-resolution", "16", "--unet-levels", "2", "--unet-base-channels", "8"],
    bench=["--size", "3", "3", "2.5", "--points", "20000", "--poses", "4", "--image-scale", "0.3",
           "--iterations", "2", "--profiles", "fast"])


class Round:
    def __init__(self, out: Path, budget: Budget, work: Path):
        self.out, self.budget, self.work = out, budget, work
        self.stages: dict[str, dict] = {}
        self.lock = threading.Lock()

    def say(self, message: str) -> None:
        with self.lock, open(self.out / "round.log", "a") as log:
            log.write(f"[round {time.strftime('%H:%M:%S')}] {message}\n")
        print(f"[round] {message}", flush=True)

    def run(self, name: str, command: list[str], cap: float, log: str | None = None) -> int:
        """One command under a time cap, appended to OUT/<log>.log; returns its exit code (124: timeout)."""
        began = time.time()
        with open(self.out / f"{log or name}.log", "a") as handle:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            try:
                code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=max(cap, 1)).returncode
            except subprocess.TimeoutExpired:
                code = 124
        seconds = round(time.time() - began, 1)
        with self.lock:
            self.stages[name] = {"exit": code, "seconds": seconds}
        self.say(f"{name}: exit {code} after {seconds} s (cap {cap:.0f} s)")
        return code

    def environment(self) -> None:
        self.run("environment", ["nvidia-smi"] if self.budget.device == "cuda" else ["uname", "-a"], 30, "round")
        probe = ("import platform, torch; cuda = torch.cuda.is_available(); "
                 "print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', cuda); "
                 "cuda and print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0), "
                 "round(torch.cuda.get_device_properties(0).total_memory / 2**30), 'GiB')")
        self.run("torch", [sys.executable, "-c", probe], 60, "round")

    def train_prior(self, name: str, init: str | None, extra: list[str]) -> None:
        """Train one prior within the training cap (bf16, then fp32 if bf16 fails), then export it."""
        budget, began = self.budget, time.time()
        the_run = [sys.executable, "-m", "sa_convonet_ros.training.train", "--name", name, "--out-dir",
                   str(self.work / "runs")]
        command = [*the_run, "--cache-dir", str(self.work / "cache"), "--device", budget.device, "--batch-size",
                   str(budget.batch[name]), "--lr-schedule", "time", "--warmup-steps", "20",
                   "--report", str(self.work / f"train_{name}.json"), *budget.data, *extra]
        if init:
            command += ["--init", init, "--lr", "5e-4"]
        minutes = ["--max-minutes", str(budget.train_minutes)]
        if self.run(f"train_{name}", command + minutes + ["--precision", "bf16"], budget.train_cap) != 0:
            left = budget.train_cap - (time.time() - began)
            if left > 60:
                subprocess.run(["rm", "-rf", str(self.work / "runs" / name)])
                fallback = ["--max-minutes", f"{max(0.1, (left - 60) / 60):.2f}", "--precision", "fp32"]
                self.run(f"train_{name}_fp32", command + fallback, left, f"train_{name}")
        self.run(f"export_{name}", the_run + ["--export", str(self.out / f"{name}.pt")], 60, f"train_{name}")
        if name == "default":  # fine-tuned from the shipped prior, whose step-0 IoU its best may well be
            self.run("export_default_last", the_run + ["--export-last", str(self.out / "default_last.pt")], 60,
                     "train_default")

    def training(self) -> None:
        gpu_init = GPU_PRIOR if Path(GPU_PRIOR).is_file() else None
        threads = [threading.Thread(target=self.train_prior, args=("default", DEFAULT_PRIOR, [])),
                   threading.Thread(target=self.train_prior, args=("gpu", gpu_init, self.budget.gpu_architecture))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def measurements(self) -> None:
        budget = self.budget
        self.run("bench", [sys.executable, "-m", "bench.bench_device", "--device", budget.device, "--json",
                           str(self.work / "bench.json"), *budget.bench], budget.bench_cap, "measurements")
        self.run("gpu_tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test/test_gpu.py"],
                 budget.test_cap, "measurements")  # last in the log: its final line is the tests' summary

    def report(self, dry_run: bool) -> dict:
        def read(path: Path):
            return json.loads(path.read_text()) if path.is_file() else None

        tests = (self.out / "measurements.log").read_text().strip().splitlines()
        report = {"dry_run": dry_run, "stages": self.stages,
                  "training": {name: read(self.work / f"train_{name}.json") for name in ("default", "gpu")},
                  "checkpoints": sorted(p.name for p in self.out.glob("*.pt")),
                  "bench": read(self.work / "bench.json"), "gpu_tests": tests[-1] if tests else None}
        (self.out / "report.json").write_text(json.dumps(report, indent=2))
        return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/device_round"))
    parser.add_argument("--dry-run", action="store_true", help="the same stages on the CPU, tiny budgets")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "round.log").write_text("")
    with tempfile.TemporaryDirectory() as work:
        round_ = Round(args.out, DRY if args.dry_run else REAL, Path(work))
        round_.say(f"device round{' (dry run)' if args.dry_run else ''}, results in {args.out}")
        round_.environment()
        round_.training()
        round_.measurements()
        report = round_.report(args.dry_run)
    failed = [name for name, stage in report["stages"].items() if stage["exit"] != 0 and name != "environment"]
    round_.say(f"done: checkpoints {report['checkpoints']}, tests: {report['gpu_tests']}, failed stages: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
