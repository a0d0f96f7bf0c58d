"""Class-imbalance ablation on frozen-backbone features: real only / class weights / oversampling / ACGAN.

Protocol (the feature-generation paper's study, on NeuroGrade's own features):
1. Take the features of a train split and a test split (extracted once from a frozen backbone).
2. For each seed, cut the ``minority`` class in the TRAINING split to ``fraction`` of its rows -
   by group (patient) when ``train_groups`` is given, so a kept patient keeps all their slices.
   The test split is never touched.
3. Train the same small head (linear or one-hidden-layer MLP) under four treatments:
   ``real`` (plain cross-entropy), ``class_weighted`` (CE weighted n / (K n_c)), ``oversample``
   (minority rows repeated at random up to the largest class), ``acgan`` (a feature ACGAN trained
   on that seed's cut training set tops the minority classes up with synthetic vectors).
4. Report, per treatment, balanced accuracy and per-class sensitivity on the test split for every
   seed, and their mean / std / ci95 over seeds (``mean_ci_over_folds``).

Features are standardised with the mean/std of the real (cut) training rows. Everything returned
is JSON-ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.research.acgan import balance_with_synthetic, torch_threads, train_feature_acgan
from core.training.metrics import aggregate_by_patient, classification_metrics, encode_labels, mean_ci_over_folds

__all__ = ["TREATMENTS", "cut_class", "train_head", "run_imbalance_ablation"]

TREATMENTS = ("real", "class_weighted", "oversample", "acgan")


def cut_class(y, minority: int, fraction: float, seed: int, groups=None) -> np.ndarray:
    """Sorted row indices kept after cutting class ``minority`` to ``fraction`` (other rows all kept).

    With ``groups`` whole groups of the minority class are kept or dropped (round(fraction * G)
    groups, at least 1); otherwise round(fraction * n_minority) rows, at least 1.
    """
    y = np.asarray(y).reshape(-1)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    is_min = y == minority
    min_rows = np.flatnonzero(is_min)
    if min_rows.size == 0:
        raise ValueError(f"class {minority} has no training rows")
    if groups is None:
        n_keep = max(1, int(round(fraction * min_rows.size)))
        kept_min = rng.choice(min_rows, size=n_keep, replace=False)
    else:
        g = np.asarray([str(v) for v in np.asarray(groups).reshape(-1).tolist()])
        if g.size != y.size:
            raise ValueError(f"{g.size} groups for {y.size} rows")
        min_groups = np.unique(g[min_rows])
        n_keep = max(1, int(round(fraction * min_groups.size)))
        keep_groups = rng.choice(min_groups, size=n_keep, replace=False)
        kept_min = min_rows[np.isin(g[min_rows], keep_groups)]
    return np.sort(np.concatenate([np.flatnonzero(~is_min), kept_min]))


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    kind: str = "linear",
    class_weight: np.ndarray | None = None,
    epochs: int = 60,
    seed: int = 0,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    hidden: int = 64,
):
    """Train a linear or MLP head with Adam on (standardised) features; returns an eval-mode module."""
    import torch  # heavy: torch, loaded on first use
    import torch.nn.functional as F  # heavy: torch, loaded on first use
    from torch import nn  # heavy: torch, loaded on first use

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "linear":
            head = nn.Linear(x.shape[1], n_classes)
        elif kind == "mlp":
            head = nn.Sequential(
                nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, n_classes)
            )
        else:
            raise ValueError(f"head kind must be 'linear' or 'mlp', got {kind!r}")
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    w = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed + 7)
    n = xt.shape[0]
    head.train()
    for _ in range(int(epochs)):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(head(xt[idx]), yt[idx], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    return head


def _predict(head, x: np.ndarray) -> np.ndarray:
    import torch  # heavy: torch, loaded on first use

    with torch.no_grad():
        return torch.softmax(head(torch.as_tensor(x, dtype=torch.float32)), dim=1).double().numpy()


def _oversample(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices: all rows, plus random repeats of every class below the largest class count."""
    counts = np.bincount(y, minlength=k)
    extra = [
        rng.choice(np.flatnonzero(y == c), size=int(counts.max() - counts[c]), replace=True)
        for c in range(k)
        if 0 < counts[c] < counts.max()
    ]
    return np.concatenate([np.arange(y.size)] + extra) if extra else np.arange(y.size)


def _summary(per_seed: list[dict], classes: list[str]) -> dict:
    out = {
        "balanced_accuracy": mean_ci_over_folds([r["balanced_accuracy"] for r in per_seed]),
        "accuracy": mean_ci_over_folds([r["accuracy"] for r in per_seed]),
        "macro_f1": mean_ci_over_folds([r["macro_f1"] for r in per_seed]),
        "auc": mean_ci_over_folds([r["auc"] for r in per_seed]),
        "sensitivity": {c: mean_ci_over_folds([r["sensitivity"][c] for r in per_seed]) for c in classes},
    }
    if per_seed and "patient_balanced_accuracy" in per_seed[0]:
        out["patient_balanced_accuracy"] = mean_ci_over_folds([r["patient_balanced_accuracy"] for r in per_seed])
    return out


def run_imbalance_ablation(
    train_X,
    train_y,
    test_X,
    test_y,
    classes: Sequence,
    minority,
    fraction: float = 0.1,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    train_groups=None,
    test_groups=None,
    head: str = "linear",
    head_epochs: int = 60,
    gan_epochs: int = 200,
    treatments: Sequence[str] = TREATMENTS,
    on_progress: Callable[[int, int, str], None] | None = None,
    num_threads: int | None = 1,
) -> dict:
    """Run the ablation; see the module docstring. Returns a JSON-ready dict.

    ``train_y``/``test_y``: class indices or names from ``classes``; ``minority``: a class name or
    index. ``train_groups``/``test_groups`` (patient ids, optional): the cut is by patient, and
    patient-level balanced accuracy (mean slice probabilities) is added. ``on_progress(done, total,
    message)`` after each (seed, treatment). Keys: ``config``, ``test_counts``, ``treatments``
    {name: {"per_seed": [...], "summary": {...}}}, ``seeds`` [{seed, train_counts_before,
    train_counts_after, kept_minority_groups, n_synthetic}].
    """
    classes = [str(c) for c in classes]
    k = len(classes)
    m, xtr, ytr, xte, yte = _checked_inputs(train_X, train_y, test_X, test_y, classes, minority, treatments)
    result = {
        "config": {
            "classes": classes,
            "minority": classes[m],
            "fraction": float(fraction),
            "seeds": [int(s) for s in seeds],
            "head": head,
            "head_epochs": int(head_epochs),
            "gan_epochs": int(gan_epochs),
            "treatments": list(treatments),
            "cut_by": "group" if train_groups is not None else "row",
            "feature_dim": int(xtr.shape[1]),
        },
        "test_counts": {c: int(v) for c, v in zip(classes, np.bincount(yte, minlength=k))},
        "seeds": [],
        "treatments": {t: {"per_seed": []} for t in treatments},
    }
    total = len(seeds) * len(treatments)
    done = 0
    with torch_threads(num_threads):
        for seed in seeds:
            seed = int(seed)
            cut = _cut_training_set(xtr, ytr, xte, classes, m, fraction, seed, train_groups)
            for t in treatments:
                fx, fy, weight = _treated_training_set(t, cut, k, seed, gan_epochs)
                net = train_head(fx, fy, k, kind=head, class_weight=weight, epochs=head_epochs, seed=seed)
                row = _scores(_predict(net, cut.x_test), yte, classes, test_groups)
                result["treatments"][t]["per_seed"].append({"seed": seed, "n_train": int(fy.size), **row})
                done += 1
                if on_progress is not None:
                    on_progress(done, total, f"seed {seed}: {t}")
            result["seeds"].append(cut.info)
    for t in treatments:
        result["treatments"][t]["summary"] = _summary(result["treatments"][t]["per_seed"], classes)
    return result


def _checked_inputs(train_X, train_y, test_X, test_y, classes: list[str], minority, treatments: Sequence[str]):
    """(minority index, train features, train labels, test features, test labels) as arrays;
    ValueError on an unknown treatment or minority class, or on arrays that disagree."""
    bad = [t for t in treatments if t not in TREATMENTS]
    if bad:
        raise ValueError(f"unknown treatments {bad}; choose from {TREATMENTS}")
    m = classes.index(str(minority)) if str(minority) in classes else int(minority)
    if not 0 <= m < len(classes):
        raise ValueError(f"minority {minority!r} is not one of {classes}")
    xtr = np.asarray(train_X, dtype=np.float64)
    xte = np.asarray(test_X, dtype=np.float64)
    ytr = encode_labels(train_y, classes)
    yte = encode_labels(test_y, classes)
    if xtr.shape[0] != ytr.size or xte.shape[0] != yte.size or xtr.shape[1] != xte.shape[1]:
        raise ValueError("features and labels disagree in length, or train/test feature widths differ")
    return m, xtr, ytr, xte, yte


@dataclass
class _CutSet:
    """One seed's training set after the cut, standardised with its own mean/std (and the test
    features in the same units); `info` is the seed's entry of the result."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    counts: np.ndarray
    info: dict


def _cut_training_set(xtr, ytr, xte, classes: list[str], m: int, fraction: float, seed: int, train_groups) -> _CutSet:
    k = len(classes)
    keep = cut_class(ytr, m, fraction, seed, groups=train_groups)
    x, y = xtr[keep], ytr[keep]
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    counts = np.bincount(y, minlength=k)
    info = {
        "seed": seed,
        "train_counts_before": {c: int(v) for c, v in zip(classes, np.bincount(ytr, minlength=k))},
        "train_counts_after": {c: int(v) for c, v in zip(classes, counts)},
        "n_synthetic": 0,
    }
    if train_groups is not None:
        g = np.asarray([str(v) for v in np.asarray(train_groups).reshape(-1).tolist()])
        info["kept_minority_groups"] = int(np.unique(g[keep][y == m]).size)
    return _CutSet(x=(x - mu) / sd, y=y, x_test=(xte - mu) / sd, counts=counts, info=info)


def _treated_training_set(
    treatment: str, cut: _CutSet, k: int, seed: int, gan_epochs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(features, labels, class weights or None) the head trains on under `treatment`."""
    xs, y = cut.x, cut.y
    if treatment == "class_weighted":
        return xs, y, np.where(cut.counts > 0, y.size / (k * np.maximum(cut.counts, 1)), 0.0)
    if treatment == "oversample":
        idx = _oversample(y, k, np.random.default_rng(seed + 101))
        return xs[idx], y[idx], None
    if treatment == "acgan":
        # GAN on this seed's cut TRAINING features only (standardised units)
        gan = train_feature_acgan(xs, y, k, epochs=gan_epochs, seed=seed, num_threads=None)
        fx, fy, syn = balance_with_synthetic(xs, y, "max", gan=gan, seed=seed)
        cut.info["n_synthetic"] = int(syn.sum())
        return fx, fy, None
    return xs, y, None


def _scores(probs: np.ndarray, yte: np.ndarray, classes: list[str], test_groups) -> dict:
    """Test-split metrics of one trained head; patient-level balanced accuracy with `test_groups`."""
    met = classification_metrics(yte, probs, classes)
    row = {
        "balanced_accuracy": met["balanced_accuracy"],
        "accuracy": met["accuracy"],
        "macro_f1": met["macro_f1"],
        "auc": met["auc"],
        "sensitivity": {c: met["per_class"][c]["sensitivity"] for c in classes},
        "confusion": met["confusion"],
    }
    if test_groups is not None:
        _, pp, pt = aggregate_by_patient(test_groups, probs, yte)
        row["patient_balanced_accuracy"] = classification_metrics(pt, pp, list(range(len(classes))))[
            "balanced_accuracy"
        ]
    return row
