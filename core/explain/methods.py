"""The CAM methods on offer: pytorch-grad-cam's classes, each with a thin subclass that records
the raw (un-normalised) CAM maximum, so heat-map strength can be compared across slices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytorch_grad_cam
import torch
import torch.nn.functional as F


class RawMax:
    """Mixin for a pytorch-grad-cam class: remembers the max of the raw CAM of the last call."""

    raw_max = 0.0

    def get_cam_image(self, *args, **kwargs):
        img = super().get_cam_image(*args, **kwargs)
        self.raw_max = float(np.maximum(np.asarray(img, dtype=np.float64), 0).max()) if np.size(img) else 0.0
        return img


class QuietScoreCAM(pytorch_grad_cam.ScoreCAM):
    """Score-CAM with the library's channel weights (softmax over channels of the target score of
    the input masked by each upsampled, min-max normalised activation map), computed without the
    progress bar the library draws on stderr for every slice."""

    batch_size = 32

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        with torch.no_grad():
            maps = torch.from_numpy(activations).to(self.device)
            maps = F.interpolate(maps, size=input_tensor.shape[-2:], mode="bilinear", align_corners=True)
            flat = maps.flatten(2)
            lo, hi = flat.min(-1)[0][:, :, None, None], flat.max(-1)[0][:, :, None, None]
            masked = input_tensor[:, None] * ((maps - lo) / (hi - lo + 1e-8))[:, :, None]
            scores = []
            for target, images in zip(targets, masked):
                for i in range(0, images.size(0), self.batch_size):
                    scores += [target(o).cpu().item() for o in self.model(images[i : i + self.batch_size])]
            scores = torch.tensor(scores).view(activations.shape[0], activations.shape[1])
            return torch.softmax(scores, dim=-1).numpy()


@dataclass(frozen=True)
class CamMethod:
    key: str
    cam_class: type  # a pytorch-grad-cam class
    label: str
    slow: bool = False  # one forward per channel: offer only with a warning
    uses_gradients: bool = True
    note: str = ""

    @property
    def class_name(self) -> str:
        return self.cam_class.__name__

    def engine_class(self) -> type:
        """The class the engine instantiates: the method with RawMax."""
        return _RECORDING[self.key]


METHODS: dict[str, CamMethod] = {
    m.key: m
    for m in (
        CamMethod("gradcam", pytorch_grad_cam.GradCAM, "Grad-CAM", note="channel weights = mean gradient"),
        CamMethod(
            "gradcam++", pytorch_grad_cam.GradCAMPlusPlus, "Grad-CAM++", note="second-order weights, several objects"
        ),
        CamMethod("xgradcam", pytorch_grad_cam.XGradCAM, "XGrad-CAM", note="activation-normalised gradients"),
        CamMethod("layercam", pytorch_grad_cam.LayerCAM, "LayerCAM", note="per-pixel positive gradients"),
        CamMethod(
            "eigencam",
            pytorch_grad_cam.EigenCAM,
            "EigenCAM",
            uses_gradients=False,
            note="first principal component of the activations; class-agnostic, no backward pass",
        ),
        CamMethod(
            "hirescam", pytorch_grad_cam.HiResCAM, "HiResCAM", note="element-wise gradient x activation (faithful)"
        ),
        CamMethod(
            "scorecam",
            QuietScoreCAM,
            "Score-CAM",
            slow=True,
            uses_gradients=False,
            note="one forward pass per channel: tens of seconds on a CPU",
        ),
    )
}
DEFAULT_METHOD = "gradcam"
_RECORDING = {k: type(f"Recording{m.class_name}", (RawMax, m.cam_class), {}) for k, m in METHODS.items()}
_ALIASES = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}


def method_key(name: str) -> str:
    """The METHODS key of a method name as people write it ("Grad-CAM++" -> "gradcam++")."""
    key = name.lower().replace("-", "").replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose from {', '.join(METHODS)}")
    return key
