import math

import numpy as np
import pytest

from core.training.metrics import (
    aggregate_by_patient,
    bootstrap_ci,
    classification_metrics,
    mean_ci_over_folds,
    metrics_with_ci,
    roc_auc_binary,
)

BIN = ["no_tumor", "tumor"]


def _binary_example():
    # truth: 4 negatives then 6 positives; P(tumor) below; threshold = argmax (0.5)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.6, 0.4, 0.35, 0.95])
    return y, np.stack([1 - p1, p1], axis=1)


def test_binary_confusion_and_rates_by_hand():
    y, p = _binary_example()
    m = classification_metrics(y, p, BIN)
    # predictions: 0 0 0 1 | 1 1 1 0 0 1  -> TN=3 FP=1 FN=2 TP=4
    assert m["confusion"] == [[3, 1], [2, 4]]
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.7)
    t = m["per_class"]["tumor"]
    assert t["sensitivity"] == pytest.approx(4 / 6)
    assert t["specificity"] == pytest.approx(3 / 4)
    assert t["precision"] == pytest.approx(4 / 5)
    assert t["support"] == 6
    nt = m["per_class"]["no_tumor"]
    assert nt["sensitivity"] == pytest.approx(3 / 4)
    assert nt["specificity"] == pytest.approx(4 / 6)
    assert nt["precision"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    # F1 = 2TP / (2TP + FP + FN): tumor 8/11, no_tumor 6/9
    assert m["macro_f1"] == pytest.approx((8 / 11 + 6 / 9) / 2)


def test_binary_auc_by_hand():
    y, p = _binary_example()
    # pairs (pos > neg): 0.8->4, 0.9->4, 0.6->3, 0.4->3, 0.35->3, 0.95->4 = 21 of 24
    m = classification_metrics(y, p, BIN)
    assert m["auc"] == pytest.approx(21 / 24)
    assert m["auc_per_class"]["tumor"] == pytest.approx(21 / 24)
    assert m["auc_per_class"]["no_tumor"] == pytest.approx(21 / 24)
    # ties count one half
    assert roc_auc_binary([0.5, 0.5], [False, True]) == pytest.approx(0.5)
    assert roc_auc_binary([0.1, 0.2, 0.9], [True, False, True]) == pytest.approx(0.5)


def test_labels_as_names_and_1d_probs_equal_indices():
    y, p = _binary_example()
    names = np.array(BIN)[y]
    a = classification_metrics(y, p, BIN)
    b = classification_metrics(names, p[:, 1], BIN)
    assert a == b


def test_ece_by_hand_one_sample_per_bin():
    # confidences 0.9, 0.75, 0.65, 0.55 fall in 4 different 1/15 bins
    p = np.array([[0.1, 0.9], [0.75, 0.25], [0.35, 0.65], [0.55, 0.45]])
    y = np.array([1, 1, 1, 0])  # correct, wrong, correct, correct
    m = classification_metrics(y, p, BIN)
    assert m["ece"] == pytest.approx((0.1 + 0.75 + 0.35 + 0.45) / 4)  # 0.4125


def test_ece_averages_within_a_bin():
    # 0.90 (correct) and 0.92 (wrong) share bin (13/15, 14/15]: |1 - 1.82| / 4, not (0.1 + 0.92) / 4
    p = np.array([[0.1, 0.9], [0.08, 0.92], [0.35, 0.65], [0.55, 0.45]])
    y = np.array([1, 0, 1, 0])
    m = classification_metrics(y, p, BIN)
    assert m["ece"] == pytest.approx((0.82 + 0.35 + 0.45) / 4)


def test_nll_by_hand():
    p = np.array([[0.5, 0.5], [0.2, 0.8]])
    m = classification_metrics([0, 1], p, BIN)
    assert m["nll"] == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)


def test_multiclass_auc_matches_sklearn_ovr_macro():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, p, ["glioma", "meningioma", "pituitary"])
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for c, name in enumerate(m["classes"]):
        assert m["auc_per_class"][name] == pytest.approx(roc_auc_score(y == c, p[:, c]))


def test_absent_class_does_not_crash():
    classes = ["glioma", "meningioma", "pituitary"]
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    m = classification_metrics(y, p, classes)
    assert m["auc_per_class"]["pituitary"] is None
    assert m["per_class"]["pituitary"]["sensitivity"] is None
    assert m["per_class"]["pituitary"]["support"] == 0
    # glioma OvR: pos {0.7, 0.3} vs neg {0.2, 0.1} -> 1.0; meningioma: pos {0.7, 0.2} vs {0.2, 0.6}
    # pairs: 0.7>0.2, 0.7>0.6, 0.2=0.2 (1/2), 0.2<0.6 -> 2.5/4
    assert m["auc_per_class"]["glioma"] == pytest.approx(1.0)
    assert m["auc_per_class"]["meningioma"] == pytest.approx(0.625)
    assert m["auc"] == pytest.approx((1.0 + 0.625) / 2)
    # balanced accuracy over the present classes: glioma 1/2, meningioma 1/2
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_single_class_binary_auc_is_none():
    m = classification_metrics([1, 1, 1], np.array([0.9, 0.2, 0.7]), BIN)
    assert m["auc"] is None
    assert m["per_class"]["tumor"]["specificity"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_unknown_label_name_raises():
    with pytest.raises(ValueError):
        classification_metrics(["tumor", "cat"], np.array([0.9, 0.2]), BIN)


def test_aggregate_by_patient_mean_and_weighted():
    pids = ["a", "b", "a", "b", "a"]
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.8, 0.2]])
    y = [0, 1, 0, 1, 0]
    ids, pp, yt = aggregate_by_patient(pids, p, y)
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(pp, [[0.8, 0.2], [0.3, 0.7]])
    assert list(yt) == [0, 1]
    ids, pp, _ = aggregate_by_patient(pids, p, y, weights=[1, 1, 0, 3, 2])
    # a: (0.9*1 + 0.7*0 + 0.8*2) / 3 ; b: (0.2*1 + 0.4*3) / 4
    np.testing.assert_allclose(pp[:, 0], [2.5 / 3, 1.4 / 4])
    np.testing.assert_allclose(pp.sum(1), 1.0)


def test_aggregate_zero_weights_fall_back_to_mean():
    _, pp, _ = aggregate_by_patient(["a", "a"], np.array([[0.2, 0.8], [0.6, 0.4]]), [1, 1], weights=[0, 0])
    np.testing.assert_allclose(pp, [[0.4, 0.6]])


def test_aggregate_inconsistent_labels_raise():
    with pytest.raises(ValueError, match="inconsistent"):
        aggregate_by_patient(["a", "a", "b"], np.full((3, 2), 0.5), [0, 1, 1])


def _synthetic(n_patients, slices=5, seed=0):
    """Patients with a shared per-patient offset: slices of one patient are correlated."""
    rng = np.random.default_rng(seed)
    y_p = rng.integers(0, 2, n_patients)
    offset = rng.normal(0, 1.0, n_patients)
    pid = np.repeat(np.arange(n_patients), slices)
    y = y_p[pid]
    score = 1.2 * (2 * y - 1) + offset[pid] + rng.normal(0, 0.5, pid.size)
    p1 = 1 / (1 + np.exp(-score))
    return y, np.stack([1 - p1, p1], 1), pid


def _acc(y, p):
    return float(np.mean(p.argmax(1) == y))


def test_bootstrap_contains_point_and_narrows_with_more_patients():
    y, p, g = _synthetic(20)
    pt, lo, hi = bootstrap_ci(_acc, y, p, g, n_boot=300, seed=0)
    assert pt == pytest.approx(_acc(y, p))
    assert lo <= pt <= hi
    y2, p2, g2 = _synthetic(300)
    pt2, lo2, hi2 = bootstrap_ci(_acc, y2, p2, g2, n_boot=300, seed=0)
    assert lo2 <= pt2 <= hi2
    assert (hi2 - lo2) < 0.6 * (hi - lo)


def test_patient_bootstrap_is_wider_than_slice_bootstrap():
    y, p, g = _synthetic(40, slices=10)
    _, lo_p, hi_p = bootstrap_ci(_acc, y, p, g, n_boot=300)
    _, lo_s, hi_s = bootstrap_ci(_acc, y, p, None, n_boot=300)
    assert (hi_p - lo_p) > 1.5 * (hi_s - lo_s)


def test_bootstrap_is_deterministic_and_skips_undefined():
    # 3 patients, only one positive: many resamples have one class -> AUC undefined, skipped
    y = np.array([0, 0, 1, 1, 0, 0])
    p = np.array([0.1, 0.3, 0.8, 0.6, 0.4, 0.2])
    g = ["a", "a", "b", "b", "c", "c"]
    auc = lambda yy, pp: roc_auc_binary(pp, yy == 1)  # noqa: E731
    r1 = bootstrap_ci(auc, y, p, g, n_boot=200, seed=3)
    r2 = bootstrap_ci(auc, y, p, g, n_boot=200, seed=3)
    assert r1 == r2
    assert r1[0] == pytest.approx(1.0)
    assert r1[1] == pytest.approx(1.0) and r1[2] == pytest.approx(1.0)

    def raises_on_one_class(yy, pp):
        if len(set(yy.tolist())) < 2:
            raise ValueError("one class")
        return 0.5

    assert bootstrap_ci(raises_on_one_class, y, p, g, n_boot=50) == (0.5, 0.5, 0.5)
    assert bootstrap_ci(raises_on_one_class, y[:2], p[:2], g[:2], n_boot=20) == (None, None, None)


def test_metrics_with_ci_slice_and_patient_level():
    y, p, g = _synthetic(30, slices=4, seed=2)
    m = metrics_with_ci(y, p, BIN, g, n_boot=200)
    assert m["level"] == "slice" and m["n"] == 120 and m["n_patients"] == 30
    assert m["accuracy"] == pytest.approx(_acc(y, p))
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
        lo, hi = m["ci95"][key]
        assert lo <= m[key] <= hi, key
        assert m["ci_n_valid"][key] == 200
    # the fast bootstrap path agrees with bootstrap_ci on the same resamples
    _, lo, hi = bootstrap_ci(_acc, y, p, g, n_boot=200, seed=0)
    assert m["ci95"]["accuracy"] == pytest.approx([lo, hi])

    mp = metrics_with_ci(y, p, BIN, g, n_boot=200, patient_level=True)
    _, pp, yt = aggregate_by_patient(g, p, y)
    assert mp["level"] == "patient" and mp["n"] == 30
    assert mp["accuracy"] == pytest.approx(_acc(yt, pp))
    lo, hi = mp["ci95"]["auc"]
    assert lo <= mp["auc"] <= hi


def test_mean_ci_over_folds_by_hand():
    r = mean_ci_over_folds([0.8, 0.9, 0.85, 0.75])
    assert r["mean"] == pytest.approx(0.825)
    assert r["std"] == pytest.approx(math.sqrt(0.0125 / 3))
    half = 3.182446305284263 * math.sqrt(0.0125 / 3) / 2  # t(0.975, df=3)
    assert r["ci95"] == pytest.approx([0.825 - half, 0.825 + half])
    one = mean_ci_over_folds([0.7, None, float("nan")])
    assert one["mean"] == pytest.approx(0.7) and one["ci95"] == [None, None]
