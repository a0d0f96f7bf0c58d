"""Classification metrics with patient-level aggregation and patient-bootstrap confidence intervals.

Pure numpy/scipy functions (no torch). Everything returned is JSON-friendly: python floats/ints,
lists, and ``None`` where a quantity is undefined (e.g. AUC of a class absent from ``y_true``).

Conventions
-----------
- ``probs``: array (n, K) of class probabilities in the order of ``classes``. For a binary task a
  1-D array is read as P(last class).
- ``y_true``: class indices (0..K-1) or class names from ``classes``.
- The predicted class is ``argmax(probs)``.
- Binary AUC is the ROC AUC of the positive = LAST class (e.g. "tumor" in ["no_tumor", "tumor"]).
  Multi-class AUC is the macro mean of one-vs-rest AUCs over the classes where it is defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

ECE_BINS = 15
_EPS = 1e-12

__all__ = [
    "ECE_BINS",
    "classification_metrics",
    "aggregate_by_patient",
    "bootstrap_ci",
    "metrics_with_ci",
    "mean_ci_over_folds",
    "encode_labels",
    "as_probs",
    "roc_auc_binary",
    "expected_calibration_error",
]


# ----------------------------------------------------------------------------- input handling
def encode_labels(y_true, classes: Sequence) -> np.ndarray:
    """Return ``y_true`` as int64 class indices into ``classes`` (accepts indices or names)."""
    y = np.asarray(y_true)
    k = len(classes)
    if y.ndim != 1:
        y = y.reshape(-1)
    if y.size == 0:
        return y.astype(np.int64)
    if y.dtype.kind in "iub":
        out = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("y_true holds non-integer numbers; expected class indices or names")
        out = y.astype(np.int64)
    else:
        index = {str(c): i for i, c in enumerate(classes)}
        try:
            out = np.array([index[str(v)] for v in y.tolist()], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"label {e.args[0]!r} is not one of the classes {list(classes)}") from None
    if out.min() < 0 or out.max() >= k:
        raise ValueError(f"class index out of range 0..{k - 1}")
    return out


def as_probs(probs, n_classes: int | None = None) -> np.ndarray:
    """Return ``probs`` as float64 (n, K). A 1-D array is P(last class) of a binary task."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        if n_classes not in (None, 2):
            raise ValueError(f"1-D probs only make sense for 2 classes, got {n_classes}")
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, K), got shape {p.shape}")
    if n_classes is not None and p.shape[1] != n_classes:
        raise ValueError(f"probs has {p.shape[1]} columns but there are {n_classes} classes")
    return p


def _f(x) -> float | None:
    """python float, or None for None/nan/inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(num, den) -> float | None:
    return float(num) / float(den) if den > 0 else None


# ----------------------------------------------------------------------------- core metrics
def roc_auc_binary(scores, positive) -> float | None:
    """ROC AUC (Mann-Whitney, ties count 1/2); None when only one class is present."""
    from scipy.stats import rankdata  # heavy: scipy, loaded on first use

    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n1 = int(pos.sum())
    n0 = int(pos.size - n1)
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def expected_calibration_error(probs, y, n_bins: int = ECE_BINS) -> float:
    """ECE over ``n_bins`` equal-width bins (lo, hi] of the max probability (Guo et al. 2017)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if p.shape[0] == 0:
        return float("nan")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - conf, minlength=n_bins)
    return float(np.abs(gap).sum() / p.shape[0])


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _scalar_metrics(y: np.ndarray, p: np.ndarray, k: int, keys: Sequence[str]) -> dict:
    """Fast path for the bootstrap: the requested top-level scalar metrics (None = undefined)."""
    out: dict[str, float | None] = {}
    pred = p.argmax(axis=1)
    cm = None
    if {"accuracy", "balanced_accuracy", "macro_f1"} & set(keys):
        cm = _confusion(y, pred, k)
    for key in keys:
        if key == "accuracy":
            out[key] = _ratio(np.trace(cm), cm.sum())
        elif key == "balanced_accuracy":
            support = cm.sum(axis=1)
            present = support > 0
            out[key] = float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else None
        elif key == "macro_f1":
            tp = np.diag(cm).astype(np.float64)
            support = cm.sum(axis=1)
            predicted = cm.sum(axis=0)
            used = (support + predicted) > 0
            if not used.any():
                out[key] = None
            else:
                f1 = 2 * tp[used] / (support[used] + predicted[used])
                out[key] = float(f1.mean())
        elif key == "auc":
            out[key] = _auc(y, p, k)[0]
        elif key == "ece":
            out[key] = _f(expected_calibration_error(p, y))
        elif key == "nll":
            out[key] = _nll(y, p)
        else:
            value = classification_metrics(y, p, list(range(k))).get(key)
            if isinstance(value, (dict, list)):
                raise ValueError(f"metric {key!r} is not a scalar")
            out[key] = _f(value)
    return out


def _auc(y: np.ndarray, p: np.ndarray, k: int) -> tuple[float | None, list[float | None]]:
    per_class = [roc_auc_binary(p[:, c], y == c) for c in range(k)]
    if k == 2:
        return per_class[1], per_class
    defined = [a for a in per_class if a is not None]
    return (float(np.mean(defined)) if defined else None), per_class


def _nll(y: np.ndarray, p: np.ndarray) -> float | None:
    if y.size == 0:
        return None
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], _EPS, 1.0))))


def classification_metrics(y_true, probs, classes: Sequence) -> dict:
    """All metrics of one prediction set.

    Returns a dict with: ``n``, ``classes``, ``accuracy``, ``balanced_accuracy`` (mean recall over
    the classes present in ``y_true``), ``macro_f1`` (over classes present in truth or prediction),
    ``per_class`` {cls: {sensitivity, specificity, precision, f1, support}}, ``auc``,
    ``auc_per_class`` {cls: one-vs-rest AUC or None}, ``confusion`` (rows = truth, columns =
    prediction), ``ece`` (15 bins of the max probability), ``nll``.
    Undefined values (a class absent from y_true, an empty input) are ``None``.
    """
    classes = list(classes)
    k = len(classes)
    y = encode_labels(y_true, classes)
    p = as_probs(probs, k)
    if p.shape[0] != y.size:
        raise ValueError(f"{y.size} labels but {p.shape[0]} probability rows")
    n = int(y.size)
    names = [str(c) for c in classes]
    pred = p.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    cm = _confusion(y, pred, k)
    scal = _scalar_metrics(y, p, k, ("accuracy", "balanced_accuracy", "macro_f1")) if n else {}

    per_class = {}
    for c, name in enumerate(names):
        tp = int(cm[c, c])
        fn = int(cm[c].sum() - tp)
        fp = int(cm[:, c].sum() - tp)
        tn = int(n - tp - fn - fp)
        per_class[name] = {
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "support": tp + fn,
        }
    auc, auc_pc = _auc(y, p, k) if n else (None, [None] * k)
    return {
        "n": n,
        "classes": names,
        "accuracy": scal.get("accuracy"),
        "balanced_accuracy": scal.get("balanced_accuracy"),
        "macro_f1": scal.get("macro_f1"),
        "auc": auc,
        "auc_per_class": dict(zip(names, auc_pc)),
        "per_class": per_class,
        "confusion": cm.astype(int).tolist(),
        "ece": _f(expected_calibration_error(p, y)) if n else None,
        "nll": _nll(y, p),
    }


# ----------------------------------------------------------------------------- patients
def aggregate_by_patient(patient_ids, probs, y_true, weights=None):
    """Mean slice probabilities per patient.

    Returns ``(pids, patient_probs, patient_true)``: patients in order of first appearance,
    (P, K) float64 probabilities (weighted mean when ``weights`` is given, e.g. presence relevance;
    a patient whose weights sum to 0 falls back to the plain mean), and each patient's label.
    Raises ValueError when a patient's slices carry different labels.
    """
    pid_arr = np.asarray(patient_ids)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    y = np.asarray(y_true)
    n = pid_arr.shape[0]
    if p.shape[0] != n or y.shape[0] != n:
        raise ValueError(f"lengths differ: {n} patient ids, {p.shape[0]} prob rows, {y.shape[0]} labels")
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and (w.shape[0] != n or np.any(w < 0) or not np.all(np.isfinite(w))):
        raise ValueError("weights must be finite, non-negative, one per slice")

    keys = [str(v) for v in pid_arr.tolist()]
    order: dict[str, int] = {}
    for key in keys:
        order.setdefault(key, len(order))
    inv = np.fromiter((order[key] for key in keys), dtype=np.int64, count=n)
    n_p = len(order)
    first = np.full(n_p, -1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        first[inv[i]] = i
    pids = pid_arr[first]

    patient_true = y[first]
    bad = y != patient_true[inv]
    if np.any(bad):
        who = sorted({keys[i] for i in np.flatnonzero(bad)})
        raise ValueError(f"patients with inconsistent slice labels: {who[:10]}")

    counts = np.bincount(inv, minlength=n_p).astype(np.float64)
    sums = np.zeros((n_p, p.shape[1]))
    np.add.at(sums, inv, p)
    patient_probs = sums / counts[:, None]
    if w is not None:
        wsum = np.bincount(inv, weights=w, minlength=n_p)
        wsums = np.zeros_like(sums)
        np.add.at(wsums, inv, p * w[:, None])
        ok = wsum > 0
        patient_probs[ok] = wsums[ok] / wsum[ok, None]
    return pids, patient_probs, patient_true


# ----------------------------------------------------------------------------- bootstrap
def _group_index(groups, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    g = np.asarray([str(v) for v in np.asarray(groups).tolist()])
    if g.shape[0] != n:
        raise ValueError(f"{g.shape[0]} groups for {n} samples")
    _, inv = np.unique(g, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.cumsum(np.bincount(inv))
    return np.split(order, bounds[:-1])


def _resamples(members: list[np.ndarray], n_boot: int, seed: int):
    rng = np.random.default_rng(seed)
    n_g = len(members)
    for _ in range(n_boot):
        pick = rng.integers(0, n_g, size=n_g)
        yield np.concatenate([members[j] for j in pick])


def _percentile(values: list[float], alpha: float) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    lo, hi = np.percentile(np.asarray(values), [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _safe(metric_fn: Callable, y, p) -> float | None:
    try:
        v = metric_fn(y, p)
    except (ValueError, ZeroDivisionError, IndexError):
        return None
    return _f(v)


def bootstrap_ci(
    metric_fn: Callable, y_true, probs, groups=None, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float | None, float | None, float | None]:
    """Percentile bootstrap CI of ``metric_fn(y_true_subset, probs_subset)`` resampling GROUPS.

    ``groups`` (e.g. patient ids, one per sample) are drawn with replacement and all their samples
    go in; ``groups=None`` resamples single samples. Resamples where the metric is undefined
    (returns None/nan or raises ValueError, e.g. AUC with one class) are skipped. Returns
    ``(point, lo, hi)``; lo/hi are None if no resample gave a defined value.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs)
    point = _safe(metric_fn, y, p)
    vals = []
    for idx in _resamples(_group_index(groups, y.shape[0]), n_boot, seed):
        v = _safe(metric_fn, y[idx], p[idx])
        if v is not None:
            vals.append(v)
    lo, hi = _percentile(vals, alpha)
    return point, lo, hi


DEFAULT_CI_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")


def metrics_with_ci(
    y_true,
    probs,
    classes: Sequence,
    groups=None,
    keys: Sequence[str] = DEFAULT_CI_KEYS,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    patient_level: bool = False,
    weights=None,
) -> dict:
    """``classification_metrics`` plus ``"ci95": {key: [lo, hi]}`` from a patient bootstrap.

    Slice level (default): metrics over slices; the bootstrap resamples ``groups`` (patients) so the
    interval reflects the number of patients, not of slices. ``patient_level=True``: slices are first
    averaged per patient (``aggregate_by_patient``, optionally ``weights``), then metrics and the
    bootstrap run over patients. Extra keys: ``level``, ``n_patients``, ``n_boot``, ``ci_alpha``,
    ``ci_n_valid`` {key: number of resamples where the metric was defined}.
    ``keys`` may name any scalar of classification_metrics (accuracy, balanced_accuracy, macro_f1,
    auc, ece, nll).
    """
    classes = list(classes)
    k = len(classes)
    y = encode_labels(y_true, classes)
    p = as_probs(probs, k)
    if groups is None:
        groups = np.arange(y.size)
    if patient_level:
        _, p, y = aggregate_by_patient(groups, p, y, weights=weights)
        y = y.astype(np.int64)
        boot_groups = None
    else:
        boot_groups = groups
    out = classification_metrics(y, p, classes)
    out["level"] = "patient" if patient_level else "slice"
    out["n_patients"] = int(len({str(g) for g in np.asarray(groups).tolist()}))

    keys = list(keys)
    vals: dict[str, list[float]] = {key: [] for key in keys}
    for idx in _resamples(_group_index(boot_groups, y.size), n_boot, seed):
        got = _scalar_metrics(y[idx], p[idx], k, keys)
        for key in keys:
            if got[key] is not None:
                vals[key].append(got[key])
    out["ci95"] = {key: list(_percentile(vals[key], alpha)) for key in keys}
    out["ci_n_valid"] = {key: len(vals[key]) for key in keys}
    out["n_boot"] = int(n_boot)
    out["ci_alpha"] = float(alpha)
    return out


# ----------------------------------------------------------------------------- folds
def mean_ci_over_folds(values, alpha: float = 0.05) -> dict:
    """Mean, sample std (ddof=1) and Student-t ``ci95`` over per-fold values.

    None/nan entries (a metric undefined in a fold) are ignored. With fewer than 2 values std and
    the interval are None. Returns {mean, std, ci95: [lo, hi], n}.
    """
    from scipy.stats import t  # heavy: scipy, loaded on first use

    v = np.asarray([float(x) for x in values if _f(x) is not None], dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "std": None, "ci95": [None, None], "n": n}
    std = float(v.std(ddof=1))
    half = float(t.ppf(1 - alpha / 2, df=n - 1) * std / math.sqrt(n))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}
