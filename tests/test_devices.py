import pytest
import torch

from core.devices import describe_device, select_device


def _no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_without_accelerators_is_cpu(monkeypatch):
    _no_accelerators(monkeypatch)
    assert select_device("auto") == torch.device("cpu")
    assert select_device(None) == torch.device("cpu")
    assert describe_device(select_device("auto")) == "cpu"


def test_auto_prefers_cuda_then_mps(monkeypatch):
    _no_accelerators(monkeypatch)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("AUTO ") == torch.device("cuda:0")


def test_explicit_cuda_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("cuda:5") == torch.device("cpu")  # absent GPU -> CPU, not a crash


def test_requested_accelerator_missing_falls_back_to_cpu(monkeypatch):
    _no_accelerators(monkeypatch)
    assert select_device("cuda") == torch.device("cpu")
    assert select_device("mps") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "cpu0"])
def test_unknown_setting_is_refused(bad):
    with pytest.raises(ValueError, match="NEUROGRADE_DEVICE"):
        select_device(bad)
