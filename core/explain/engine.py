"""The heat-map engine: one CAM of one slice, in the slice's own pixel space, cached.

Speed (PERF-NOTES): the model's parameters never require gradients and a forward hook on the
target layer hands the layers above it a fresh leaf (`out.detach().requires_grad_(True)`), so the
backward pass runs only through the layers above the target layer. With bf16 weights the target
activations reach the library as fp32 through a small "tap" module, and the logits are cast to fp32.
The CAM object is always used as a context manager and the model's lock is held while its hooks are
on the shared model; results are cached per (model, task, slice pixels / case key, method, class).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from core.explain.methods import DEFAULT_METHOD, METHODS, method_key
from core.explain.model import ExplainableModel, Explains
from core.preprocess import model_input

CACHE_SIZE = 256


@dataclass
class CamResult:
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], the slice's own pixel space
    raw_max: float  # max of the un-normalised CAM (compare strength across slices)
    method: str
    class_index: int
    class_name: str
    ms: float
    cached: bool = False
    task: str = ""
    model_version: str = ""


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                self.hits += 1
                return self.data[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self.hits = self.misses = 0


_CACHE = _LRU(CACHE_SIZE)


def cache_info() -> dict[str, int]:
    return {"hits": _CACHE.hits, "misses": _CACHE.misses, "size": len(_CACHE.data), "maxsize": _CACHE.size}


def clear_cache() -> None:
    _CACHE.clear()


class _Precision(torch.nn.Module):
    """Runs the shared network in its precision; logits come back fp32 for the library."""

    def __init__(self, network: torch.nn.Module, dtype: torch.dtype, autocast: torch.dtype | None):
        super().__init__()
        self.inner, self.dtype, self.autocast = network, dtype, autocast

    def forward(self, x):
        x = x.to(self.dtype)
        if x.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast is not None:
            with torch.autocast(x.device.type, dtype=self.autocast):
                return self.inner(x).float()
        return self.inner(x).float()


def _slice_to_pixels(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo model_input's geometry: the (S, S) map covers the zero-padded centred square of side
    max(H, W); resize to that square and crop the padding away."""
    h, w = shape
    side = max(h, w)
    sq = cv2.resize(np.asarray(heat, dtype=np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    top, left = (side - h) // 2, (side - w) // 2
    return np.clip(sq[top : top + h, left : left + w], 0.0, 1.0).astype(np.float32)


def _digest(slice01: np.ndarray) -> str:
    a = np.ascontiguousarray(slice01)
    return hashlib.blake2b(a.tobytes() + str(a.shape).encode(), digest_size=16).hexdigest()


def _top_class(model: ExplainableModel, x: torch.Tensor) -> int:
    network, dtype, autocast = model.cam_network()
    with model.lock, torch.inference_mode():
        logits = _Precision(network, dtype, autocast)(x.to(next(network.parameters()).device))
    return int(logits[0].argmax())


def _run_cam(model: ExplainableModel, x: torch.Tensor, key: str, class_index: int) -> tuple[np.ndarray, float]:
    """(CAM at model-input size, raw max) of `key` for `class_index` on the model input `x`."""
    network, dtype, autocast = model.cam_network()
    layer = network.get_submodule(model.spec.cam_layer)
    tap = torch.nn.Identity()

    def detach_hook(_module, _inputs, out):
        # fresh fp32 leaf: backward stops here, the library gets numpy-able activations
        leaf = tap(out.detach().float().requires_grad_(True))
        return leaf.to(out.dtype) if out.dtype != torch.float32 else leaf.clone()

    with model.lock:
        handle = layer.register_forward_hook(detach_hook)
        try:
            cam_class = METHODS[key].engine_class()
            with (
                torch.enable_grad(),
                cam_class(model=_Precision(network, dtype, autocast), target_layers=[tap]) as engine,
            ):
                grey = engine(
                    input_tensor=x.to(next(network.parameters()).device), targets=[ClassifierOutputTarget(class_index)]
                )
                return grey[0], float(engine.raw_max)
        finally:
            handle.remove()
            network.eval()


def cam(
    target: Explains,
    slice01: np.ndarray,
    method: str = DEFAULT_METHOD,
    class_index: int | None = None,
    *,
    task: str = "tumor_type",
    case_key: str | None = None,
    slice_index: int | None = None,
    use_cache: bool = True,
) -> CamResult:
    """Heat map of `method` for one slice ((H, W) or (C, H, W) in [0, 1], as from
    `preprocess.slices`) on the explainable model `target.explainable(task)` (a Predictor, a
    TaskModel, a LoadedExplainable).

    class_index: the class to explain (default: the model's top class for this slice; pass
    `prediction.class_index(task)` to explain the volume verdict).
    case_key + slice_index: a cheap cache key; without them the slice's pixels are hashed.
    """
    key_m = method_key(method)
    arr = np.asarray(slice01, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected one slice (H, W) or (C, H, W), got shape {arr.shape}")
    model = target.explainable(task)
    if not model.spec.cam_layer:
        raise ValueError(f"{model.spec.name} declares no cam_layer")
    x = model_input(arr[None], model.spec)  # (1, C, S, S) fp32
    class_index = _top_class(model, x) if class_index is None else int(class_index)
    key = (
        model.ref,
        id(model.cam_network()[0]),
        model.task,
        key_m,
        class_index,
        (case_key, slice_index) if case_key is not None and slice_index is not None else _digest(arr),
    )
    hit = _CACHE.get(key) if use_cache else None
    if hit is not None:
        return replace(hit, ms=0.0, cached=True)
    t0 = time.perf_counter()
    grey, raw = _run_cam(model, x, key_m, class_index)
    name = model.classes[class_index] if class_index < len(model.classes) else str(class_index)
    res = CamResult(
        _slice_to_pixels(np.nan_to_num(grey), arr.shape[-2:]),
        raw,
        key_m,
        class_index,
        name,
        (time.perf_counter() - t0) * 1e3,
        False,
        model.task,
        model.ref,
    )
    if use_cache:
        _CACHE.put(key, res)
    return res


def cam_for_case(
    predictor: Explains,
    volume_slices: np.ndarray,
    prediction,
    slice_index: int,
    method: str = DEFAULT_METHOD,
    task: str = "tumor_type",
    case_key: str | None = None,
    class_index: int | None = None,
) -> CamResult:
    """Page helper: the CAM of slice `slice_index` for the volume verdict of `task`
    (`class_index` overrides the class)."""
    ci = class_index if class_index is not None else (prediction.class_index(task) if prediction else None)
    return cam(predictor, volume_slices[slice_index], method, ci, task=task, case_key=case_key, slice_index=slice_index)


def hook_count(model) -> int:
    """Forward/backward hooks on every module of `model` (tests: CAM leaves none behind)."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        n += len(getattr(m, "_backward_pre_hooks", {}))
    return n
