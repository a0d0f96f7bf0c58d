"""The sentences a model card states about its own held-out results, written from its metrics.

A card's numbers must come from a command, never be typed: `results_summary(card)` turns the
card's `metrics` (cross-validation and locked test, as `core.training.experiment` writes them) into
the plain sentences that open its limitations. `python -m core train` writes them into new cards;
`python -m core zoo summarize TASK@VERSION --write` rewrites them in an existing card.
"""
from __future__ import annotations

from typing import Any

# the metric a task is judged by (slice level unless prefixed patient_)
HEADLINE = {"tumor_type": "accuracy", "presence": "auc", "grade": "patient_auc"}
TARGETS = {"tumor_type": 0.95, "presence": 0.95, "grade": 0.80}
GENERATED_KEY = "results_summary"


def _ci(pair: Any) -> str:
    if not pair or None in pair:
        return "CI n/a"
    return f"95% CI {pair[0]:.3f}-{pair[1]:.3f}"


def _name(key: str) -> str:
    level, base = ("patient", key[len("patient_"):]) if key.startswith("patient_") else ("slice", key)
    return f"{level} {base.replace('_', ' ')}".replace(" auc", " AUC")


def _block_value(block: dict, key: str) -> tuple[float | None, Any]:
    """(value, ci) of `key` in a score() block (patient_ keys live in block['patient'])."""
    if key.startswith("patient_"):
        sub = block.get("patient") or {}
        base = key[len("patient_"):]
        return sub.get(base), (sub.get("ci95") or {}).get(base)
    return block.get(key), (block.get("ci95") or {}).get(key)


def results_summary(card: dict) -> list[str]:
    """Sentences on the card's held-out results: CV mean with its CI over folds and per fold, the
    pooled out-of-fold recall per class, the locked test, and the task's target met or missed."""
    task = card.get("task", "")
    metrics = card.get("metrics") or {}
    key = HEADLINE.get(task, "accuracy")
    out: list[str] = []
    cv = metrics.get("cv") or {}
    if cv.get("mean"):
        mean = (cv["mean"] or {}).get(key)
        folds = [f.get(key) for f in cv.get("per_fold") or []]
        per_fold = " / ".join(f"{v:.3f}" for v in folds if v is not None)
        pooled = cv.get("pooled") or {}
        pv, pci = _block_value(pooled, key)
        s = (f"{cv.get('folds')}-fold patient-grouped cross-validation ({cv.get('split')}): {_name(key)} "
             f"{mean:.3f} ({_ci((cv.get('ci95') or {}).get(key))} over folds; per fold {per_fold})")
        if pv is not None:
            s += f"; pooled out-of-fold {pv:.3f} (patient-bootstrap {_ci(pci)})"
        out.append(s + ".")
        for other in ("balanced_accuracy", "auc", "patient_accuracy", "patient_auc"):
            v = (cv["mean"] or {}).get(other)
            if other != key and v is not None:
                out[-1] = out[-1][:-1] + f"; mean {_name(other)} {v:.3f}."
        per_class = pooled.get("per_class") or {}
        if per_class:
            recalls = {c: d.get("sensitivity") for c, d in per_class.items() if d.get("sensitivity") is not None}
            weakest = min(recalls, key=recalls.get)
            out.append("Recall per class (pooled out-of-fold): "
                       + ", ".join(f"{c} {v:.2f}" for c, v in recalls.items()) + f"; weakest: {weakest}.")
        headline = mean
    else:
        headline = None
    test = metrics.get("test") or {}
    if test:
        tv, tci = _block_value(test, key)
        if tv is not None:
            size = ", ".join(f"{test[k]} {what}" for k, what in (("n_patients", "patients"), ("n", "slices"))
                             if test.get(k) is not None)
            out.append(f"Locked test split{f' ({size})' if size else ''}: {_name(key)} {tv:.3f} ({_ci(tci)}).")
            headline = headline if headline is not None else tv
    target = TARGETS.get(task)
    if target is not None and headline is not None:
        verdict = "met" if headline >= target else "missed"
        out.append(f"Target {_name(key)} >= {target:.2f}: {verdict} ({headline:.3f}, "
                   f"{'cross-validation mean' if cv.get('mean') else 'locked test'}).")
    return out
