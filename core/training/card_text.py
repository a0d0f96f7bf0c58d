"""The sentences a model card states about its own held-out results, written from its metrics.

A card's numbers must come from a command, never be typed: `results_summary(card)` turns the
card's `metrics` (cross-validation and locked test, as `core.training.experiment` writes them) into
the plain sentences that open its limitations. `python -m core train` writes them into new cards;
`python -m core zoo summarize TASK@VERSION --write` rewrites them in an existing card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.cards import ModelCard, metric_ci, metric_value

# the metric a task's target is stated in: (metric, level) as core.tasks.PRIMARY_METRIC writes it
HEADLINE = {"tumor_type": ("accuracy", "slice"), "presence": ("auc", "slice"), "grade": ("auc", "patient")}
TARGETS = {"tumor_type": 0.95, "presence": 0.95, "grade": 0.80}
GENERATED_KEY = "results_summary"


def _ci(pair: Any) -> str:
    if not pair or None in pair:
        return "CI n/a"
    return f"95% CI {pair[0]:.3f}-{pair[1]:.3f}"


def _name(key: str, level: str) -> str:
    return f"{level} {key.replace('_', ' ')}".replace(" auc", " AUC")


def _flat(key: str, level: str) -> str:
    """The key of a cross-validation summary (`cv.mean`): patient metrics are prefixed patient_."""
    return f"patient_{key}" if level == "patient" else key


def results_summary(card: ModelCard | Mapping) -> list[str]:
    """Sentences on the card's held-out results: CV mean with its CI over folds and per fold, the
    pooled out-of-fold recall per class, the locked test, and the task's target met or missed."""
    card = ModelCard.coerce(card)
    task = card.task or ""
    key, level = HEADLINE.get(task, ("accuracy", "slice"))
    flat = _flat(key, level)
    out: list[str] = []
    cv = card.metrics.cv or {}
    if cv.get("mean"):
        mean = (cv["mean"] or {}).get(flat)
        folds = [f.get(flat) for f in cv.get("per_fold") or []]
        per_fold = " / ".join(f"{v:.3f}" for v in folds if v is not None)
        pooled = cv.get("pooled") or {}
        pv, pci = metric_value(pooled, key, level), metric_ci(pooled, key, level)
        s = (
            f"{cv.get('folds')}-fold patient-grouped cross-validation ({cv.get('split')}): {_name(key, level)} "
            f"{mean:.3f} ({_ci((cv.get('ci95') or {}).get(flat))} over folds; per fold {per_fold})"
        )
        if pv is not None:
            s += f"; pooled out-of-fold {pv:.3f} (patient-bootstrap {_ci(pci)})"
        out.append(s + ".")
        for other in (("balanced_accuracy", "slice"), ("auc", "slice"), ("accuracy", "patient"), ("auc", "patient")):
            v = (cv["mean"] or {}).get(_flat(*other))
            if other != (key, level) and v is not None:
                out[-1] = out[-1][:-1] + f"; mean {_name(*other)} {v:.3f}."
        per_class = pooled.get("per_class") or {}
        if per_class:
            recalls = {c: d.get("sensitivity") for c, d in per_class.items() if d.get("sensitivity") is not None}
            weakest = min(recalls, key=recalls.get)
            out.append(
                "Recall per class (pooled out-of-fold): "
                + ", ".join(f"{c} {v:.2f}" for c, v in recalls.items())
                + f"; weakest: {weakest}."
            )
        headline = mean
    else:
        headline = None
    test = card.metrics.test or {}
    if test:
        tv, tci = metric_value(test, key, level), metric_ci(test, key, level)
        if tv is not None:
            size = ", ".join(
                f"{test[k]} {what}"
                for k, what in (("n_patients", "patients"), ("n", "slices"))
                if test.get(k) is not None
            )
            out.append(f"Locked test split{f' ({size})' if size else ''}: {_name(key, level)} {tv:.3f} ({_ci(tci)}).")
            headline = headline if headline is not None else tv
    target = TARGETS.get(task)
    if target is not None and headline is not None:
        verdict = "met" if headline >= target else "missed"
        out.append(
            f"Target {_name(key, level)} >= {target:.2f}: {verdict} ({headline:.3f}, "
            f"{'cross-validation mean' if cv.get('mean') else 'locked test'})."
        )
    return out
