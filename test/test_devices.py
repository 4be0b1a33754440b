"""Device settings resolved to torch devices."""
import pytest
import torch

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


def test_uses_cuda_follows_the_setting_and_asks_torch_only_for_auto():
    assert uses_cuda("cuda:1") and uses_cuda("cuda:0,cuda:1")
    assert not uses_cuda("cpu")
    assert uses_cuda("auto") == torch.cuda.is_available()
    assert uses_cuda("") == torch.cuda.is_available()
