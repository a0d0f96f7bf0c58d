"""Fit a version's feature density, choose its referral rule on held-out patients and (for
presence) the input gate's limit: `python -m core calibrate TASK@VERSION --write`.

Held-out data, never the images a model was trained on:
- a version with a locked test split (presence, grade): its final model on the locked test patients;
- a version without one (tumor_type: the four Figshare folds are its held-out estimate): the fold-1
  model (trained on folds 2-4, shipped in folds/) on fold-1 patients, with a density fitted on
  folds 2-4. The threshold is a familiarity percentile, a scale each model has on its own training
  images, so the final model reads the rule chosen with its fold-1 sibling (an approximation,
  recorded in the card).
The threshold is chosen by conformal risk control on all held-out patients; the numbers reported
for it are cross-fitted (chosen on one random half of the patients, measured on the other, both
ways, over REPEATS splits), so no reported number was chosen on the data it is measured on.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from core.inference import referral, softmax
from core.inference.feature_density import FILE, FeatureDensity
from core.inference.gate import GATE_SLICES
from core.preprocess import model_input

REPEATS = 20
GATE_LAYER = "features.block3"  # chosen by AUROC among blocks 1-5 of presence 1.1.0 (mean+std per
# channel): blocks 1-3 0.97-0.99, block 4 0.71, block 5 (the last) 0.34
GATE_FALSE_REFUSAL = 0.01  # the gate's limit refuses ~1% of held-out in-distribution images


def features(tm, images_u8: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities, penultimate features) of a TaskModel on uint8 slices."""
    probs, feats = [], []
    for i in range(0, len(images_u8), batch):
        x = model_input(images_u8[i : i + batch].astype(np.float32) / 255.0, tm.spec)
        lg, f = tm.fp32_logits_and_features(x)
        probs.append(softmax(lg, tm.temperature))
        feats.append(f)
    return np.concatenate(probs), np.concatenate(feats)


def patient_halvings(groups: np.ndarray, seed: int = 0):
    """(fit, test) boolean masks: REPEATS random halvings of the patients, each used both ways."""
    rng = np.random.default_rng(seed)
    pats = np.array(sorted(set(groups.tolist())))
    for _ in range(REPEATS):
        half = set(rng.permutation(pats)[: len(pats) // 2].tolist())
        a = np.array([g in half for g in groups])
        yield a, ~a
        yield ~a, a


def cross_fitted(percentile, margin, correct, groups, target: float, seed: int = 0) -> dict:
    """Mean and 95% range over random patient halvings of the rule chosen on one half and
    measured on the other."""
    runs = []
    for fit, test in patient_halvings(groups, seed):
        q = referral.choose_threshold(percentile[fit], margin[fit], correct[fit], target)
        rule = referral.ReferralRule(q, target)
        runs.append(
            {
                "max_percentile": q,
                **referral.selective_metrics(rule.answered(percentile[test], margin[test]), correct[test]),
            }
        )
    out = {}
    for key in ("max_percentile", "coverage", "accuracy_answered", "confident_wrong"):
        v = np.array([r[key] for r in runs if r[key] is not None], dtype=float)
        out[key] = {"mean": float(v.mean()), "ci95": [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]}
    out["splits"] = len(runs)
    return out


def referral_study(tm_heldout, density: FeatureDensity, images_u8, labels, groups, target: float) -> dict:
    probs, feats = features(tm_heldout, images_u8)
    pct = density.percentile(feats)
    margin = referral.top2_margin(probs)
    correct = probs.argmax(1) == labels
    q = referral.choose_threshold(pct, margin, correct, target)
    return {
        "max_percentile": q,
        "target": target,
        "margin": referral.MARGIN_REFER,
        "rule": "refer when the image is less familiar than max_percentile of the training images "
        "(feature-space Mahalanobis distance) or the top-2 margin is below margin",
        "held_out": {
            "n": int(len(labels)),
            "n_patients": int(len(set(groups.tolist()))),
            "accuracy_all": float(correct.mean()),
        },
        "cross_fitted": cross_fitted(pct, margin, correct, groups, target),
        "risk_coverage": referral.risk_coverage_curve(pct, margin, correct),
    }


def gate_study(
    density: FeatureDensity, id_distances: np.ndarray, id_groups: np.ndarray, ood: dict[str, float], seed: int = 0
) -> dict:
    """The gate's distance limit (the 99th percentile of held-out in-distribution distances), its
    false refusals measured cross-fitted by patient, and its AUROC against the OOD items."""
    from sklearn.metrics import roc_auc_score  # heavy: sklearn, loaded on first use

    refusals = []
    for fit, test in patient_halvings(id_groups, seed):
        limit = np.quantile(id_distances[fit], 1 - GATE_FALSE_REFUSAL)
        refusals.append(float((id_distances[test] > limit).mean()))
    limit = float(np.quantile(id_distances, 1 - GATE_FALSE_REFUSAL))
    od = np.array(list(ood.values()))
    auroc = roc_auc_score(np.r_[np.zeros(len(id_distances)), np.ones(len(od))], np.r_[id_distances, od])
    return {
        "max_distance": limit,
        "false_refusal": {
            "mean": float(np.mean(refusals)),
            "ci95": [float(np.quantile(refusals, 0.025)), float(np.quantile(refusals, 0.975))],
        },
        "auroc": float(auroc),
        "n_in_distribution": int(len(id_distances)),
        "n_ood": int(len(od)),
        "ood_refused": float((od > limit).mean()) if len(od) else None,
        "ood_items": {k: {"distance": round(float(v), 2), "refused": bool(v > limit)} for k, v in ood.items()},
        "slices_read": GATE_SLICES,
    }


def gate_features(tm, images_u8: np.ndarray, layer: str = GATE_LAYER, batch: int = 256) -> np.ndarray:
    return np.concatenate(
        [
            tm.layer_statistics(model_input(images_u8[i : i + batch].astype(np.float32) / 255.0, tm.spec), layer)
            for i in range(0, len(images_u8), batch)
        ]
    )


def picture_distances(
    tm, density: FeatureDensity, pictures: dict[str, np.ndarray], layer: str = GATE_LAYER
) -> dict[str, float]:
    """Gate distance of 2D pictures in [0, 1], read the way an upload of each is read."""
    return {
        name: float(density.distance(tm.layer_statistics(model_input(img[None].astype(np.float32), tm.spec), layer))[0])
        for name, img in pictures.items()
    }


def save_density(density: FeatureDensity, folder: Path, file: str = FILE) -> dict:
    buf = io.BytesIO()
    torch.save(density.state(), buf)
    (folder / file).write_bytes(buf.getvalue())
    return {
        "file": file,
        "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
        "n_reference": int(len(density.reference)),
    }
