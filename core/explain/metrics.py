"""How well a heat map points at the tumour (`python -m core cam-eval`). Boxes are (cx, cy, w, h)
as fractions of the image."""

from __future__ import annotations

import numpy as np


def pointing_hit(heat: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Pointing game: is the heat map's argmax inside the box?"""
    h, w = heat.shape
    iy, ix = np.unravel_index(int(np.argmax(heat)), heat.shape)
    cx, cy, bw, bh = box
    return (cx - bw / 2) * w <= ix + 0.5 <= (cx + bw / 2) * w and (cy - bh / 2) * h <= iy + 0.5 <= (cy + bh / 2) * h


def energy_in_box(heat: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Fraction of the heat map's total mass inside the box."""
    h, w = heat.shape
    cx, cy, bw, bh = box
    x0, x1 = int(max(0, np.floor((cx - bw / 2) * w))), int(min(w, np.ceil((cx + bw / 2) * w)))
    y0, y1 = int(max(0, np.floor((cy - bh / 2) * h))), int(min(h, np.ceil((cy + bh / 2) * h)))
    total = float(heat.sum())
    return float(heat[y0:y1, x0:x1].sum() / total) if total > 0 else 0.0
