"""When to refer to a human: a rule chosen on held-out data to meet a stated risk.

The score is the image's familiarity percentile in the model's feature space
(`core.inference.feature_density`): on held-out Figshare patients, the type model's wrong answers sit far from
its training data far more often than its right ones, while its softmax confidence barely tells them
apart (label smoothing and temperature scaling compress it). A verdict is given without referral
when the image is at most as unfamiliar as `max_percentile` (and the top-2 margin is not a close
call); otherwise it is referred.

`max_percentile` is chosen by conformal risk control (Angelopoulos et al., ICLR 2024) on the loss
"answered without referral and wrong", which grows with the threshold: the largest threshold with
    n/(n+1) * mean(loss) + 1/(n+1) <= target
keeps the expected rate of confident wrong verdicts at or below `target` on exchangeable data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.cards import ModelCard
from core.inference.uncertainty import MARGIN_REFER  # a close call is always referred

TARGET_CONFIDENT_WRONG = 0.015  # stated risk: confident wrong verdicts per case


@dataclass(frozen=True)
class ReferralRule:
    max_percentile: float  # refer when the familiarity percentile exceeds this
    target: float = TARGET_CONFIDENT_WRONG
    margin: float = MARGIN_REFER

    @classmethod
    def from_card(cls, card: ModelCard | Mapping | None) -> ReferralRule | None:
        r = ModelCard.coerce(card).referral
        if r is None or r.max_percentile is None:
            return None
        return cls(
            float(r.max_percentile),
            float(TARGET_CONFIDENT_WRONG if r.target is None else r.target),
            float(MARGIN_REFER if r.margin is None else r.margin),
        )

    def answered(self, percentile: np.ndarray, margin: np.ndarray) -> np.ndarray:
        """True where a verdict is given without referral."""
        return (np.asarray(percentile) <= self.max_percentile) & (np.asarray(margin) >= self.margin)

    def reasons(self, percentile: float, margin: float) -> list[str]:
        out = []
        if percentile > self.max_percentile:
            out.append(
                f"the image is less familiar to the model than {100 * self.max_percentile:.0f}% of "
                "its training images allow for an answer at the stated risk"
            )
        if margin < self.margin:
            out.append(f"close call: top-2 margin {margin:.2f} < {self.margin:g}")
        return out


def top2_margin(probabilities: np.ndarray) -> np.ndarray:
    p = np.sort(np.atleast_2d(np.asarray(probabilities, dtype=np.float64)), axis=1)[:, ::-1]
    return p[:, 0] - (p[:, 1] if p.shape[1] > 1 else 0.0)


def choose_threshold(
    percentile: np.ndarray,
    margin: np.ndarray,
    correct: np.ndarray,
    target: float = TARGET_CONFIDENT_WRONG,
    margin_min: float = MARGIN_REFER,
) -> float:
    """Conformal risk control: the largest familiarity threshold whose adjusted rate of confident
    wrong verdicts on this calibration set is <= target (0.0 when none is: refer everything)."""
    percentile, correct = np.asarray(percentile, float), np.asarray(correct, bool)
    n = len(percentile)
    if n == 0:
        return 0.0
    candidates = np.unique(np.concatenate([[0.0], percentile, [1.0]]))
    best = 0.0
    for q in candidates:  # the loss grows with q: scan upwards
        loss = ((percentile <= q) & (np.asarray(margin) >= margin_min) & ~correct).mean()
        if n / (n + 1) * loss + 1 / (n + 1) <= target:
            best = float(q)
        else:
            break
    return best


def selective_metrics(answered: np.ndarray, correct: np.ndarray) -> dict:
    """Coverage, accuracy of the verdicts given without referral, and confident wrong verdicts
    as a share of all cases."""
    answered, correct = np.asarray(answered, bool), np.asarray(correct, bool)
    n = max(len(answered), 1)
    return {
        "n": int(len(answered)),
        "coverage": float(answered.mean()) if len(answered) else 0.0,
        "accuracy_answered": float(correct[answered].mean()) if answered.any() else None,
        "confident_wrong": float((answered & ~correct).sum() / n),
    }


def risk_coverage_curve(
    percentile: np.ndarray, margin: np.ndarray, correct: np.ndarray, margin_min: float = MARGIN_REFER, points: int = 21
) -> list[dict]:
    """Accuracy of the answered verdicts and the confident-wrong rate at each threshold."""
    out = []
    for q in np.linspace(0.0, 1.0, points):
        answered = (np.asarray(percentile) <= q) & (np.asarray(margin) >= margin_min)
        out.append({"max_percentile": round(float(q), 3), **selective_metrics(answered, correct)})
    return out


def operating_point_text(card: ModelCard | Mapping | None) -> str | None:
    """The referral rule's measured operating point in one sentence (page help, Models page)."""
    r = ModelCard.coerce(card).referral
    if r is None or r.max_percentile is None or not r.cross_fitted:
        return None
    cf, held = r.cross_fitted, r.held_out or {}
    return (
        f"Answers without referral are given only for images at most as unfamiliar to the model as "
        f"{100 * r.max_percentile:.0f}% of its training images (and not a close call). Chosen for at "
        f"most {100 * r.target:.1f}% confident wrong answers per case; measured on held-out patients "
        f"({held.get('n')} images, {held.get('n_patients')} patients, chosen on one half and measured on "
        f"the other): {100 * cf['coverage']['mean']:.0f}% answered, {100 * cf['accuracy_answered']['mean']:.1f}% "
        f"of them right, {100 * cf['confident_wrong']['mean']:.1f}% confident wrong."
    )


def gate_text(card: ModelCard | Mapping | None) -> str | None:
    """The input gate's measured operating point in one sentence."""
    g = ModelCard.coerce(card).gate
    if g is None or g.max_distance is None:
        return None
    return (
        f"Input gate: AUROC {g.auroc:.3f} between held-out brain MRI ({g.n_in_distribution} images) "
        f"and {g.n_ood} out-of-distribution pictures (CT, ultrasound, RT dose, secondary captures, "
        f"EPI, photographs, generated); at its limit it refuses {100 * g.ood_refused:.0f}% of those and "
        f"{100 * g.false_refusal['mean']:.1f}% of held-out brain MRI. DICOM headers (field maps, phase, "
        f"diffusion, localizers, other modalities) and picture checks refuse more before it."
    )
