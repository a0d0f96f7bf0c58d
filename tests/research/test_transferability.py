import math

import numpy as np
import pytest

from core.research.transferability import (
    h_score,
    leep,
    logme,
    logme_evidence,
    nce,
    rank_agreement,
    rank_candidates,
)


# ----------------------------------------------------------------------------- NCE
def test_nce_by_hand():
    # z = source hard labels, y = target labels, n = 4
    # joint P(y,z): (0,0)=1/4, (1,0)=1/4, (1,1)=2/4 ; P(z=0)=P(z=1)=1/2
    # P(y|z): P(0|0)=1/2, P(1|0)=1/2, P(1|1)=1
    # NCE = 1/4 log 1/2 + 1/4 log 1/2 + 1/2 log 1 = -1/2 log 2
    assert nce([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(-0.5 * math.log(2))


def test_nce_zero_when_source_determines_target():
    # several source classes map to the same target class: still H(Y|Z) = 0
    assert nce([0, 1, 2, 2, 1, 3], [0, 1, 1, 1, 1, 0]) == pytest.approx(0.0, abs=1e-12)


def test_nce_is_minus_entropy_when_independent_and_accepts_probabilities():
    z = [0, 0, 1, 1]
    y = [0, 1, 0, 1]
    assert nce(z, y) == pytest.approx(-math.log(2))
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])  # argmax = z
    assert nce(probs, y) == pytest.approx(-math.log(2))


# ----------------------------------------------------------------------------- LEEP
THETA = np.array([[0.8, 0.2], [0.6, 0.4], [0.2, 0.8], [0.4, 0.6]])
Y4 = np.array([0, 0, 1, 1])


def test_leep_by_hand():
    # joint P(y,z) = 1/4 * sums of theta rows per target class:
    #   y=0: [0.8+0.6, 0.2+0.4]/4 = [0.35, 0.15] ; y=1: [0.2+0.4, 0.8+0.6]/4 = [0.15, 0.35]
    # P(z) = [0.5, 0.5] -> P(y|z): P(0|z0)=0.7, P(1|z0)=0.3, P(0|z1)=0.3, P(1|z1)=0.7
    # EEP(y_i|x_i): 0.7*0.8+0.3*0.2 = 0.62 ; 0.7*0.6+0.3*0.4 = 0.54 ; 0.3*0.2+0.7*0.8 = 0.62 ;
    #               0.3*0.4+0.7*0.6 = 0.54   -> LEEP = (log 0.62 + log 0.54) / 2
    assert leep(THETA, Y4) == pytest.approx((math.log(0.62) + math.log(0.54)) / 2)


def _expected_empirical_predictor_loglik(theta, y):
    """Independent, loop-based computation of the EEP's mean log-likelihood (Nguyen et al. Eq. 1-2)."""
    n, zn = theta.shape
    ys = sorted(set(y.tolist()))
    joint = {(a, z): sum(theta[i, z] for i in range(n) if y[i] == a) / n for a in ys for z in range(zn)}
    marg = {z: sum(joint[(a, z)] for a in ys) for z in range(zn)}
    total = 0.0
    for i in range(n):
        p = sum(joint[(y[i], z)] / marg[z] * theta[i, z] for z in range(zn) if marg[z] > 0)
        total += math.log(p)
    return total / n


def test_leep_equals_loglik_of_expected_empirical_predictor():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(30, 5))
    theta = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, size=30)
    assert leep(theta, y) == pytest.approx(_expected_empirical_predictor_loglik(theta, y), rel=1e-10)


def test_leep_properties():
    # one-hot source predictions that determine the target: the EEP is exact -> LEEP = 0
    theta = np.eye(3)[[0, 1, 2, 2, 1]]
    assert leep(theta, [0, 1, 1, 1, 1]) == pytest.approx(0.0, abs=1e-12)
    # uninformative source (uniform theta): LEEP = -H(Y) of the empirical label distribution
    assert leep(np.full((4, 3), 1 / 3), [0, 1, 1, 1]) == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    with pytest.raises(ValueError):
        leep(np.array([[0.5, 0.6]]), [0])


# ----------------------------------------------------------------------------- LogME
def test_logme_matches_direct_evidence_and_is_maximised():
    rng = np.random.default_rng(0)
    for n, d in [(40, 5), (12, 20)]:  # n > d and n < d (rank-deficient F^T F)
        f = rng.normal(size=(n, d))
        y = rng.integers(0, 3, size=n)
        score, det = logme(f, y, return_details=True)
        per_class = []
        for k in range(3):
            t = (y == k).astype(float)
            a, b = det["alpha"][k], det["beta"][k]
            e = logme_evidence(f, t, a, b) / n  # O(n^3) marginal-likelihood formula
            assert det["per_class"][k] == pytest.approx(e, rel=1e-8, abs=1e-10)
            for ma, mb in [(1.2, 1), (0.8, 1), (1, 1.2), (1, 0.8)]:
                assert logme_evidence(f, t, a * ma, b * mb) / n <= e + 1e-6
            per_class.append(e)
        assert score == pytest.approx(np.mean(per_class))


def test_logme_higher_for_separable_features_and_label_permutation_invariant():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    noise = rng.normal(size=(90, 10))
    separable = noise.copy()
    separable[np.arange(90), y] += 5.0
    assert logme(separable, y) > logme(noise, y) + 0.1
    perm = np.array([2, 0, 1])[y]
    assert logme(separable, perm) == pytest.approx(logme(separable, y))


# ----------------------------------------------------------------------------- H-score
def test_h_score_by_hand():
    # f = [0, 2, 4, 6], y = [0, 0, 1, 1]: centred f = [-3, -1, 1, 3], cov(f) = 20/4 = 5;
    # class means -2, 2 -> cov(E[f|y]) = 4 -> H = 4 / 5
    assert h_score(np.array([[0.0], [2.0], [4.0], [6.0]]), Y4, ridge=0.0) == pytest.approx(0.8)


def test_h_score_properties():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], 40)
    noise = rng.normal(size=(120, 6))
    sep = noise.copy()
    sep[np.arange(120), y] += 4.0
    hs, hn = h_score(sep, y), h_score(noise, y)
    assert hs > hn + 0.5
    assert 0 <= hn and hs <= 2 + 1e-9  # at most K - 1 = 2
    assert h_score(sep * 37.0, y) == pytest.approx(hs, rel=1e-9)  # scale invariant
    a = rng.normal(size=(6, 6)) + 3 * np.eye(6)  # invertible linear map
    assert h_score(sep @ a, y, ridge=0.0) == pytest.approx(h_score(sep, y, ridge=0.0), rel=1e-6)


# ----------------------------------------------------------------------------- ranking
def test_rank_candidates_orders_best_first_and_puts_undefined_last():
    r = rank_candidates({"a": 0.1, "b": 0.9, "c": float("nan"), "d": 0.5, "e": 0.5})
    assert [x["name"] for x in r] == ["b", "d", "e", "a", "c"]
    assert [x["rank"] for x in r] == [1, 2, 3, 4, None]
    assert r[-1]["score"] is None


def test_rank_agreement():
    pred = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0, "only_pred": 9.0}
    acc = {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.85, "e": 0.9}
    r = rank_agreement(pred, acc)
    assert r["n"] == 5 and "only_pred" not in r["names"]
    assert r["kendall_tau"] == pytest.approx(1.0) and r["spearman_rho"] == pytest.approx(1.0)
    assert 0 < r["kendall_p"] < 0.05
    rev = rank_agreement([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert rev["kendall_tau"] == pytest.approx(-1.0) and rev["spearman_rho"] == pytest.approx(-1.0)
    # one swap among 4: tau = (5 - 1) / 6
    assert rank_agreement([1, 2, 3, 4], [1, 3, 2, 4])["kendall_tau"] == pytest.approx(4 / 6)
    assert rank_agreement({"a": 1, "b": 2}, {"a": 1, "b": 2})["kendall_tau"] is None
