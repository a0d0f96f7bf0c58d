"""The whole verdict on patients no model saw: how often is it confidently wrong?
(`python -m core cascade-check`, issue 11's first measurement.)

Held-out images: Figshare CE-MRI fold-1 patients that the active presence model was not trained
on (its card's training data, minus its locked test). Every image shows a tumour of a known type.
The cascade is the product's `Predictor.predict_volume` with the active presence model and, in
place of the final tumour-type model (trained on all folds, so it has seen these patients), its
fold-1 sibling (trained on folds 2-4) with a feature density fitted on folds 2-4 and the final
model's referral threshold (the percentile scale of `core.inference.referral`).

A verdict is right when it names the right tumour type; "no tumour detected" on these images is
wrong. It is "answered" when nothing in it is referred and the input was not refused.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from core import calibrate as cal
from core.cards import ModelCard
from core.commands.calibrate import _dataset, _fold_model
from core.inference import NO_TUMOUR_VERDICT, TaskModel
from core.inference.feature_density import FeatureDensity
from core.io import load_volume
from core.training.datasets import load_dataset
from core.training.evaluation import data_for_card


def heldout_images(presence_card: ModelCard | dict, figshare_root: Path, fold: int = 1) -> list[dict]:
    """Manifest rows of fold `fold` whose patient family the presence model did not train on."""
    presence_card = ModelCard.coerce(presence_card)
    locked = set(presence_card.locked_test.patients)
    trained = _presence_trained_families(presence_card) - {
        p.split(":", 1)[1] for p in locked if p.startswith("figshare-cemri:")
    }
    rows = list(csv.DictReader(open(figshare_root / "manifest.csv", newline="")))
    return [r for r in rows if int(r["fold"]) == fold and r["pid_family"] not in trained]


def _presence_trained_families(card: ModelCard) -> set[str]:
    """Figshare patient families in the presence version's training data (recipe's seeded cap)."""
    ds = load_dataset(data_for_card(card), "presence", int(card.input.size), seed=0)
    return {g.split(":", 1)[1] for g in ds.groups if str(g).startswith("figshare-cemri:")}


def type_fold_model(loaded_type, fold: int = 1):
    """(LoadedModel of the fold model, FeatureDensity on its training folds)."""
    fold_loaded = _fold_model(loaded_type, fold)
    ds, sp = _dataset(ModelCard.of(loaded_type))
    fit_idx = sp["folds"][fold - 1][0]
    feats = cal.features(TaskModel(fold_loaded, "cpu", "fp32"), ds.images[fit_idx])[1]
    return fold_loaded, FeatureDensity.fit(feats, ds.labels[fit_idx])


def run_cascade_check(figshare_root: Path, predictor, rows: list[dict], on_progress=None) -> dict:
    answered, correct, verdicts = [], [], []
    for i, r in enumerate(rows):
        pred = predictor.predict_volume(load_volume(str(figshare_root / r["image"])))
        t = pred.tasks.get("tumor_type")
        label = t.label if t is not None and t.answered and pred.verdict != NO_TUMOUR_VERDICT else None
        answered.append(pred.status == "ok")
        correct.append(label == r["label"])
        verdicts.append(pred.verdict)
        if on_progress and (i + 1) % 100 == 0:
            on_progress(f"{i + 1}/{len(rows)} images")
    answered, correct = np.array(answered), np.array(correct)
    no_tumour = np.array([v == NO_TUMOUR_VERDICT for v in verdicts])
    n = len(rows)
    return {
        "n_images": n,
        "n_patients": len({r["pid_family"] for r in rows}),
        "coverage": float(answered.mean()),
        "accuracy_answered": float(correct[answered].mean()) if answered.any() else None,
        "confident_wrong": float((answered & ~correct).sum() / n),
        "accuracy_all": float(correct.mean()),
        "no_tumour_verdicts": int(no_tumour.sum()),
        "no_tumour_answered": int((no_tumour & answered).sum()),
        "per_class": {
            c: {
                "n": int(sum(r["label"] == c for r in rows)),
                "confident_wrong": int(sum(a and not k for a, k, r in zip(answered, correct, rows) if r["label"] == c)),
            }
            for c in sorted({r["label"] for r in rows})
        },
    }
