"""Where the computation runs: the device settings ('auto', 'cpu', 'cuda:1', 'cuda:0,cuda:1') resolved to
torch devices, and a clock that waits for a device's queued work."""
from __future__ import annotations

import time
import warnings

import torch


def uses_cuda(device: str) -> bool:
    """Whether a device setting ('auto', 'cpu', 'cuda:1', 'cuda:0,cuda:1') computes on CUDA here: 'cuda' on a
    machine without CUDA runs on the CPU (`resolve_device`), and so gets the CPU's settings."""
    spec = (device or "auto").strip().lower()
    if not torch.cuda.is_available():
        return False
    return spec == "auto" or any(name.strip().startswith("cuda") for name in spec.split(","))


def resolve_device(spec: str | torch.device = "auto", strict: bool = False) -> torch.device:
    """'auto' picks CUDA when present. 'cuda' without CUDA warns and falls back to CPU, or raises if strict."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        try:
            device = torch.device(spec)
        except RuntimeError:
            raise ValueError(f"invalid device {spec!r}; use auto, cpu, cuda or cuda:N") from None
        if not torch.cuda.is_available():
            if strict:
                raise ValueError(f"device {spec!r} requested but CUDA is not available")
            warnings.warn(f"device {spec!r} requested but CUDA is not available; using the CPU", stacklevel=2)
            return torch.device("cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise ValueError(f"invalid device {spec!r}; use auto, cpu, cuda or cuda:N")


def synchronized_time(device: torch.device) -> float:
    """`time.perf_counter()` once the device has finished its queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def resolve_devices(spec: str | torch.device = "auto", strict: bool = False) -> list[torch.device]:
    """The devices windows are spread over: 'auto' takes every visible CUDA GPU (else the CPU); a
    comma-separated list ('cuda:0,cuda:1') names them; anything else is one device (`resolve_device`)."""
    text = str(spec or "auto").strip().lower()
    if text == "auto" and torch.cuda.device_count() > 1:
        return [torch.device(f"cuda:{index}") for index in range(torch.cuda.device_count())]
    names = [name.strip() for name in text.split(",") if name.strip()] or ["auto"]
    return [resolve_device(name, strict) for name in names]
