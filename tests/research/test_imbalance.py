import json

import numpy as np
import pytest

import core.research.imbalance as imb
from core.research.imbalance import TREATMENTS, cut_class, run_imbalance_ablation

CLASSES = ["glioma", "meningioma", "pituitary"]


def _split(n, seed):
    rng = np.random.default_rng(seed)
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    y = np.tile([0, 1, 2], n // 3)
    x = np.maximum(centers[y] + rng.normal(size=(y.size, 4)), 0.0)
    # one label per patient, 2 rows each: patient j of class c holds rows 3*(2j)+c and 3*(2j+1)+c
    groups = np.array([f"s{seed}c{c}p{(i // 3) // 2}" for i, c in enumerate(y)])
    return x, y, groups


def test_cut_class_by_rows_and_by_groups():
    y = np.array([0] * 10 + [1] * 40 + [2] * 10)
    keep = cut_class(y, 1, 0.1, seed=0)
    assert np.bincount(y[keep]).tolist() == [10, 4, 10]
    assert np.all(np.diff(keep) > 0)
    assert not np.array_equal(keep, cut_class(y, 1, 0.1, seed=1))
    np.testing.assert_array_equal(keep, cut_class(y, 1, 0.1, seed=0))
    # by group: minority rows come in whole patients (4 rows each, 10 patients) -> 1 patient kept
    groups = np.array(["a"] * 10 + [f"m{i // 4}" for i in range(40)] + ["c"] * 10)
    kg = cut_class(y, 1, 0.1, seed=0, groups=groups)
    kept_min = kg[y[kg] == 1]
    assert kept_min.size == 4 and len(set(groups[kept_min])) == 1
    assert np.all(np.isin(np.flatnonzero(y != 1), kg))  # other classes all kept
    assert cut_class(y, 1, 0.001, seed=0).size == 21  # at least one row survives
    with pytest.raises(ValueError):
        cut_class(y, 1, 0.0, seed=0)


def test_ablation_bookkeeping(monkeypatch):
    xtr, ytr, gtr = _split(120, 0)
    xte, yte, gte = _split(60, 1)
    ytr_names = np.array(CLASSES)[ytr]
    snapshot = (xtr.copy(), xte.copy(), yte.copy())
    seen = []
    real_train = imb.train_feature_acgan

    def spy(x, y, k, **kw):
        seen.append((x.copy(), y.copy()))
        return real_train(x, y, k, **kw)

    monkeypatch.setattr(imb, "train_feature_acgan", spy)
    progress = []
    r = run_imbalance_ablation(
        xtr,
        ytr_names,
        xte,
        yte,
        CLASSES,
        "pituitary",
        0.25,
        [0, 1],
        train_groups=gtr,
        test_groups=gte,
        head_epochs=5,
        gan_epochs=3,
        on_progress=lambda d, t, m: progress.append((d, t)),
    )
    json.dumps(r)  # JSON-ready
    for a, b in zip(snapshot, (xtr, xte, yte)):
        np.testing.assert_array_equal(a, b)  # inputs untouched
    assert r["test_counts"] == {"glioma": 20, "meningioma": 20, "pituitary": 20}
    assert r["config"]["minority"] == "pituitary" and r["config"]["cut_by"] == "group"
    assert progress[-1] == (8, 8) and len(progress) == 8
    for info in r["seeds"]:
        assert info["train_counts_before"] == {"glioma": 40, "meningioma": 40, "pituitary": 40}
        # 20 patients hold pituitary rows (2 each); 25% -> 5 patients -> 10 rows
        assert info["train_counts_after"] == {"glioma": 40, "meningioma": 40, "pituitary": 10}
        assert info["kept_minority_groups"] == 5
        assert info["n_synthetic"] == 30
    assert set(r["treatments"]) == set(TREATMENTS)
    n_train = {t: [row["n_train"] for row in v["per_seed"]] for t, v in r["treatments"].items()}
    assert n_train == {"real": [90, 90], "class_weighted": [90, 90], "oversample": [120, 120], "acgan": [120, 120]}
    for _t, v in r["treatments"].items():
        assert len(v["per_seed"]) == 2
        for row in v["per_seed"]:
            assert np.sum(row["confusion"]) == 60  # evaluated on the whole test split
            assert set(row["sensitivity"]) == set(CLASSES)
            assert 0 <= row["balanced_accuracy"] <= 1 and 0 <= row["patient_balanced_accuracy"] <= 1
        s = v["summary"]
        assert s["balanced_accuracy"]["n"] == 2
        assert s["balanced_accuracy"]["mean"] == pytest.approx(
            np.mean([row["balanced_accuracy"] for row in v["per_seed"]])
        )
        assert set(s["sensitivity"]) == set(CLASSES)
    # the GAN saw only the cut training rows of each seed, never a test row
    assert len(seen) == 2
    for seed, (x, y) in zip([0, 1], seen):
        keep = cut_class(ytr, 2, 0.25, seed, groups=gtr)
        cut = xtr[keep]
        np.testing.assert_allclose(x, (cut - cut.mean(0)) / cut.std(0), atol=1e-12)
        np.testing.assert_array_equal(y, ytr[keep])
        assert np.bincount(y).tolist() == [40, 40, 10]


def test_ablation_row_cut_and_validation():
    xtr, ytr, _ = _split(60, 2)
    xte, yte, _ = _split(30, 3)
    r = run_imbalance_ablation(
        xtr, ytr, xte, yte, CLASSES, 0, 0.1, [7], head="mlp", head_epochs=2, treatments=("real", "oversample")
    )
    assert r["config"]["cut_by"] == "row" and "kept_minority_groups" not in r["seeds"][0]
    assert r["seeds"][0]["train_counts_after"] == {"glioma": 2, "meningioma": 20, "pituitary": 20}
    assert set(r["treatments"]) == {"real", "oversample"}
    assert r["treatments"]["real"]["summary"]["balanced_accuracy"]["std"] is None  # one seed
    with pytest.raises(ValueError):
        run_imbalance_ablation(xtr, ytr, xte, yte, CLASSES, 0, 0.1, [0], treatments=("smote",))
    with pytest.raises(ValueError):
        run_imbalance_ablation(xtr, ytr, xte, yte, CLASSES, "astrocytoma", 0.1, [0])
