import csv

import numpy as np
import pytest

from core.training.splits import (
    SplitLeakError,
    assert_disjoint,
    figshare_folds,
    grouped_kfold,
    grouped_train_val_split,
    locked_test_split,
    split_fingerprint,
)


def _data(n_groups=40, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 12, n_groups)
    g = np.repeat([f"P{i:03d}" for i in range(n_groups)], sizes)
    y_g = np.array(["glioma", "meningioma", "pituitary"])[np.arange(n_groups) % 3]
    y = np.repeat(y_g, sizes)
    return g, y


def test_assert_disjoint():
    g = np.array(["a", "a", "b", "c"])
    assert_disjoint(g, [0, 1], [2], [3])
    with pytest.raises(SplitLeakError, match="a"):
        assert_disjoint(g, [0, 2], [1, 3])
    with pytest.raises(ValueError):  # SplitLeakError is a ValueError and an AssertionError
        assert_disjoint(g, [0], [3], [1])
    with pytest.raises(AssertionError):
        assert_disjoint(g, [0], [1])


def test_grouped_kfold_partitions_by_group():
    g, y = _data()
    folds = grouped_kfold(g, y, 5, seed=1)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(g.size))  # every sample tested exactly once
    for tr, te in folds:
        assert set(g[tr]).isdisjoint(g[te])
        assert len(tr) + len(te) == g.size
        assert set(y[te]) == {"glioma", "meningioma", "pituitary"}  # stratified
    again = grouped_kfold(g, y, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = grouped_kfold(g, y, 5, seed=2)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    with pytest.raises(ValueError):
        grouped_kfold(g, y, 41)


def test_grouped_train_val_split():
    g, y = _data(60)
    tr, va = grouped_train_val_split(g, y, val_fraction=0.15, seed=0)
    assert set(g[tr]).isdisjoint(g[va])
    assert len(tr) + len(va) == g.size
    assert len(set(g[va])) == 9  # 15% of 20 groups per class = 3 each
    assert set(y[va]) == {"glioma", "meningioma", "pituitary"}


def test_locked_split_is_deterministic_and_order_invariant():
    g, y = _data(50)
    pool, test = locked_test_split(g, y)
    res = locked_test_split(g, y)
    assert np.array_equal(res.test_idx, test) and np.array_equal(res.pool_idx, pool)
    assert set(g[pool]).isdisjoint(g[test])
    assert len(pool) + len(test) == g.size
    assert len(res.test_groups) == 9  # round(0.2 * 17) + round(0.2 * 17) + round(0.2 * 16) = 3 + 3 + 3
    assert res.fingerprint == split_fingerprint(g, test) == split_fingerprint(res.test_groups)
    assert len(res.fingerprint) == 64
    perm = np.random.default_rng(5).permutation(g.size)
    shuffled = locked_test_split(g[perm], y[perm])
    assert shuffled.fingerprint == res.fingerprint
    assert sorted(set(g[perm][shuffled.test_idx])) == res.test_groups
    assert locked_test_split(g, y, seed=1).fingerprint != res.fingerprint


def test_split_fingerprint_by_hand():
    import hashlib

    assert split_fingerprint(["b", "a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()


def _figshare_rows():
    # pid_family groups letter variants (MR1B, MR1D) of one person; fold is per pid_family
    return [
        {"image": "1.jpg", "label": "glioma", "pid": "MR1B", "pid_family": "MR1", "fold": "1"},
        {"image": "2.jpg", "label": "glioma", "pid": "MR1D", "pid_family": "MR1", "fold": "1"},
        {"image": "3.jpg", "label": "meningioma", "pid": "7", "pid_family": "7", "fold": "2"},
        {"image": "4.jpg", "label": "pituitary", "pid": "8", "pid_family": "8", "fold": "2"},
        {"image": "5.jpg", "label": "pituitary", "pid": "9", "pid_family": "9", "fold": "3"},
    ]


def test_figshare_folds_from_rows_dataframe_and_path(tmp_path):
    import pandas as pd

    rows = _figshare_rows()
    folds = figshare_folds(rows)
    assert [te.tolist() for _, te in folds] == [[0, 1], [2, 3], [4]]
    assert [tr.tolist() for tr, _ in folds] == [[2, 3, 4], [0, 1, 4], [0, 1, 2, 3]]
    df_folds = figshare_folds(pd.DataFrame(rows))
    assert [te.tolist() for _, te in df_folds] == [[0, 1], [2, 3], [4]]
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert [te.tolist() for _, te in figshare_folds(path)] == [[0, 1], [2, 3], [4]]


def test_figshare_folds_reject_family_across_folds():
    rows = _figshare_rows()
    rows[1]["fold"] = "2"  # MR1D in fold 2 while MR1B is in fold 1: same person in two folds
    with pytest.raises(SplitLeakError, match="MR1"):
        figshare_folds(rows)


@pytest.mark.data
def test_real_figshare_folds_are_pid_family_disjoint(shared_data):
    import pandas as pd

    df = pd.read_csv(shared_data / "figshare-cemri" / "manifest.csv")
    folds = figshare_folds(df)
    assert len(folds) == 4
    fam = df["pid_family"].astype(str).to_numpy()
    assert_disjoint(fam, *[te for _, te in folds])
    for tr, te in folds:
        assert set(fam[tr]).isdisjoint(fam[te])
        assert set(df["label"].iloc[te]) == {"glioma", "meningioma", "pituitary"}
    # a slice-level random split of the same data leaks patients, and the check catches it
    perm = np.random.default_rng(0).permutation(len(df))
    cut = len(df) // 5
    with pytest.raises(SplitLeakError):
        assert_disjoint(fam, perm[:cut], perm[cut:])
    # grouped k-fold on pid_family never shares a family either
    for tr, te in grouped_kfold(fam, df["label"], 4, seed=0):
        assert set(fam[tr]).isdisjoint(fam[te])
