"""Which torch device to compute on: the NEUROGRADE_DEVICE setting resolved against the machine."""

from __future__ import annotations

import logging
import re

import torch

log = logging.getLogger(__name__)

_VALID = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(setting: str | None = "auto") -> torch.device:
    """Resolve a device setting: "auto" (first GPU, else Apple MPS, else CPU), "cpu", "mps",
    "cuda" or "cuda:N". A requested accelerator that is not there falls back to the CPU with a
    logged warning (the app must still run); an unknown setting is a ValueError."""
    s = (setting or "auto").strip().lower()
    if not _VALID.match(s):
        raise ValueError(f"NEUROGRADE_DEVICE must be auto, cpu, mps, cuda or cuda:N, got {setting!r}")
    if s == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if s.startswith("cuda"):
        index = int(s.split(":")[1]) if ":" in s else 0
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return torch.device("cuda", index)
        log.warning("device %s requested but not available; using the CPU", s)
        return torch.device("cpu")
    if s == "mps":
        if _mps_available():
            return torch.device("mps")
        log.warning("device mps requested but not available; using the CPU")
        return torch.device("cpu")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A short human label, e.g. "cuda:0 (NVIDIA H100)" or "cpu"."""
    if device.type == "cuda":
        try:
            return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
        except Exception:  # noqa: BLE001 - a label must never break the page
            return f"cuda:{device.index or 0}"
    return device.type
