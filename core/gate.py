"""The input gate: is this an anatomical brain MR image that these models can read?

Three kinds of evidence, strongest first:
1. the DICOM header (`core.io.acquisition`): a field map, phase, diffusion, localizer or CT series
   is refused with the reason in words, whatever its pixels look like;
2. picture statistics (`core.inference.image_ood`): colour photographs, noise, empty images;
3. the presence model's own representation (`core.feature_density`): the volume's typical slice is
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

from core.io.acquisition import NOT_ANATOMICAL, assess_acquisition

PASS, REFUSE = "pass", "refuse"
GATE_SLICES = 16      # the feature check reads at most this many informative slices (median)


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


def check_input(meta: dict | None, image_check: dict, distance: float | None,
                max_distance: float | None) -> GateResult:
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
            result.reasons.append("the image is unlike anything the models were trained on (feature distance "
                                  f"{distance:.1f} > {max_distance:.1f}): not a brain MR image they can read")
    return result
