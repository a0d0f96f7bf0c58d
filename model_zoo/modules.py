"""Small operations on torch modules that the builders, the weight sources, the versions and the
fine-tuning helpers all need."""

from __future__ import annotations

import torch
from torch import nn

# pytorch-grad-cam's backward hooks break on in-place activations (VGG's ReLUs are in-place)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile (`_orig_mod`) and DDP/DataParallel (`module`)."""
    for _ in range(4):
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner
    return model


def set_inplace_false(model: nn.Module) -> nn.Module:
    """Turn in-place activations off, so Grad-CAM's hooks work on every zoo model."""
    for m in model.modules():
        if isinstance(m, _ACTIVATIONS):
            m.inplace = False
    return model


def adapt_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv kernel for `in_channels` inputs from an RGB (or any) kernel: the mean over input
    channels, repeated and scaled by old/new so a grey image replicated to every channel gives the
    same activation scale (in_channels=1: the sum of the RGB kernels)."""
    old = weight.shape[1]
    mean = weight.mean(dim=1, keepdim=True)
    return (mean * (old / in_channels)).repeat(1, in_channels, 1, 1).contiguous()


def first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (None when it has none)."""
    for m in unwrap(model).modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None
