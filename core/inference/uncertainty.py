"""Calibrated probabilities, how uncertain they are, and the fixed thresholds that refer a case.

A version with a calibrated referral rule (`core.inference.referral`) is referred by that rule;
these thresholds refer the others. `ReferReason.trigger` says which check fired (for code), its
`text` says it in words (for people).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

# ---- decision constants (stated in the UI; change them here only) --------------------------------
ENTROPY_REFER = 0.6  # refer when normalised predictive entropy (H / log K) exceeds this
MARGIN_REFER = 0.2  # refer when top-1 minus top-2 probability is below this
BALD_REFER = 0.05  # refer when MC-dropout mutual information (nats) exceeds this


class Trigger(StrEnum):
    ENTROPY = "entropy"
    MARGIN = "margin"
    DISAGREEMENT = "disagreement"  # MC-dropout passes disagree (BALD)


@dataclass(frozen=True)
class ReferReason:
    trigger: Trigger
    text: str


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / max(float(temperature), 1e-6)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float64)


def entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def uncertainty(p: Sequence[float], mc_probs: np.ndarray | None = None) -> dict[str, float]:
    """Predictive entropy (nats and normalised by log K), top-1 minus top-2 margin, max prob;
    with MC-dropout samples (T, K): BALD = H(mean) - mean(H) (mutual information)."""
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[-1]
    srt = np.sort(p)[::-1]
    h = float(entropy(p))
    out = {
        "entropy": h,
        "entropy_norm": h / math.log(k) if k > 1 else 0.0,
        "margin": float(srt[0] - (srt[1] if k > 1 else 0.0)),
        "max_prob": float(srt[0]),
    }
    if mc_probs is not None and len(mc_probs):
        mc = np.asarray(mc_probs, dtype=np.float64)
        out["bald"] = float(max(0.0, entropy(mc.mean(0)) - entropy(mc).mean()))
        out["mc_std"] = float(mc.std(0).max())
    return out


def refer_triggers(u: Mapping[str, float]) -> list[ReferReason]:
    """The fixed-threshold checks that fire on the uncertainty `u`, each with its words."""
    reasons = []
    if u.get("entropy_norm", 0.0) > ENTROPY_REFER:
        reasons.append(
            ReferReason(
                Trigger.ENTROPY, f"high uncertainty: normalised entropy {u['entropy_norm']:.2f} > {ENTROPY_REFER}"
            )
        )
    if u.get("margin", 1.0) < MARGIN_REFER:
        reasons.append(ReferReason(Trigger.MARGIN, f"close call: top-2 margin {u['margin']:.2f} < {MARGIN_REFER}"))
    if "bald" in u and u["bald"] > BALD_REFER:
        reasons.append(
            ReferReason(
                Trigger.DISAGREEMENT, f"model disagreement under MC-dropout: BALD {u['bald']:.3f} > {BALD_REFER}"
            )
        )
    return reasons


def refer_reasons(u: Mapping[str, float]) -> list[str]:
    """The words of `refer_triggers`."""
    return [r.text for r in refer_triggers(u)]
