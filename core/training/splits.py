"""Patient-grouped data splits. Every split here is by group (patient / pid_family), never by image.

Indices are positional (0..n-1) into the arrays passed in. Slice-level random splits leak patients
across train and test and inflate accuracy; ``assert_disjoint`` is the check to run on any split.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SplitLeakError",
    "LockedSplit",
    "grouped_kfold",
    "grouped_train_val_split",
    "figshare_folds",
    "assert_disjoint",
    "locked_test_split",
    "split_fingerprint",
    "LOCKED_TEST_SEED",
]

LOCKED_TEST_SEED = 20261122


class SplitLeakError(AssertionError, ValueError):
    """A group (patient) appears in more than one index set."""


def _groups(groups) -> np.ndarray:
    return np.asarray([str(g) for g in np.asarray(groups).reshape(-1).tolist()])


def assert_disjoint(groups, *index_sets) -> None:
    """Raise SplitLeakError if any group appears in two of ``index_sets`` (arrays of indices)."""
    g = _groups(groups)
    owner: dict[str, int] = {}
    leaks: dict[str, set[int]] = {}
    for s, idx in enumerate(index_sets):
        for grp in set(g[np.asarray(idx, dtype=np.int64)].tolist()):
            if grp in owner and owner[grp] != s:
                leaks.setdefault(grp, {owner[grp]}).add(s)
            else:
                owner.setdefault(grp, s)
    if leaks:
        shown = ", ".join(f"{k} (sets {sorted(v)})" for k, v in sorted(leaks.items())[:10])
        raise SplitLeakError(f"{len(leaks)} group(s) appear in more than one split: {shown}")


def grouped_kfold(groups, y, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, grouped k-fold: ``StratifiedGroupKFold(k, shuffle=True, random_state=seed)``."""
    from sklearn.model_selection import StratifiedGroupKFold  # heavy: sklearn, loaded on first use

    g = _groups(groups)
    yy = np.asarray([str(v) for v in np.asarray(y).reshape(-1).tolist()])
    if g.size != yy.size:
        raise ValueError(f"{g.size} groups but {yy.size} labels")
    n_groups = np.unique(g).size
    if k < 2 or k > n_groups:
        raise ValueError(f"k must be in 2..{n_groups} (number of groups), got {k}")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [
        (np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in cv.split(np.zeros(g.size), yy, g)
    ]
    for tr, te in folds:
        assert_disjoint(g, tr, te)
    return folds


def _group_labels(g: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique groups and each group's label (its most frequent; ties -> smallest)."""
    yy = np.asarray([str(v) for v in np.asarray(y).reshape(-1).tolist()])
    if yy.size != g.size:
        raise ValueError(f"{g.size} groups but {yy.size} labels")
    per: dict[str, Counter] = {}
    for grp, lab in zip(g.tolist(), yy.tolist()):
        per.setdefault(grp, Counter())[lab] += 1
    uniq = np.array(sorted(per))
    labels = np.array([min(per[u].items(), key=lambda kv: (-kv[1], kv[0]))[0] for u in uniq])
    return uniq, labels


def _stratified_group_pick(groups, y, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick about ``fraction`` of the groups of each label; return (rest_idx, picked_idx).

    Depends only on the (group, label) content, not on row order: groups are sorted before the
    seeded shuffle.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    g = _groups(groups)
    uniq, labels = _group_labels(g, y)
    if uniq.size < 2:
        raise ValueError("need at least 2 groups to split")
    rng = np.random.default_rng(seed)
    picked: list[str] = []
    for lab in sorted(set(labels.tolist())):
        members = uniq[labels == lab]
        members = members[rng.permutation(members.size)]
        n_pick = int(round(fraction * members.size))
        if members.size >= 2:
            n_pick = min(max(n_pick, 1), members.size - 1)
        picked.extend(members[:n_pick].tolist())
    if not picked:  # every label has a single group: take one group anyway
        picked = [uniq[rng.integers(uniq.size)]]
    if len(picked) == uniq.size:
        picked = picked[:-1]
    mask = np.isin(g, np.array(picked))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def grouped_train_val_split(groups, y, val_fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): about ``val_fraction`` of the groups of each label go to validation."""
    tr, va = _stratified_group_pick(groups, y, val_fraction, seed)
    assert_disjoint(groups, tr, va)
    return tr, va


class LockedSplit(tuple):
    """``(pool_idx, test_idx)`` that also carries ``fingerprint`` and ``test_groups``."""

    fingerprint: str
    test_groups: list[str]

    def __new__(cls, pool_idx, test_idx, fingerprint: str, test_groups: list[str]):
        obj = super().__new__(cls, (pool_idx, test_idx))
        obj.fingerprint = fingerprint
        obj.test_groups = test_groups
        return obj

    @property
    def pool_idx(self) -> np.ndarray:
        return self[0]

    @property
    def test_idx(self) -> np.ndarray:
        return self[1]


def split_fingerprint(groups, test_idx=None) -> str:
    """sha256 hex of the sorted unique test group ids joined by newlines.

    ``split_fingerprint(test_group_ids)`` or ``split_fingerprint(groups, test_idx)``.
    """
    g = _groups(groups)
    if test_idx is not None:
        g = g[np.asarray(test_idx, dtype=np.int64)]
    text = "\n".join(sorted(set(g.tolist())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def locked_test_split(groups, y, fraction: float = 0.2, seed: int = LOCKED_TEST_SEED) -> LockedSplit:
    """Deterministic group-stratified hold-out: ``pool_idx, test_idx = locked_test_split(...)``.

    Same (group, label) content -> same test groups, whatever the row order. The result also has
    ``.fingerprint`` (= split_fingerprint of the test groups; record it in model cards) and
    ``.test_groups``.
    """
    pool, test = _stratified_group_pick(groups, y, fraction, seed)
    assert_disjoint(groups, pool, test)
    g = _groups(groups)
    test_groups = sorted(set(g[test].tolist()))
    return LockedSplit(pool, test, split_fingerprint(test_groups), test_groups)


def _manifest_rows(manifest) -> tuple[list, list, list]:
    """(fold, pid_family, label) columns of a manifest DataFrame, list of dicts, or CSV path."""
    if isinstance(manifest, (str, Path)):
        with open(manifest, newline="") as f:
            manifest = list(csv.DictReader(f))
    if hasattr(manifest, "columns"):  # pandas DataFrame
        cols = set(manifest.columns)
        fam_col = "pid_family" if "pid_family" in cols else "pid"
        label = manifest["label"].tolist() if "label" in cols else [""] * len(manifest)
        return manifest["fold"].tolist(), manifest[fam_col].tolist(), label
    rows: Sequence = list(manifest)
    fam_col = "pid_family" if rows and "pid_family" in rows[0] else "pid"
    return ([r["fold"] for r in rows], [r[fam_col] for r in rows], [r.get("label", "") for r in rows])


def figshare_folds(manifest_df_or_rows) -> list[tuple[np.ndarray, np.ndarray]]:
    """CV folds from the Figshare manifest's ``fold`` column (already grouped by pid_family).

    Accepts a DataFrame, a list of row dicts (csv.DictReader) or the manifest path. Returns
    [(train_idx, test_idx)] for folds in ascending order (1..4), positional indices. Raises
    SplitLeakError if a pid_family crosses folds.
    """
    fold, fam, _ = _manifest_rows(manifest_df_or_rows)
    fold_arr = np.asarray([int(float(f)) for f in fold])
    fam_arr = _groups(fam)
    ids = sorted(set(fold_arr.tolist()))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 folds in the 'fold' column, found {ids}")
    tests = [np.flatnonzero(fold_arr == f) for f in ids]
    assert_disjoint(fam_arr, *tests)
    return [(np.flatnonzero(fold_arr != f), te) for f, te in zip(ids, tests)]
