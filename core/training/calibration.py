"""Temperature scaling (Guo et al. 2017): one scalar T > 0 so that softmax(logits / T) is calibrated.

numpy in, numpy out (torch tensors on the CPU are accepted through ``np.asarray``). Fit T on a
validation split, never on the test split.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fit_temperature", "apply_temperature", "nll_at_temperature"]

_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _prepare(logits, y_true) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    if z.ndim != 2 or z.shape[0] != y.size:
        raise ValueError(f"logits must be (n, K) with n = len(y_true); got {z.shape} and {y.size}")
    return z, y


def nll_at_temperature(logits, y_true, T: float) -> float:
    """Mean negative log-likelihood of ``y_true`` under softmax(logits / T)."""
    z, y = _prepare(logits, y_true)
    return float(-_log_softmax(z / T)[np.arange(y.size), y].mean())


def fit_temperature(logits, y_true) -> float:
    """T > 0 minimising the NLL of softmax(logits / T), searched on log T in [1/20, 20].

    Returns 1.0 when the fit is impossible or fails (empty input, non-finite logits, optimiser
    failure) or does not improve on T = 1.
    """
    from scipy.optimize import minimize_scalar  # heavy: scipy, loaded on first use

    try:
        z, y = _prepare(logits, y_true)
        if y.size == 0 or z.shape[1] < 2 or not np.all(np.isfinite(z)):
            return 1.0
        if y.min() < 0 or y.max() >= z.shape[1]:
            return 1.0
        rows = np.arange(y.size)

        def nll(log_t: float) -> float:
            return float(-_log_softmax(z * math.exp(-log_t))[rows, y].mean())

        res = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
        if not res.success or not math.isfinite(res.x) or not math.isfinite(res.fun):
            return 1.0
        if res.fun > nll(0.0):
            return 1.0
        return float(math.exp(res.x))
    except (ValueError, FloatingPointError, OverflowError):
        return 1.0


def apply_temperature(logits, T: float) -> np.ndarray:
    """softmax(logits / T) over the last axis, float64."""
    z = np.asarray(logits, dtype=np.float64)
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"temperature must be a finite positive number, got {T!r}")
    return np.exp(_log_softmax(z / float(T)))
