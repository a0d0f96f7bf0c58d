import numpy as np
import pytest

from core.training.calibration import apply_temperature, fit_temperature, nll_at_temperature


def _calibrated(n=4000, k=3, seed=0):
    """Logits z with labels drawn from softmax(z): calibrated by construction (T = 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    u = rng.random(n)[:, None]
    y = (u > np.cumsum(p, 1)).sum(1)
    return z, y


def test_recovers_known_temperature():
    z, y = _calibrated()
    assert fit_temperature(z * 3.0, y) == pytest.approx(3.0, rel=0.12)
    assert fit_temperature(z / 2.0, y) == pytest.approx(0.5, rel=0.12)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.12)


def test_fitted_temperature_lowers_nll():
    z, y = _calibrated(seed=1)
    t = fit_temperature(z * 3.0, y)
    assert nll_at_temperature(z * 3.0, y, t) < nll_at_temperature(z * 3.0, y, 1.0)


def test_apply_temperature_is_softmax_of_scaled_logits():
    logits = np.array([[2.0, 0.0], [0.0, 0.0], [1000.0, 0.0]])
    p = apply_temperature(logits, 2.0)
    # softmax([1, 0]) = [e/(e+1), 1/(e+1)]
    e = np.e
    np.testing.assert_allclose(p[0], [e / (e + 1), 1 / (e + 1)])
    np.testing.assert_allclose(p[1], [0.5, 0.5])
    np.testing.assert_allclose(p[2], [1.0, 0.0], atol=1e-12)  # no overflow, no nan
    assert isinstance(p, np.ndarray)
    with pytest.raises(ValueError):
        apply_temperature(logits, 0.0)


def test_fit_returns_one_when_impossible():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    assert fit_temperature(np.array([[np.nan, 1.0]]), [0]) == 1.0
    assert fit_temperature(np.array([[1.0, 2.0]]), [5]) == 1.0
