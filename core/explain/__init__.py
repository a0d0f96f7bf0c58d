"""Grad-CAM family heat maps over pytorch_grad_cam, in the slice's own pixel space.

from core import explain
res = explain.cam(predictor, slice01, "gradcam", task="tumor_type")   # class: the slice's argmax
res = explain.cam(predictor, slice01, "gradcam", class_index=pred.class_index("tumor_type"))
res.heatmap  # (H, W) float32 in [0, 1], same pixels as slice01; overlay with core.viz.overlay

model.py     ExplainableModel: the one interface the engine talks to (a Predictor or a TaskModel
             hands one out through `explainable(task)`; LoadedExplainable adapts a zoo model)
methods.py   the CAM methods: pytorch-grad-cam classes with a thin raw-maximum recorder
engine.py    cam(): hooks, precision, geometry back to the slice's pixels, the cache
metrics.py   pointing game and energy in box (`python -m core cam-eval`)
"""

from core.explain.engine import CACHE_SIZE, CamResult, cache_info, cam, cam_for_case, clear_cache, hook_count
from core.explain.methods import DEFAULT_METHOD, METHODS, CamMethod, method_key
from core.explain.metrics import energy_in_box, pointing_hit
from core.explain.model import ExplainableModel, Explains, LoadedExplainable

__all__ = [
    "cam",
    "cam_for_case",
    "CamResult",
    "cache_info",
    "clear_cache",
    "hook_count",
    "CACHE_SIZE",
    "METHODS",
    "DEFAULT_METHOD",
    "CamMethod",
    "method_key",
    "pointing_hit",
    "energy_in_box",
    "ExplainableModel",
    "Explains",
    "LoadedExplainable",
]
