"""Does TCGA-LGG hold a grade signal that a simple reader could use? A mask-based baseline.

The grade CNN scores at chance. Before blaming the model, ask the data: per patient, from the
FLAIR-abnormality masks the data set ships,
- tumour size: log of the mask pixels summed over the patient's slices;
- intensity inside the mask relative to the brain outside it, per sequence (t1pre, flair,
  t1post; contrast enhancement, a classic sign of higher grade, shows as a t1post ratio above 1),
  averaged over slices, and the 90th percentile of the t1post ratio.
Each feature's ROC AUC on its own (nothing fitted), and an L2 logistic regression's AUC over
repeated patient-stratified k-fold cross-validation (one row per patient, so folds never share one).
Age from the manifest is shown as a clinical reference, outside the image features.

Not a product model: it needs the tumour mask, which an uploaded scan does not have.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from core.training.metrics import roc_auc_binary

SEQUENCES = ("t1pre", "flair", "t1post")
FEATURES = ("log_volume", "t1pre_ratio", "flair_ratio", "t1post_ratio", "t1post_ratio_p90")
BRAIN_THRESHOLD = 10  # 8-bit intensity above which a pixel counts as brain (any sequence)


def slice_features(image_rgb: np.ndarray, mask: np.ndarray) -> dict:
    """Tumour pixels and the inside/outside mean-intensity ratio of each sequence on one slice."""
    img = image_rgb.astype(np.float64)
    tumour = mask > 0
    brain = (img > BRAIN_THRESHOLD).any(axis=-1) & ~tumour
    out = {"pixels": int(tumour.sum())}
    for c, name in enumerate(SEQUENCES):
        outside = img[..., c][brain].mean() if brain.any() else np.nan
        inside = img[..., c][tumour].mean() if tumour.any() else np.nan
        out[f"{name}_ratio"] = float(inside / max(outside, 1.0))
    return out


def patient_features(slices: list[dict]) -> list[float]:
    """FEATURES for one patient from its tumour slices' `slice_features`."""
    t1post = [s["t1post_ratio"] for s in slices]
    return [
        float(np.log(sum(s["pixels"] for s in slices))),
        float(np.nanmean([s["t1pre_ratio"] for s in slices])),
        float(np.nanmean([s["flair_ratio"] for s in slices])),
        float(np.nanmean(t1post)),
        float(np.nanpercentile(t1post, 90)),
    ]


def load_patients(root: str | Path, on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """{"patients", "X" (patients x FEATURES), "y" (1 = G3), "age"} from a TCGA-LGG folder."""
    root = Path(root)
    with open(root / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["grade"] in ("G2", "G3") and int(r["tumor_pixels"]) > 0]
    per_patient: dict[str, list[dict]] = {}
    grade, age = {}, {}
    for i, r in enumerate(rows):
        if on_progress and ((i + 1) % max(1, len(rows) // 10) == 0 or i + 1 == len(rows)):
            on_progress(i + 1, len(rows), "reading tumour slices")
        image = np.asarray(Image.open(root / r["image"]).convert("RGB"))
        mask = np.asarray(Image.open(root / r["mask"]).convert("L"))
        if not (mask > 0).any():  # the manifest says tumour, the mask file shows none: skip it
            continue
        per_patient.setdefault(r["patient"], []).append(slice_features(image, mask))
        grade[r["patient"]] = int(r["grade"] == "G3")
        try:
            age[r["patient"]] = float(r.get("age", ""))
        except ValueError:
            age[r["patient"]] = np.nan
    patients = sorted(per_patient)
    return {
        "patients": patients,
        "X": np.array([patient_features(per_patient[p]) for p in patients]),
        "y": np.array([grade[p] for p in patients]),
        "age": np.array([age[p] for p in patients]),
    }


def cross_validated_auc(X: np.ndarray, y: np.ndarray, folds: int = 4, seeds: int = 20, C: float = 0.3) -> dict:
    """Out-of-fold AUC of a standardised L2 logistic regression, one value per shuffling seed."""
    from sklearn.linear_model import LogisticRegression  # heavy: sklearn, loaded on first use
    from sklearn.model_selection import StratifiedKFold, cross_val_predict  # heavy: sklearn, loaded on first use
    from sklearn.pipeline import make_pipeline  # heavy: sklearn, loaded on first use
    from sklearn.preprocessing import StandardScaler  # heavy: sklearn, loaded on first use

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C))
    aucs = []
    for seed in range(seeds):
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        p = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
        aucs.append(roc_auc_binary(p, y == 1))
    return {
        "auc_mean": float(np.mean(aucs)),
        "auc_sd": float(np.std(aucs)),
        "auc_min": float(np.min(aucs)),
        "auc_max": float(np.max(aucs)),
        "per_seed": aucs,
        "folds": folds,
        "seeds": seeds,
        "C": C,
    }


def run_grade_baseline(
    data: str, *, folds: int = 4, seeds: int = 20, on_progress: Callable[[int, int, str], None] | None = None
) -> dict:
    d = load_patients(data, on_progress)
    X, y, age = d["X"], d["y"], d["age"]
    has_age = ~np.isnan(age)
    return {
        "study": "grade_baseline",
        "data": str(data),
        "n_patients": len(y),
        "n_g3": int(y.sum()),
        "n_g2": int((1 - y).sum()),
        "single_feature_auc": {name: roc_auc_binary(X[:, j], y == 1) for j, name in enumerate(FEATURES)},
        "logistic_regression": cross_validated_auc(X, y, folds=folds, seeds=seeds),
        "age_auc_reference": roc_auc_binary(age[has_age], y[has_age] == 1) if has_age.sum() > 1 else None,
        "features": list(FEATURES),
    }
