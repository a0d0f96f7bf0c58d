"""Tiny models and stub models whose outputs the tests control."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from core.io.volume import Volume  # noqa: E402

TYPE_CLASSES = ["glioma", "meningioma", "pituitary"]
PRESENCE_CLASSES = ["no_tumor", "tumor"]
GRADE_CLASSES = ["G2", "G3"]
TINY = 32  # px: vgg19_slim runs at any size >= 32


def tiny_loaded(task: str, classes: list[str], sequences=None, size: int = TINY, seed: int = 0, arch="vgg19_slim"):
    """A LoadedModel built in memory (random weights, small input size)."""
    from model_zoo import LoadedModel, create, get_spec

    torch.manual_seed(seed)
    spec = dataclasses.replace(get_spec(arch), input_size=size)
    model = create(arch, len(classes)).eval()
    card = {
        "task": task,
        "version": "t1",
        "classes": classes,
        "architecture": arch,
        "input": {"size": size, "channels": 3, "sequences": sequences},
        "temperature": 1.0,
    }
    return LoadedModel(
        model=model, spec=spec, card=card, classes=list(classes), temperature=1.0, task=task, version="t1"
    )


class Stub(torch.nn.Module):
    """logits = base + slope * (mean input intensity of the first channel): bright slices and
    dark slices get outputs the test chooses. Has a conv (the CAM layer) and a dropout."""

    def __init__(self, base, slope):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.drop = torch.nn.Dropout(0.0)
        self.register_buffer("base", torch.tensor(base, dtype=torch.float32))
        self.register_buffer("slope", torch.tensor(slope, dtype=torch.float32))

    def forward(self, x):
        feat = self.conv(x)
        m = x[:, 0].float().mean(dim=(1, 2))
        return self.drop(self.base[None] + self.slope[None] * m[:, None] + 0 * feat.mean())


def stub_loaded(task: str, classes: list[str], base, slope, sequences=None):
    from model_zoo import LoadedModel, ModelSpec

    spec = ModelSpec(
        name="stub",
        builder=lambda *a: None,
        input_size=8,
        in_channels=3,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        cam_layer="conv",
    )
    card = {
        "task": task,
        "version": "stub",
        "classes": classes,
        "architecture": "stub",
        "input": {"size": 8, "channels": 3, "sequences": sequences},
        "temperature": 1.0,
    }
    return LoadedModel(
        model=Stub(base, slope).eval(),
        spec=spec,
        card=card,
        classes=list(classes),
        temperature=1.0,
        task=task,
        version="stub",
    )


def phantom(n: int = 6, h: int = 48, w: int = 40, bright: tuple[int, ...] = (), seed: int = 0) -> np.ndarray:
    """Brain-like slices: an elliptical 'head' on a black background; `bright` slices get a lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    head = (((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.40 * w)) ** 2) < 1
    out = np.zeros((n, h, w), np.float32)
    for i in range(n):
        img = head * (0.35 + 0.1 * rng.random((h, w)))
        if i in bright:
            img = img + head * 0.5
        out[i] = np.clip(img, 0, 1)
    return out


def volume_of(slices01: np.ndarray, channels: dict | None = None, modality="MR") -> Volume:
    """A Volume whose axial display slices are `slices01` (undo the display flips)."""
    arr = np.ascontiguousarray(slices01[:, ::-1, ::-1])
    vol = Volume(array=arr.astype(np.float32), spacing=(1.0, 1.0, 1.0), affine=np.eye(4), modality=modality)
    if channels:
        chans = {k: np.ascontiguousarray(v[:, ::-1, ::-1]).astype(np.float32) for k, v in channels.items()}
        first = next(iter(chans))
        vol = Volume(array=chans[first], spacing=(1.0, 1.0, 1.0), affine=np.eye(4), channels=chans, modality=modality)
    return vol


def save_biased(task: str, version: str, classes: list[str], bias, sequences=None, **card):
    """A 32 px vgg19_slim whose head bias makes it confident of one class, saved as a user version
    (card: extra card keys, e.g. metrics); returns its folder."""
    from core.zoo import save_checkpoint
    from model_zoo import create

    torch.manual_seed(len(classes))
    model = create("vgg19_slim", len(classes))
    with torch.no_grad():
        model.head.fc.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return save_checkpoint(
        model,
        {"architecture": "vgg19_slim", "classes": list(classes), "input": {"size": 32, "sequences": sequences}, **card},
        task,
        version,
    )


def auc_card(lo: float, hi: float, task: str = "grade") -> dict:
    """Card metrics with one held-out AUC interval (cross-validation, at the task's primary level)."""
    key = "patient_auc" if task == "grade" else "auc"
    return {"metrics": {"cv": {"folds": 4, "mean": {key: (lo + hi) / 2}, "ci95": {key: [lo, hi]}}, "test": None}}
