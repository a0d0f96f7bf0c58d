"""Augmentation of MRI slice batches, on tensors in [0, 1] (N, C, H, W), cheap on a CPU.

One random affine per slice (rotation, mild zoom = a gentle random-resized-crop, shift,
left-right flip: an axial brain slice is nearly symmetric, and the flip only swaps hemispheres)
in a single `grid_sample`, then intensity jitter (gamma, contrast, brightness). Background stays 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 12.0
    zoom: tuple[float, float] = (0.9, 1.1)  # >1 zooms in (crops), <1 zooms out
    shift: float = 0.06  # fraction of the side
    hflip: float = 0.5
    gamma: tuple[float, float] = (0.8, 1.25)
    contrast: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.05


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(), generator: torch.Generator | None = None
) -> torch.Tensor:
    """A randomly transformed copy of `x` (N, C, H, W) in [0, 1]."""
    n = x.shape[0]
    if n == 0:
        return x

    def u(lo: float, hi: float, shape=(n,)) -> torch.Tensor:
        return torch.rand(shape, generator=generator) * (hi - lo) + lo

    angle = u(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    scale = 1.0 / u(*cfg.zoom)
    flip = torch.where(torch.rand(n, generator=generator) < cfg.hflip, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, u(-cfg.shift, cfg.shift) * 2], 1),
            torch.stack([sin * flip, cos, u(-cfg.shift, cfg.shift) * 2], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    lg = (math.log(cfg.gamma[0]), math.log(cfg.gamma[1]))
    gamma = torch.exp(u(*lg)).view(n, 1, 1, 1)
    a = u(*cfg.contrast).view(n, 1, 1, 1)
    b = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
    fg = out > 0
    out = out.clamp(0, 1).pow(gamma) * a + b
    return torch.where(fg, out.clamp(0, 1), torch.zeros_like(out))
