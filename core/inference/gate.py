"""The input gate: is this an anatomical brain MR image that these models can read?

Three kinds of evidence, strongest first:
1. the DICOM header (`core.io.acquisition`): a field map, phase, diffusion, localizer or CT series
   is refused with the reason in words, whatever its pixels look like;
2. picture statistics (`image_ood`): colour photographs, noise, empty images;
3. the presence model's own representation (`core.inference.feature_density`): the volume's typical slice is
   farther from the training data than `max_distance`, a limit set so that ~1% of held-out
   in-distribution images (every training source, plus external brain MRI) would be refused
   (`python -m core calibrate presence@VERSION`; measured AUROC and false refusals in its card).

A refused input gets "cannot assess" for every task, with the reasons. Weak evidence (the header
cannot be read, one picture check fails) is kept in the evidence and does not refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from core.io.acquisition import NOT_ANATOMICAL, assess_acquisition

PASS, REFUSE = "pass", "refuse"
GATE_SLICES = 16  # the feature check reads at most this many informative slices (median)

# image-statistics OOD checks (calibrated on Figshare, TCGA-LGG and TCIA slices: MRI has a dark
# background round the head, a dark border and little pixel-level noise)
OOD_MIN_BACKGROUND = 0.08  # fraction of pixels < 0.05 after normalisation (MRI: 0.2-0.8)
OOD_MAX_BORDER = 0.30  # mean intensity of the outer 8% frame (MRI: median 0.02-0.04)
OOD_MAX_NOISE = 0.75  # std(high-pass) / std(image) (MRI: 0.1-0.4; white noise: 0.94)
OOD_MAX_COLOUR = 0.06  # mean |channel - grey| of an RGB image whose channels are not sequences


@dataclass
class GateResult:
    decision: str = PASS
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.decision == REFUSE


def gate_slices(informative: np.ndarray) -> np.ndarray:
    """Indices of at most GATE_SLICES evenly spaced informative slices (the feature check reads
    their median distance: one odd slice neither refuses nor admits a volume)."""
    idx = np.flatnonzero(np.asarray(informative, bool))
    if len(idx) == 0:
        return idx
    return idx[np.linspace(0, len(idx) - 1, min(GATE_SLICES, len(idx))).round().astype(int)]


def check_input(meta: dict | None, image_check: dict, distance: float | None, max_distance: float | None) -> GateResult:
    """Combine the header, the picture checks (`image_ood`'s dict) and the feature distance."""
    result = GateResult(evidence={"image": {k: v for k, v in image_check.items() if k != "gate"}})
    acq = (meta or {}).get("acquisition")
    if acq:
        header = assess_acquisition(acq)
        result.evidence["header"] = {"verdict": header.verdict, "reasons": header.reasons}
        if header.verdict == NOT_ANATOMICAL:
            result.decision = REFUSE
            result.reasons += [f"not an anatomical brain MR image: {r}" for r in header.reasons]
    if image_check.get("is_ood"):
        result.decision = REFUSE
        result.reasons += list(image_check.get("reasons") or ["does not look like a brain MRI"])
    if distance is not None and max_distance is not None:
        result.evidence["feature_distance"] = round(float(distance), 3)
        result.evidence["max_distance"] = round(float(max_distance), 3)
        if distance > max_distance:
            result.decision = REFUSE
            result.reasons.append(
                "the image is unlike anything the models were trained on (feature distance "
                f"{distance:.1f} > {max_distance:.1f}): not a brain MR image they can read"
            )
    return result


def image_ood(slices01: np.ndarray, volume=None) -> dict[str, Any]:
    """Cheap "does this look like a brain MRI" checks on normalised slices (N, H, W) in [0, 1]
    (plus the Volume's modality and colour when given). Returns {"score" in [0, 1], "is_ood",
    "reasons", "stats"}. Failing two of the three picture checks, or any of modality / colour /
    empty, makes it OOD."""
    reasons: list[str] = []
    hard = False
    stats: dict[str, float] = {}
    a = np.asarray(slices01, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:  # (N, C, H, W): check the first channel
        a = a[:, 0]
    fg = (a > 0.05).reshape(len(a), -1).mean(1) if len(a) else np.zeros(0)
    informative = np.flatnonzero(fg >= 0.05)
    if volume is not None and str(getattr(volume, "modality", "MR")).upper() not in ("MR", "UNKNOWN", "OT", ""):
        reasons.append(f"modality {volume.modality}: the models were trained on MRI only")
        hard = True
    if volume is not None:
        ch = getattr(volume, "channels", {}) or {}
        if {"red", "green", "blue"} <= set(ch):
            r, g, b = (np.asarray(ch[k], dtype=np.float32) for k in ("red", "green", "blue"))
            scale = max(float(max(r.max(), g.max(), b.max())), 1e-6)
            colour = float((np.abs(r - g) + np.abs(g - b) + np.abs(r - b)).mean() / (3 * scale))
            stats["colour"] = colour
            if colour > OOD_MAX_COLOUR:
                reasons.append(
                    "colour image: MRI is greyscale (if the colour channels are MR "
                    "sequences, name them with sequences=...)"
                )
                hard = True
    if len(informative) == 0:
        reasons.append("the image is (almost) empty")
        return {"score": 1.0, "is_ood": True, "reasons": reasons, "stats": stats}
    pick = informative[np.linspace(0, len(informative) - 1, min(16, len(informative))).round().astype(int)]
    bg, border, noise = [], [], []
    for i in pick:
        img = a[i]
        s = max(1, max(img.shape) // 128)
        img = img[::s, ::s]
        h, w = img.shape
        b = max(1, int(0.08 * min(h, w)))
        frame = np.concatenate([img[:b].ravel(), img[-b:].ravel(), img[:, :b].ravel(), img[:, -b:].ravel()])
        bg.append(float((img < 0.05).mean()))
        border.append(float(frame.mean()))
        noise.append(float(np.std(img - uniform_filter(img, 3)) / (np.std(img) + 1e-6)))
    stats.update(background=float(np.median(bg)), border=float(np.median(border)), noise=float(np.median(noise)))
    fails = []
    if stats["background"] < OOD_MIN_BACKGROUND:
        fails.append(f"almost no dark background ({stats['background']:.2f} < {OOD_MIN_BACKGROUND})")
    if stats["border"] > OOD_MAX_BORDER:
        fails.append(f"bright image border ({stats['border']:.2f} > {OOD_MAX_BORDER})")
    if stats["noise"] > OOD_MAX_NOISE:
        fails.append(f"noise-like texture ({stats['noise']:.2f} > {OOD_MAX_NOISE})")
    if len(fails) >= 2:
        reasons.append("does not look like a brain MRI: " + "; ".join(fails))
    score = min(1.0, len(fails) / 3 + (1.0 if hard else 0.0))
    return {"score": float(score), "is_ood": bool(hard or len(fails) >= 2), "reasons": reasons, "stats": stats}
