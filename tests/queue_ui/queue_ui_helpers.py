"""Shared helpers of the queue-ui tests: tiny zoo versions with crafted cards, a seeded store."""

from __future__ import annotations

import numpy as np

TYPE_CLASSES = ["glioma", "meningioma", "pituitary"]
PRESENCE_CLASSES = ["no_tumor", "tumor"]
GRADE_CLASSES = ["G2", "G3"]


def held_out_metrics(
    value: float,
    key: str = "balanced_accuracy",
    *,
    patient: bool = False,
    classes=TYPE_CLASSES,
    fingerprint: str | None = None,
    width: float = 0.05,
) -> dict:
    """A score()-like test block where the headline metrics are `value`."""
    k = len(classes)
    block = {
        "n": 40,
        "classes": list(classes),
        "accuracy": value,
        "balanced_accuracy": value,
        "macro_f1": value,
        "auc": value,
        "ci95": {m: [value - width, value + width] for m in ("accuracy", "balanced_accuracy", "macro_f1", "auc")},
        "per_class": {
            c: {"sensitivity": value, "specificity": value, "precision": value, "f1": value, "support": 10}
            for c in classes
        },
        "confusion": np.eye(k, dtype=int).__mul__(10).tolist(),
        "split": "locked test",
    }
    if patient:
        block["patient"] = {
            **{m: value for m in ("accuracy", "balanced_accuracy", "macro_f1", "auc")},
            "ci95": {"auc": [value - width, value + width]},
        }
    if fingerprint:
        block["fingerprint"] = fingerprint
    return block


def make_version(
    task: str,
    version: str,
    classes,
    test: dict | None = None,
    fingerprint: str | None = "fp-A",
    *,
    size: int = 32,
    seed: int = 0,
    channels: int | None = None,
) -> str:
    import torch

    from core.zoo import save_checkpoint
    from model_zoo import create

    torch.manual_seed(seed)
    model = create("vgg19_slim", len(classes), in_channels=channels)
    card = {
        "architecture": "vgg19_slim",
        "classes": list(classes),
        "input": {"size": size},
        "metrics": {"cv": None, "test": test},
        "recipe": {"split": {"locked_test": {"fingerprint": fingerprint, "fraction": 0.2}} if fingerprint else {}},
        "intended_use": f"test model for {task}",
        "limitations": ["a tiny random network"],
        "command": f"python -m core train --task {task} (test)",
    }
    save_checkpoint(model, card, task, version)
    return version


def seed_store(
    repo,
    task: str = "tumor_type",
    classes=TYPE_CLASSES,
    n_cases: int = 4,
    per_case: int = 2,
    model_version: str = "1.0.0",
    size: int = 32,
    seed: int = 0,
) -> list[int]:
    """n_cases cases (one patient each) of per_case 32-px slices with predictions; returns item ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for c in range(n_cases):
        slices = rng.random((per_case, size, size)).astype(np.float32)
        preds = []
        for i in range(per_case):
            p = rng.dirichlet(np.ones(len(classes)))
            preds.append({"index": i, "task": task, "model_version": model_version, "probabilities": p.tolist()})
        case = repo.cases.save(
            {"modality": "MR", "shape": (per_case, size, size), "source_format": "test"},
            slices,
            preds,
            source=f"test case {c}",
            patient_key=f"P{c}",
        )
        ids += [it.id for it in repo.cases.items(case)]
    return ids


def label_all(repo, item_ids, task: str, classes, reviewer: str = "Dr Ada") -> None:
    """Confirm a label for each item, classes in turn by case (two items per case share one)."""
    for n, item_id in enumerate(item_ids):
        repo.queue.label(item_id, task, classes[(n // 2) % len(classes)], reviewer)
