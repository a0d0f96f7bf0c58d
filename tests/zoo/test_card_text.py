"""A card's results sentences are written from its metrics (`results_summary`, `zoo summarize`)."""

import json

import pytest

from core.cli import main
from core.training.card_text import results_summary
from core.zoo import save_checkpoint
from model_zoo import create, write_card


def _cv_card(task="tumor_type", folds=(0.90, 0.94, 0.96, 0.92)):
    mean = sum(folds) / len(folds)
    return {
        "task": task,
        "architecture": "vgg19_slim",
        "classes": ["glioma", "meningioma", "pituitary"],
        "metrics": {
            "cv": {
                "folds": len(folds),
                "split": "manifest folds",
                "mean": {"accuracy": mean, "auc": 0.97},
                "ci95": {"accuracy": [mean - 0.03, mean + 0.03]},
                "per_fold": [{"fold": k + 1, "accuracy": a} for k, a in enumerate(folds)],
                "pooled": {
                    "accuracy": mean,
                    "ci95": {"accuracy": [0.9, 0.95]},
                    "per_class": {
                        "glioma": {"sensitivity": 0.9},
                        "meningioma": {"sensitivity": 0.8},
                        "pituitary": {"sensitivity": 0.99},
                    },
                },
            },
            "test": None,
        },
    }


def test_summary_states_cv_folds_classes_and_target_from_the_metrics():
    lines = results_summary(_cv_card())
    assert lines[0].startswith("4-fold patient-grouped cross-validation (manifest folds): slice accuracy 0.930")
    assert "per fold 0.900 / 0.940 / 0.960 / 0.920" in lines[0] and "95% CI 0.900-0.960" in lines[0]
    assert "mean slice AUC 0.970" in lines[0]
    assert (
        lines[1]
        == "Recall per class (pooled out-of-fold): glioma 0.90, meningioma 0.80, pituitary 0.99; weakest: meningioma."
    )
    assert lines[-1] == "Target slice accuracy >= 0.95: missed (0.930, cross-validation mean)."
    assert results_summary(_cv_card(folds=(0.96, 0.97)))[-1].startswith("Target slice accuracy >= 0.95: met")


def test_summary_of_a_locked_test_only_card():
    card = {
        "task": "grade",
        "metrics": {
            "cv": None,
            "test": {"n": 300, "n_patients": 17, "patient": {"auc": 0.667, "ci95": {"auc": [0.389, 0.943]}}},
        },
    }
    assert results_summary(card) == [
        "Locked test split (17 patients, 300 slices): patient AUC 0.667 (95% CI 0.389-0.943).",
        "Target patient AUC >= 0.80: missed (0.667, locked test).",
    ]
    assert results_summary({"task": "grade"}) == []


def test_zoo_summarize_writes_the_sentences_and_cards_keep_what_defines_them(_isolated_zoo, capsys):
    folder = save_checkpoint(create("vgg19_slim", 3), _cv_card(), "tumor_type", "s1", root=_isolated_zoo)
    assert main(["zoo", "summarize", "tumor_type@s1", "--write"]) == 0
    assert "slice accuracy 0.930" in capsys.readouterr().out
    card = json.loads((folder / "card.json").read_text())
    assert card["results_summary"] == results_summary(card)
    with pytest.raises(ValueError, match="metrics cannot change"):
        write_card(folder, {**card, "metrics": {"test": {"accuracy": 0.99}}})
    assert main(["zoo", "summarize", "tumor_type@nope"]) == 2
