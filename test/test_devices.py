"""Device settings resolved to torch devices."""
import pytest
import torch

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.devices import resolve_device, resolve_devices, uses_cuda


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            assert resolve_device("cuda").type == "cpu"
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda", strict=True)


def test_resolve_devices_lists_every_device_to_use():
    assert resolve_devices("cpu") == [torch.device("cpu")]
    assert resolve_devices(" cpu , cpu ") == [torch.device("cpu")] * 2
    gpus = torch.cuda.device_count()
    assert len(resolve_devices("auto")) == max(gpus, 1)  # every visible GPU, else the CPU
    with pytest.raises(ValueError, match="invalid device"):
        resolve_devices("cpu,tpu")


@pytest.mark.parametrize("available", [True, False])
def test_uses_cuda_follows_the_device_actually_used(monkeypatch, available):
    """'cuda' on a machine without CUDA falls back to the CPU: it must get the CPU's settings too."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    for setting in ("cuda", "cuda:1", "cuda:0,cuda:1", "auto", "", "cpu,cuda:0"):
        assert uses_cuda(setting) == available, setting
    assert not uses_cuda("cpu")
    expected = "auto:gpu" if available else "auto:cpu"
    assert get_profile("auto", "cuda").profile == get_profile("auto", "auto").profile == expected
    assert get_profile("auto", "cpu").profile == "auto:cpu"
