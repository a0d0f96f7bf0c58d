import numpy as np
import pytest

from core.research.acgan import FeatureACGAN, balance_with_synthetic, train_feature_acgan

D = 8


def _clusters(counts, seed=0):
    """Well-separated non-negative Gaussian clusters (like pooled ReLU features), one per class."""
    rng = np.random.default_rng(seed)
    centers = np.zeros((len(counts), D))
    for c in range(len(counts)):
        centers[c, 2 * c : 2 * c + 2] = 6.0
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    x = np.maximum(centers[y] + 0.7 * rng.normal(size=(y.size, D)) + 1.0, 0.0)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def trained():
    x, y = _clusters([60, 60, 20])
    return x, y, train_feature_acgan(x, y, 3, epochs=30, seed=0)


def test_shapes_dtype_floor_and_history(trained):
    x, y, gan = trained
    assert isinstance(gan, FeatureACGAN) and gan.dim == D and gan.n_classes == 3
    s = gan.sample(1, 25)
    assert s.shape == (25, D) and s.dtype == np.float32 and np.all(np.isfinite(s))
    assert np.all(s >= x.min(axis=0) - 1e-6)  # never below the real per-dimension minimum
    assert gan.sample(0, 0).shape == (0, D)
    assert len(gan.history) == 30 and {"d_loss", "g_loss"} <= set(gan.history[-1])
    with pytest.raises(ValueError):
        gan.sample(3, 5)


def test_class_conditioning_recognised_by_classifier_trained_on_real(trained):
    from sklearn.linear_model import LogisticRegression

    x, y, gan = trained
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    for c in range(3):
        acc = float(np.mean(clf.predict(gan.sample(c, 200, seed=5)) == c))
        assert acc > 0.8, (c, acc)  # chance is 1/3


def test_seeds_reproducible():
    x, y = _clusters([30, 30], seed=1)
    a = train_feature_acgan(x, y, 2, epochs=5, seed=3)
    b = train_feature_acgan(x, y, 2, epochs=5, seed=3)
    c = train_feature_acgan(x, y, 2, epochs=5, seed=4)
    np.testing.assert_array_equal(a.sample(0, 10, seed=1), b.sample(0, 10, seed=1))
    np.testing.assert_array_equal(a.sample(1, 10), b.sample(1, 10))  # call-counter seeds
    np.testing.assert_array_equal(a.sample(1, 10), b.sample(1, 10))
    assert not np.array_equal(a.sample(0, 10, seed=1), c.sample(0, 10, seed=1))
    assert not np.array_equal(a.sample(0, 10, seed=1), a.sample(0, 10, seed=2))


def test_balance_counts_and_real_rows_untouched(trained):
    x, y, gan = trained
    x_before = x.copy()
    xa, ya, syn = balance_with_synthetic(x, y, "max", gan=gan)
    assert np.bincount(ya).tolist() == [60, 60, 60]
    assert syn.sum() == 40 and not syn[: y.size].any() and syn[y.size :].all()
    np.testing.assert_array_equal(xa[: y.size], x)  # real rows first, unchanged, in order
    np.testing.assert_array_equal(ya[: y.size], y)
    np.testing.assert_array_equal(x, x_before)  # input not modified
    assert set(ya[syn].tolist()) == {2}  # only the minority class is topped up
    assert xa.dtype == x.dtype

    xb, yb, sb = balance_with_synthetic(x, y, 50, gan=gan)  # explicit target: majority untouched
    assert np.bincount(yb).tolist() == [60, 60, 50] and sb.sum() == 30


def test_balance_edge_cases(trained):
    x, y, gan = trained
    xa, ya, syn = balance_with_synthetic(x, y, 10, gan=gan)  # everyone above target: no-op
    assert not syn.any() and xa.shape == x.shape
    # a class with no real rows cannot be imitated
    xb, yb, sb = balance_with_synthetic(x[y < 2], y[y < 2], "max", gan=gan, n_classes=3)
    assert not sb.any()
    with pytest.raises(ValueError):
        balance_with_synthetic(x[:, :4], y, "max", gan=gan)  # GAN of another feature width
    with pytest.raises(ValueError):
        balance_with_synthetic(x, y, "min", gan=gan)


def test_balance_trains_its_own_gan_when_none_given():
    x, y = _clusters([20, 6], seed=2)
    xa, ya, syn = balance_with_synthetic(x, y, epochs=3, seed=0)
    assert np.bincount(ya).tolist() == [20, 20] and syn.sum() == 14
