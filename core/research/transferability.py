"""Transferability estimation: score a pretrained model on a target task before fine-tuning it.

Pure numpy/scipy. Every score is "higher = expected to transfer better", so candidates can be
ranked by any of them with :func:`rank_candidates`, and the ranking checked against the accuracies
actually reached after fine-tuning with :func:`rank_agreement`.

- :func:`logme`   You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
  Learning", ICML 2021. Features of the target data.
- :func:`leep`    Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
  Representations", ICML 2020. Source-model class probabilities on the target data.
- :func:`nce`     Tran et al., "Transferability and Hardness of Supervised Classification Tasks",
  ICCV 2019. Hard source labels (argmax of the source model) on the target data.
- :func:`h_score` Bao et al., "An Information-Theoretic Approach to Transferability in Task
  Transfer Learning", ICIP 2019. Features of the target data.

Target labels are class indices 0..K-1 (any integers are re-indexed by their sorted unique values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "logme",
    "logme_evidence",
    "leep",
    "nce",
    "h_score",
    "rank_candidates",
    "rank_agreement",
]

_EPS = 1e-12


def _labels(y, n: int | None = None) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} samples")
    if y.size == 0:
        raise ValueError("no samples")
    _, inv = np.unique(y, return_inverse=True)
    return inv.astype(np.int64)


def _features(f) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain nan or inf")
    return f


# ----------------------------------------------------------------------------- LogME
def logme_evidence(features, target, alpha: float, beta: float) -> float:
    """Log marginal likelihood log p(target | features, alpha, beta) of Bayesian linear regression.

    Model: w ~ N(0, alpha^-1 I), target ~ N(features @ w, beta^-1 I), so marginally
    target ~ N(0, beta^-1 I + alpha^-1 F F^T). Evaluated directly (O(n^3)); used to check
    :func:`logme` and for small inputs. Returns the total (not per sample) log evidence.
    """
    f = _features(features)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    n = f.shape[0]
    cov = np.eye(n) / beta + f @ f.T / alpha
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        raise ValueError("covariance is not positive definite")
    return float(-0.5 * (n * math.log(2 * math.pi) + logdet + t @ np.linalg.solve(cov, t)))


def _logme_one(
    u: np.ndarray, sig: np.ndarray, t: np.ndarray, d: int, max_iter: int, tol: float
) -> tuple[float, float, float]:
    """Evidence maximisation for one target column. ``sig`` = singular values of F (rank r)."""
    n = u.shape[0]
    s = sig**2  # non-zero eigenvalues of F^T F
    uty = u.T @ t  # (r,)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        # posterior mean m = beta A^-1 F^T t with A = alpha I + beta F^T F, in the SVD basis
        coef = beta * sig / (alpha + beta * s)  # m = V @ (coef * uty)
        gamma = float(np.sum(beta * s / (alpha + beta * s)))
        m2 = float(np.sum((coef * uty) ** 2))  # ||m||^2
        res = float(np.sum((t - u @ (sig * coef * uty)) ** 2))  # ||t - F m||^2
        new_alpha = gamma / max(m2, _EPS)
        new_beta = max(n - gamma, _EPS) / max(res, _EPS)
        done = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    coef = beta * sig / (alpha + beta * s)
    m2 = float(np.sum((coef * uty) ** 2))
    res = float(np.sum((t - u @ (sig * coef * uty)) ** 2))
    # log|A| over all d eigenvalues of F^T F: the d - r zero ones contribute log(alpha) each
    logdet_a = float(np.sum(np.log(alpha + beta * s))) + (d - s.size) * math.log(alpha)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - 0.5 * logdet_a
        - beta / 2 * res
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    )
    return evidence, alpha, beta


def logme(features, labels, *, max_iter: int = 100, tol: float = 1e-6, return_details: bool = False):
    """LogME (You et al., ICML 2021): mean log evidence per sample of a linear model on features.

    For each class k, the one-hot column t_k = [y == k] is regressed on the features with a
    Bayesian linear model (prior precision alpha, noise precision beta); alpha and beta maximise the
    evidence by the paper's fixed-point iteration (MacKay): gamma = sum beta s_i / (alpha + beta s_i),
    alpha = gamma / ||m||^2, beta = (n - gamma) / ||t - F m||^2, computed on the SVD of the feature
    matrix F (n, d), s_i = eigenvalues of F^T F. The score is the mean over classes of the maximised
    log evidence divided by n. Features are used as given (the paper uses raw penultimate features,
    no centring). With ``return_details`` also returns {"alpha": [...], "beta": [...]} per class.
    """
    f = _features(features)
    y = _labels(labels, f.shape[0])
    n, d = f.shape
    u, sig, _ = np.linalg.svd(f, full_matrices=False)
    keep = sig > sig.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps
    u, sig = u[:, keep], sig[keep]
    n_classes = int(y.max()) + 1
    evid, alphas, betas = [], [], []
    for k in range(n_classes):
        e, a, b = _logme_one(u, sig, (y == k).astype(np.float64), d, max_iter, tol)
        evid.append(e / n)
        alphas.append(a)
        betas.append(b)
    score = float(np.mean(evid))
    if return_details:
        return score, {"alpha": alphas, "beta": betas, "per_class": [float(e) for e in evid]}
    return score


# ----------------------------------------------------------------------------- LEEP
def _source_probs(theta) -> np.ndarray:
    p = np.asarray(theta, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"source probabilities must be (n, Z), got shape {p.shape}")
    if np.any(p < -1e-9) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("source probabilities must be non-negative rows summing to 1 (softmax output)")
    return np.clip(p, 0.0, None)


def leep(source_probs, labels) -> float:
    """LEEP (Nguyen et al., ICML 2020): log expected empirical prediction.

    ``source_probs`` theta (n, Z): the source model's softmax over its Z source classes on the n
    target samples; ``labels`` the target labels y_i. Empirical joint P(y, z) = 1/n sum_{i: y_i = y}
    theta_iz, marginal P(z) = sum_y P(y, z), conditional P(y | z) = P(y, z) / P(z). The expected
    empirical predictor gives p(y | x_i) = sum_z P(y | z) theta_iz, and
    LEEP = 1/n sum_i log sum_z P(y_i | z) theta_iz  (<= 0; higher = better transfer).
    """
    theta = _source_probs(source_probs)
    y = _labels(labels, theta.shape[0])
    n = theta.shape[0]
    onehot = np.eye(int(y.max()) + 1)[y]  # (n, Y)
    joint = onehot.T @ theta / n  # (Y, Z)
    pz = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y|z)
    eep = theta @ cond.T  # (n, Y): p(y | x_i)
    return float(np.mean(np.log(np.clip(eep[np.arange(n), y], _EPS, None))))


# ----------------------------------------------------------------------------- NCE
def nce(source_labels, labels) -> float:
    """NCE (Tran et al., ICCV 2019): negative conditional entropy -H(Y | Z) in nats.

    ``source_labels`` z_i: the source model's hard label for each target sample (class indices, or
    an (n, Z) probability matrix whose argmax is taken); ``labels`` the target labels y_i. With the
    empirical joint P(y, z) = #{i: y_i = y, z_i = z} / n, NCE = sum_{y,z} P(y, z) log P(y | z).
    0 when z determines y; -H(Y) when z carries no information about y.
    """
    z = np.asarray(source_labels)
    if z.ndim == 2:
        z = z.argmax(axis=1)
    z = _labels(z)
    y = _labels(labels, z.shape[0])
    n = y.shape[0]
    joint = np.zeros((int(y.max()) + 1, int(z.max()) + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= n
    pz = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    cond = np.divide(joint, pz, out=np.ones_like(joint), where=nz)
    return float(np.sum(joint[nz] * np.log(cond[nz])))


# ----------------------------------------------------------------------------- H-score
def h_score(features, labels, ridge: float = 1e-6) -> float:
    """H-score (Bao et al., ICIP 2019): tr(cov(f)^-1 cov(E[f | y])).

    ``features`` f (n, d) of the target data, ``labels`` y. cov(f) is the feature covariance;
    E[f | y] replaces each sample by its class mean, and cov of that is the between-class covariance.
    High when the class means are far apart relative to the spread of the features (the score is at
    most min(d, K - 1) when cov(f) is invertible). cov(f) gets a ridge of ``ridge`` times its mean
    eigenvalue (trace / d) for stability, which keeps the score invariant to rescaling the features.
    """
    f = _features(features)
    y = _labels(labels, f.shape[0])
    n, d = f.shape
    fc = f - f.mean(axis=0, keepdims=True)
    cov_f = fc.T @ fc / n
    means = np.zeros((int(y.max()) + 1, d))
    np.add.at(means, y, fc)
    means /= np.bincount(y)[:, None]
    g = means[y]  # E[f | y] per sample (already centred)
    cov_g = g.T @ g / n
    scale = float(np.trace(cov_f)) / d
    if scale <= 0:
        return 0.0
    reg = cov_f + ridge * scale * np.eye(d)
    return float(np.trace(np.linalg.solve(reg, cov_g)))


# ----------------------------------------------------------------------------- ranking
def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def rank_candidates(scores: Mapping[str, float]) -> list[dict]:
    """Candidates best first: [{"rank": 1, "name": ..., "score": ...}, ...].

    Higher score = better. Ties keep the order of the names; candidates whose score is None/nan go
    last with rank None and score None.
    """
    good = [(str(k), float(v)) for k, v in scores.items() if _finite(v)]
    bad = [str(k) for k, v in scores.items() if not _finite(v)]
    good.sort(key=lambda kv: (-kv[1], kv[0]))
    out = [{"rank": i + 1, "name": k, "score": v} for i, (k, v) in enumerate(good)]
    out += [{"rank": None, "name": k, "score": None} for k in sorted(bad)]
    return out


def rank_agreement(predicted_scores, actual_accuracies) -> dict:
    """How well a transferability score ranks candidates: Kendall tau-b and Spearman rho.

    Both arguments are dicts {candidate: value} (only names in both, with finite values, are used)
    or equal-length sequences. Returns {"n", "names", "kendall_tau", "kendall_p", "spearman_rho",
    "spearman_p"}; the statistics are None with fewer than 3 candidates or a constant input.
    """
    from scipy.stats import kendalltau, spearmanr  # heavy: scipy, loaded on first use

    if isinstance(predicted_scores, Mapping) != isinstance(actual_accuracies, Mapping):
        raise TypeError("pass two dicts or two sequences")
    if isinstance(predicted_scores, Mapping):
        names = [
            k
            for k in predicted_scores
            if k in actual_accuracies and _finite(predicted_scores[k]) and _finite(actual_accuracies[k])
        ]
        a = [float(predicted_scores[k]) for k in names]
        b = [float(actual_accuracies[k]) for k in names]
    else:
        a, b = list(predicted_scores), list(actual_accuracies)
        if len(a) != len(b):
            raise ValueError(f"{len(a)} scores but {len(b)} accuracies")
        keep = [i for i in range(len(a)) if _finite(a[i]) and _finite(b[i])]
        names = [str(i) for i in keep]
        a, b = [float(a[i]) for i in keep], [float(b[i]) for i in keep]
    out = {
        "n": len(names),
        "names": [str(k) for k in names],
        "kendall_tau": None,
        "kendall_p": None,
        "spearman_rho": None,
        "spearman_p": None,
    }
    if len(names) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return out
    kt = kendalltau(a, b)
    sr = spearmanr(a, b)
    out.update(
        kendall_tau=_none(kt.statistic),
        kendall_p=_none(kt.pvalue),
        spearman_rho=_none(sr.statistic),
        spearman_p=_none(sr.pvalue),
    )
    return out


def _none(x) -> float | None:
    return float(x) if _finite(x) else None
