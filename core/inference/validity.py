"""The validity gate: a task answers only through a model whose held-out results beat chance.

    ok, reason = model_validity(card)

A card fails the gate when it says its model is uninformative (`"informative": false`), or when a
held-out ROC AUC 95% CI it records (cross-validation, locked test) includes chance (0.5) or lies
below it. The AUC is read at the task's primary level (patient level for grade, as promotion
judges it; slice level when the card has no patient-level interval). A card that records no AUC
interval is not judged here: nothing in it shows the model is at chance.

The Predictor reads the gate on the active version's card, so a task comes back as soon as a
version whose card clears it is promoted.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.cards import ModelCard, metric_ci, metric_value
from core.tasks import primary_metric

CHANCE_AUC = 0.5


def _cv_auc(cv: Mapping, level: str) -> tuple[float | None, list | None]:
    key = "patient_auc" if level == "patient" else "auc"  # CV blocks flatten the patient level
    return metric_value(cv.get("mean") or {}, key), metric_ci(cv, key)


def _test_auc(test: Mapping, level: str) -> tuple[float | None, list | None]:
    return metric_value(test, "auc", level), metric_ci(test, "auc", level)


def held_out_aucs(card: ModelCard | Mapping) -> list[tuple[str, str, float | None, list]]:
    """(split, level, AUC, 95% CI) for each held-out AUC interval the card records."""
    card = ModelCard.coerce(card)
    _, primary_level = primary_metric(card.task or "")
    out = []
    for split, block, read in (
        ("cross-validation", card.metrics.cv, _cv_auc),
        ("locked test", card.metrics.test, _test_auc),
    ):
        if not isinstance(block, Mapping):
            continue
        for level in dict.fromkeys((primary_level, "slice")):  # the primary level, else slice
            value, ci = read(block, level)
            if ci and None not in ci:
                out.append((split, level, value, [float(ci[0]), float(ci[1])]))
                break
    return out


def model_validity(card: ModelCard | Mapping | None) -> tuple[bool, str]:
    """(True, "") when nothing in the card shows the model is at chance; else (False, why)."""
    card = ModelCard.coerce(card)
    if card.informative is False:
        return False, "its model card says the model is uninformative"
    for split, level, value, (lo, hi) in held_out_aucs(card):
        if lo <= CHANCE_AUC:
            where = f"{split} {level}-level AUC" + (f" {value:.2f}" if value is not None else "")
            verdict = "includes chance (0.5)" if hi > CHANCE_AUC else "is at or below chance (0.5)"
            return False, f"its {where} has a 95% CI of {lo:.2f}-{hi:.2f}, which {verdict}"
    return True, ""
