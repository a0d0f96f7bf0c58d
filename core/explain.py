"""Grad-CAM family heat maps over pytorch_grad_cam, in the slice's own pixel space.

    from core import explain
    res = explain.cam(predictor, slice01, "gradcam", task="tumor_type")   # class: the slice's argmax
    res = explain.cam(predictor, slice01, "gradcam", class_index=pred.class_index("tumor_type"))
    res.heatmap  # (H, W) float32 in [0, 1], same pixels as slice01; overlay with core.viz.overlay

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
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CamMethod:
    key: str
    class_name: str          # pytorch_grad_cam class
    label: str
    slow: bool = False       # one forward per channel: offer only with a warning
    uses_gradients: bool = True
    note: str = ""


METHODS: dict[str, CamMethod] = {m.key: m for m in (
    CamMethod("gradcam", "GradCAM", "Grad-CAM", note="channel weights = mean gradient"),
    CamMethod("gradcam++", "GradCAMPlusPlus", "Grad-CAM++", note="second-order weights, several objects"),
    CamMethod("xgradcam", "XGradCAM", "XGrad-CAM", note="activation-normalised gradients"),
    CamMethod("layercam", "LayerCAM", "LayerCAM", note="per-pixel positive gradients"),
    CamMethod("eigencam", "EigenCAM", "EigenCAM", uses_gradients=False,
              note="first principal component of the activations; class-agnostic, no backward pass"),
    CamMethod("hirescam", "HiResCAM", "HiResCAM", note="element-wise gradient x activation (faithful)"),
    CamMethod("scorecam", "ScoreCAM", "Score-CAM", slow=True, uses_gradients=False,
              note="one forward pass per channel: tens of seconds on a CPU"),
)}
DEFAULT_METHOD = "gradcam"
CACHE_SIZE = 256


@dataclass
class CamResult:
    heatmap: np.ndarray      # (H, W) float32 in [0, 1], the slice's own pixel space
    raw_max: float           # max of the un-normalised CAM (compare strength across slices)
    method: str
    class_index: int
    class_name: str
    ms: float
    cached: bool = False
    task: str = ""
    model_version: str = ""


# ----------------------------------------------------------------------------------- cache
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


# ------------------------------------------------------------------------- model resolution
_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@dataclass
class _Target:
    model: Any
    spec: Any
    classes: list[str]
    dtype: Any
    autocast: Any
    lock: Any
    ref: str
    task: str


def _lock_for(model) -> threading.RLock:
    with _LOCKS_GUARD:
        lk = _LOCKS.get(model)
        if lk is None:
            lk = _LOCKS[model] = threading.RLock()
        return lk


def _resolve(target, task: str, spec=None) -> _Target:
    import torch

    from core.inference import Predictor, TaskModel

    if isinstance(target, Predictor):
        target = target.model(task)
    if isinstance(target, TaskModel):
        model, dtype, autocast = target.explainable()
        return _Target(model, target.spec, target.classes, dtype, autocast, target.lock, target.ref, target.task)
    if hasattr(target, "model") and hasattr(target, "spec"):          # LoadedModel
        m = target.model.eval()
        for p in m.parameters():
            p.requires_grad_(False)
        return _Target(m, target.spec, list(target.classes), torch.float32, None, _lock_for(m),
                       getattr(target, "ref", ""), getattr(target, "task", task) or task)
    if isinstance(target, torch.nn.Module):
        if spec is None:
            raise ValueError("cam(model, ...) needs spec= (the model's ModelSpec)")
        target.eval()
        for p in target.parameters():
            p.requires_grad_(False)
        n = None
        return _Target(target, spec, [str(i) for i in range(n or 0)], torch.float32, None,
                       _lock_for(target), f"{spec.name}@{id(target):x}", task)
    raise TypeError(f"cam() takes a Predictor, TaskModel, LoadedModel or nn.Module, not {type(target).__name__}")


# ------------------------------------------------------------------------------ the wrapper
def _make_wrapper(t: _Target):
    import torch

    class _Wrapped(torch.nn.Module):
        """Runs the shared model in its precision; logits come back fp32 for the library."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            x = x.to(t.dtype)
            if x.device.type != "mps":
                x = x.contiguous(memory_format=torch.channels_last)
            if t.autocast is not None:
                with torch.autocast(x.device.type, dtype=t.autocast):
                    return self.inner(x).float()
            return self.inner(x).float()

    return _Wrapped(t.model)


def _recording(cls):
    """A subclass of a CAM method that remembers the max of the raw (un-normalised) CAM."""

    class Recording(cls):
        raw_max = 0.0

        def get_cam_image(self, *args, **kwargs):
            img = super().get_cam_image(*args, **kwargs)
            self.raw_max = float(np.maximum(np.asarray(img, dtype=np.float64), 0).max()) if np.size(img) else 0.0
            return img

    Recording.__name__ = f"Recording{cls.__name__}"
    return Recording


_CLASSES: dict[str, type] = {}


def _method_class(key: str):
    if key not in _CLASSES:
        import pytorch_grad_cam
        import pytorch_grad_cam.score_cam as _sc

        class _Quiet:                           # ScoreCAM draws a tqdm bar per slice: keep stderr clean
            @staticmethod
            def tqdm(it, *a, **k):
                return it

        _sc.tqdm = _Quiet
        _CLASSES[key] = _recording(getattr(pytorch_grad_cam, METHODS[key].class_name))
    return _CLASSES[key]


def _slice_to_pixels(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo model_input's geometry: the (S, S) map covers the zero-padded centred square of side
    max(H, W); resize to that square and crop the padding away."""
    import cv2

    h, w = shape
    side = max(h, w)
    sq = cv2.resize(np.asarray(heat, dtype=np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    top, left = (side - h) // 2, (side - w) // 2
    out = sq[top:top + h, left:left + w]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _digest(slice01: np.ndarray) -> str:
    a = np.ascontiguousarray(slice01)
    return hashlib.blake2b(a.tobytes() + str(a.shape).encode(), digest_size=16).hexdigest()


# ------------------------------------------------------------------------------------- cam
def cam(target, slice01: np.ndarray, method: str = DEFAULT_METHOD, class_index: int | None = None, *,
        task: str = "tumor_type", case_key: str | None = None, slice_index: int | None = None,
        spec=None, use_cache: bool = True) -> CamResult:
    """Heat map of `method` for one slice ((H, W) or (C, H, W) in [0, 1], as from
    `preprocess.slices`) on `task`'s model of `target` (a Predictor, its TaskModel, a LoadedModel,
    or an nn.Module with spec=).

    class_index: the class to explain (default: the model's top class for this slice; pass
    `prediction.class_index(task)` to explain the volume verdict).
    case_key + slice_index: a cheap cache key; without them the slice's pixels are hashed.
    """
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from core.preprocess import model_input

    key_m = method.lower().replace("-", "").replace("_", "")
    key_m = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}.get(key_m, key_m)
    if key_m not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
    arr = np.asarray(slice01, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected one slice (H, W) or (C, H, W), got shape {arr.shape}")
    t = _resolve(target, task, spec)
    x = model_input(arr[None], t.spec)                  # (1, C, S, S) fp32
    layer = t.model.get_submodule(t.spec.cam_layer) if t.spec.cam_layer else None
    if layer is None:
        raise ValueError(f"{t.spec.name} declares no cam_layer")

    if class_index is None:
        from core.inference import softmax

        with t.lock, torch.inference_mode():
            lg = _make_wrapper(t)(x.to(next(t.model.parameters()).device))
        class_index = int(softmax(lg.cpu().numpy())[0].argmax())
    class_index = int(class_index)
    key = (t.ref, id(t.model), t.task, key_m, class_index,
           (case_key, slice_index) if case_key is not None and slice_index is not None else _digest(arr))
    if use_cache:
        hit = _CACHE.get(key)
        if hit is not None:
            return CamResult(hit.heatmap, hit.raw_max, hit.method, hit.class_index, hit.class_name,
                             0.0, True, hit.task, hit.model_version)

    t0 = time.perf_counter()
    cls = _method_class(key_m)
    tap = torch.nn.Identity()

    def detach_hook(_module, _inputs, out):
        # fresh fp32 leaf: backward stops here, the library gets numpy-able activations
        leaf = tap(out.detach().float().requires_grad_(True))
        return leaf.to(out.dtype) if out.dtype != torch.float32 else leaf.clone()

    wrapped = _make_wrapper(t)
    with t.lock:
        handle = layer.register_forward_hook(detach_hook)
        try:
            with torch.enable_grad(), cls(model=wrapped, target_layers=[tap]) as engine:
                if key_m == "scorecam":
                    engine.batch_size = 32
                grey = engine(input_tensor=x.to(next(t.model.parameters()).device),
                              targets=[ClassifierOutputTarget(class_index)])
                raw = float(engine.raw_max)
        finally:
            handle.remove()
            t.model.eval()
    heat = _slice_to_pixels(np.nan_to_num(grey[0]), arr.shape[-2:])
    name = t.classes[class_index] if class_index < len(t.classes) else str(class_index)
    res = CamResult(heat, raw, key_m, class_index, name, (time.perf_counter() - t0) * 1e3, False,
                    t.task, t.ref)
    if use_cache:
        _CACHE.put(key, res)
    return res


def cam_for_case(predictor, volume_slices: np.ndarray, prediction, slice_index: int,
                 method: str = DEFAULT_METHOD, task: str = "tumor_type", case_key: str | None = None,
                 class_index: int | None = None) -> CamResult:
    """Page helper: the CAM of slice `slice_index` for the volume verdict of `task`
    (`class_index` overrides the class)."""
    ci = class_index if class_index is not None else (prediction.class_index(task) if prediction else None)
    return cam(predictor, volume_slices[slice_index], method, ci, task=task, case_key=case_key,
               slice_index=slice_index)


def hook_count(model) -> int:
    """Forward/backward hooks on every module of `model` (tests: CAM leaves none behind)."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        n += len(getattr(m, "_backward_pre_hooks", {}))
    return n


# -------------------------------------------------------------------------- quality metrics
def pointing_hit(heat: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Pointing game: is the heat map's argmax inside the box (cx, cy, w, h as image fractions)?"""
    h, w = heat.shape
    iy, ix = np.unravel_index(int(np.argmax(heat)), heat.shape)
    cx, cy, bw, bh = box
    return (cx - bw / 2) * w <= ix + 0.5 <= (cx + bw / 2) * w and (cy - bh / 2) * h <= iy + 0.5 <= (cy + bh / 2) * h


def energy_in_box(heat: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Fraction of the heat map's total mass inside the box (cx, cy, w, h as fractions)."""
    h, w = heat.shape
    cx, cy, bw, bh = box
    x0, x1 = int(max(0, np.floor((cx - bw / 2) * w))), int(min(w, np.ceil((cx + bw / 2) * w)))
    y0, y1 = int(max(0, np.floor((cy - bh / 2) * h))), int(min(h, np.ceil((cy + bh / 2) * h)))
    total = float(heat.sum())
    return float(heat[y0:y1, x0:x1].sum() / total) if total > 0 else 0.0
