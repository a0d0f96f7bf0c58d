"""Offline active-learning simulation on frozen-backbone features (Hao et al. 2020 style:
transfer learning + active learning), cheap enough for a CPU and honest about what it measures.

Protocol (one call of :func:`simulate`):

1. **Fixed test set.** A patient-disjoint test split (``core.training.splits.locked_test_split``,
   stratified by label, 20% of patients by default) is set aside once; every strategy, seed and
   budget is scored on it. The rest is the **pool**; budgets are fractions of the pool's slices.
2. **Hidden labels.** Pool labels live only in an :class:`Oracle`. The learner sees features and
   patient ids; the oracle reveals a slice's label only when that slice is queried (and the
   revealed slices are the labelled set). Query functions take no labels at all.
3. **Seed set.** For each seed, the first budget (10% by default) is a random sample of pool
   slices, the same for every strategy of that seed (so strategies are compared paired).
4. **Rounds.** Between two budgets the learner queries in rounds of ``round_fraction`` of the
   pool: fit the head on the labelled slices, score the unlabelled pool, take the top slices with
   at most ``per_patient_cap`` slices of one patient per round (``active_learning.order_queue``, as
   the review queue does; when the cap leaves the round short it is filled by score without it).
   Query level: **slice**, with the per-patient cap.
5. **Head.** L2 logistic regression (``C``, fixed in advance, not tuned on the test set) on
   features standardised with the pool's mean/std (unlabelled statistics). BALD uses a bootstrap
   ensemble of ``ensemble`` such heads (ensemble disagreement in place of MC dropout: a linear
   head has no dropout to sample).
6. **Scores.** At each budget: slice AUC and patient AUC (mean slice probability per patient,
   ``metrics.aggregate_by_patient``), plus balanced accuracy; multi-class AUC is the macro
   one-vs-rest AUC. Mean, std and Student-t 95% band over seeds.
7. **Baseline.** The head trained on the full pool, with a 95% patient-bootstrap CI on the test
   set. **Label saving** = 1 - the smallest budget whose mean AUC reaches the baseline's point AUC
   (``budget_to_baseline``; the headline), and, more lenient, its lower CI bound
   (``budget_to_baseline_lower_ci``). "Beats random" = the paired (same seed) AUC difference to
   random at equal budget, with its t-interval over seeds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core import active_learning as al
from core.training.metrics import aggregate_by_patient, classification_metrics, mean_ci_over_folds, metrics_with_ci
from core.training.splits import assert_disjoint, locked_test_split

__all__ = ["ALConfig", "Oracle", "split_pool_test", "simulate", "query", "kcenter", "DEFAULT_BUDGETS", "AL_STRATEGIES"]

DEFAULT_BUDGETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
AL_STRATEGIES = ("entropy", "margin", "least_confidence", "bald", "coreset", "random")
UNCERTAINTY = ("entropy", "margin", "least_confidence", "bald")


@dataclass
class ALConfig:
    strategies: Sequence[str] = AL_STRATEGIES
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    budgets: Sequence[float] = DEFAULT_BUDGETS
    round_fraction: float = 0.025
    per_patient_cap: int | None = 2
    C: float = 0.1
    ensemble: int = 8
    max_iter: int = 500
    test_fraction: float = 0.2

    def check(self) -> None:
        bad = [s for s in self.strategies if s not in AL_STRATEGIES]
        if bad:
            raise ValueError(f"unknown strategies {bad}; choose from {AL_STRATEGIES}")
        b = [float(x) for x in self.budgets]
        if not b or any(not 0 < x <= 1 for x in b) or b != sorted(set(b)):
            raise ValueError(f"budgets must be increasing fractions in (0, 1], got {b}")
        if not 0 < self.round_fraction <= 1:
            raise ValueError("round_fraction must be in (0, 1]")
        if not self.seeds:
            raise ValueError("at least one seed")


class Oracle:
    """Holds the pool labels; reveals one only when asked for it (and remembers who asked)."""

    def __init__(self, labels):
        self.__labels = np.asarray(labels).copy()
        self.revealed = np.zeros(self.__labels.size, dtype=bool)
        self.requests: list[np.ndarray] = []

    def __len__(self) -> int:
        return int(self.__labels.size)

    def reveal(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.__labels.size):
            raise IndexError("query outside the pool")
        self.requests.append(idx.copy())
        self.revealed[idx] = True
        return self.__labels[idx].copy()

    def full_labels_for_baseline(self) -> np.ndarray:
        """All labels: only for the full-pool baseline (budget 100%), never inside a round."""
        return self.__labels.copy()


def split_pool_test(labels, groups, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, dict]:
    sp = locked_test_split(groups, labels, fraction=test_fraction)
    assert_disjoint(groups, sp.pool_idx, sp.test_idx)
    return (
        sp.pool_idx,
        sp.test_idx,
        {
            "fraction": test_fraction,
            "fingerprint": sp.fingerprint,
            "n_patients": len(sp.test_groups),
            "n_slices": int(len(sp.test_idx)),
            "method": "splits.locked_test_split (patient-grouped, label-stratified)",
        },
    )


# ------------------------------------------------------------------------------ learner
class _Head:
    """Logistic regression on standardised features; constant prior when one class is labelled."""

    def __init__(self, k: int, C: float, max_iter: int):
        self.k, self.C, self.max_iter = k, C, max_iter
        self.clf = None
        self.prior = np.full(k, 1.0 / k)

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Head:
        from sklearn.linear_model import LogisticRegression  # heavy: sklearn, loaded on first use

        counts = np.bincount(y, minlength=self.k).astype(np.float64)
        self.prior = (counts + 1) / (counts.sum() + self.k)
        present = np.flatnonzero(counts)
        self.classes_ = present
        if present.size < 2:
            self.clf = None
            return self
        if self.clf is None or not np.array_equal(self.clf.classes_, present):
            # warm start: a refit after a round starts from the last solution (same optimum, fewer steps)
            self.clf = LogisticRegression(C=self.C, max_iter=self.max_iter, warm_start=True)
        self.clf.fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.tile(self.prior, (len(x), 1))
        if self.clf is not None:
            out = np.full((len(x), self.k), 1e-6)
            out[:, self.clf.classes_] = self.clf.predict_proba(x)
            out /= out.sum(axis=1, keepdims=True)
        return out


def kcenter(
    x: np.ndarray, k: int, labelled: np.ndarray | None = None, groups=None, cap: int | None = None
) -> list[int]:
    """Greedy k-center (the same picks as ``active_learning.coreset``, in O(N (M + k)) memory):
    distances by matrix products instead of an (N, M, D) broadcast."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0 or k <= 0:
        return []
    sq = (x**2).sum(1)
    if labelled is not None and len(labelled):
        lab = np.asarray(labelled, dtype=np.float64)
        d2 = np.full(n, np.inf)
        for s in range(0, len(lab), 512):
            blk = lab[s : s + 512]
            d2 = np.minimum(d2, (sq[:, None] + (blk**2).sum(1)[None] - 2 * x @ blk.T).min(axis=1))
        dist = np.sqrt(np.maximum(d2, 0.0))
        first = None
    else:
        dist = np.full(n, np.inf)
        first = 0
    allowed = np.ones(n, dtype=bool)
    g = None if groups is None else np.asarray([str(v) for v in np.asarray(groups).tolist()])
    taken: dict[str, int] = {}
    chosen: list[int] = []

    def take(i: int) -> None:
        nonlocal dist
        chosen.append(i)
        allowed[i] = False
        if g is not None:
            taken[g[i]] = taken.get(g[i], 0) + 1
            if cap is not None and taken[g[i]] >= cap:
                allowed[g == g[i]] = False
        dist = np.minimum(dist, np.sqrt(np.maximum(sq + sq[i] - 2 * x @ x[i], 0.0)))

    if first is not None:
        take(first)
    while len(chosen) < k and allowed.any():
        take(int(np.argmax(np.where(allowed, dist, -np.inf))))
    return chosen


def _fill(order: list[int], scores: np.ndarray, k: int) -> list[int]:
    """Top up a capped pick to k items by score, ignoring the cap (ties: lower index first)."""
    if len(order) >= k:
        return order[:k]
    have = set(order)
    rest = [i for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)) if i not in have]
    return order + rest[: k - len(order)]


def query(
    strategy: str,
    k: int,
    x_unl: np.ndarray,
    groups_unl,
    head: _Head,
    *,
    x_lab: np.ndarray,
    ensemble: Sequence[_Head] = (),
    cap: int | None = 2,
    rng: np.random.Generator,
) -> list[int]:
    """Positions (into the unlabelled arrays) of the next k slices to label. No labels go in."""
    k = min(int(k), len(x_unl))
    if k <= 0:
        return []
    if strategy == "coreset":
        picked = kcenter(x_unl, k, labelled=x_lab, groups=groups_unl, cap=cap)
        dist_rank = np.zeros(len(x_unl))
        dist_rank[picked] = np.arange(len(picked), 0, -1)
        return _fill(picked, dist_rank, k)
    if strategy == "random":
        scores = rng.random(len(x_unl))
    elif strategy == "bald":
        mc = np.stack([h.predict_proba(x_unl) for h in ensemble])
        scores = al.bald(mc)
    else:
        scores = al.score(strategy, head.predict_proba(x_unl))
    order = al.order_queue(scores, list(groups_unl), k, per_patient_cap=cap)
    return _fill(order, np.asarray(scores, dtype=np.float64), k)


def _evaluate(p: np.ndarray, y: np.ndarray, groups, classes) -> dict:
    m = classification_metrics(y, p, list(range(len(classes))))
    _, pp, py = aggregate_by_patient(groups, p, y)
    mp = classification_metrics(py.astype(np.int64), pp, list(range(len(classes))))
    return {
        "slice_auc": m["auc"],
        "patient_auc": mp["auc"],
        "slice_balanced_accuracy": m["balanced_accuracy"],
        "patient_balanced_accuracy": mp["balanced_accuracy"],
    }


METRICS = ("slice_auc", "patient_auc", "slice_balanced_accuracy", "patient_balanced_accuracy")


def _budget_counts(n_pool: int, budgets: Sequence[float]) -> list[int]:
    return [max(1, min(n_pool, int(round(b * n_pool)))) for b in budgets]


def run_one(
    strategy: str,
    seed: int,
    x_pool: np.ndarray,
    g_pool: np.ndarray,
    oracle: Oracle,
    x_test: np.ndarray,
    y_test: np.ndarray,
    g_test: np.ndarray,
    classes: Sequence[str],
    cfg: ALConfig,
    initial: np.ndarray,
    log: list | None = None,
) -> list[dict]:
    """One strategy, one seed: a learning curve (one row per budget). ``initial`` = pool positions
    of the seed set. ``log`` (optional) receives (round, queried pool positions)."""
    k = len(classes)
    n_pool = len(x_pool)
    counts = _budget_counts(n_pool, cfg.budgets)
    round_n = max(1, int(round(cfg.round_fraction * n_pool)))
    rng = np.random.default_rng([int(seed), AL_STRATEGIES.index(strategy), 17])
    labelled = np.zeros(n_pool, dtype=bool)
    y_known = np.full(n_pool, -1, dtype=np.int64)
    init = np.asarray(initial, dtype=np.int64)[: counts[0]]
    y_known[init] = oracle.reveal(init)
    labelled[init] = True
    if log is not None:
        log.append((0, init.copy()))
    rows, rnd = [], 0
    head = _Head(k, cfg.C, cfg.max_iter)
    for b, target in zip(cfg.budgets, counts):
        while labelled.sum() < target:
            lab = np.flatnonzero(labelled)
            unl = np.flatnonzero(~labelled)
            head.fit(x_pool[lab], y_known[lab])
            ens = []
            if strategy == "bald":
                for _ in range(cfg.ensemble):
                    boot = rng.integers(0, lab.size, lab.size)
                    ens.append(_Head(k, cfg.C, cfg.max_iter).fit(x_pool[lab[boot]], y_known[lab[boot]]))
            take = min(round_n, int(target - labelled.sum()))
            pos = query(
                strategy,
                take,
                x_pool[unl],
                g_pool[unl],
                head,
                x_lab=x_pool[lab],
                ensemble=ens,
                cap=cfg.per_patient_cap,
                rng=rng,
            )
            picked = unl[np.asarray(pos, dtype=np.int64)]
            y_known[picked] = oracle.reveal(picked)
            labelled[picked] = True
            rnd += 1
            if log is not None:
                log.append((rnd, picked.copy()))
        lab = np.flatnonzero(labelled)
        head.fit(x_pool[lab], y_known[lab])
        ev = _evaluate(head.predict_proba(x_test), y_test, g_test, classes)
        rows.append(
            {
                "budget": float(b),
                "n_labelled": int(lab.size),
                "n_labelled_patients": int(len(set(g_pool[lab].tolist()))),
                **ev,
            }
        )
    return rows


def _band(per_seed: list[list[float | None]]) -> dict:
    """per_seed[s][b] -> {"mean", "std", "lo", "hi"} lists over budgets (t-interval over seeds)."""
    out = {"mean": [], "std": [], "lo": [], "hi": []}
    for b in range(len(per_seed[0])):
        s = mean_ci_over_folds([row[b] for row in per_seed])
        out["mean"].append(s["mean"])
        out["std"].append(s["std"])
        out["lo"].append(s["ci95"][0])
        out["hi"].append(s["ci95"][1])
    return out


def _first_reaching(budgets: Sequence[float], means: Sequence[float | None], target: float | None) -> float | None:
    if target is None:
        return None
    for b, m in zip(budgets, means):
        if m is not None and m >= target - 1e-12:
            return float(b)
    return None


def _baseline(x_pool, y_pool, x_test, y_test, g_test, classes, cfg: ALConfig, n_boot: int) -> dict:
    k = len(classes)
    head = _Head(k, cfg.C, cfg.max_iter).fit(x_pool, y_pool)
    p = head.predict_proba(x_test)
    names = list(range(k))
    sl = metrics_with_ci(y_test, p, names, groups=g_test, keys=("auc", "balanced_accuracy"), n_boot=n_boot)
    pa = metrics_with_ci(
        y_test, p, names, groups=g_test, keys=("auc", "balanced_accuracy"), n_boot=n_boot, patient_level=True
    )
    return {
        "slice_auc": sl["auc"],
        "slice_auc_ci95": sl["ci95"]["auc"],
        "patient_auc": pa["auc"],
        "patient_auc_ci95": pa["ci95"]["auc"],
        "slice_balanced_accuracy": sl["balanced_accuracy"],
        "patient_balanced_accuracy": pa["balanced_accuracy"],
        "n_train": int(len(y_pool)),
        "ci_method": f"percentile bootstrap over test patients ({n_boot} resamples)",
    }


def simulate(
    features,
    labels,
    groups,
    classes: Sequence[str],
    *,
    cfg: ALConfig | None = None,
    test_idx=None,
    n_boot: int = 1000,
    on_progress: Callable[[int, int, str], None] | None = None,
    keep_log: bool = False,
) -> dict:
    """Run every strategy x seed; returns the JSON-ready result (see the module docstring).

    ``test_idx``: positions of the fixed test set (default: ``split_pool_test``). With
    ``keep_log`` the result carries ``"_log"``: {(strategy, seed): [(round, global indices)]} and
    ``"_pool_idx"``/``"_test_idx"`` (not JSON; for tests).
    """
    cfg = cfg or ALConfig()
    cfg.check()
    with _one_blas_thread():
        return _simulate(features, labels, groups, classes, cfg, test_idx, n_boot, on_progress, keep_log)


def _one_blas_thread():
    """BLAS/OpenMP at one thread: these small fits are 2x slower with 2 threads on a shared CPU."""
    try:
        from threadpoolctl import threadpool_limits  # optional: without it, BLAS keeps its threads

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()


def _simulate(features, labels, groups, classes, cfg: ALConfig, test_idx, n_boot, on_progress, keep_log) -> dict:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray([str(v) for v in np.asarray(groups).tolist()])
    if not (len(x) == len(y) == len(g)):
        raise ValueError("features, labels and groups differ in length")
    pool_idx, test_idx, test_info = _pool_and_test(y, g, cfg, test_idx)
    xs = _standardised(x, pool_idx)
    x_pool, g_pool, x_test, y_test, g_test = xs[pool_idx], g[pool_idx], xs[test_idx], y[test_idx], g[test_idx]
    n_pool = len(pool_idx)

    baseline = _baseline(x_pool, y[pool_idx], x_test, y_test, g_test, classes, cfg, n_boot)
    per, logs = _run_all(x_pool, g_pool, y[pool_idx], x_test, y_test, g_test, classes, cfg, on_progress, keep_log)
    budgets = [float(b) for b in cfg.budgets]
    strategies = {strat: _curves(runs, budgets, baseline) for strat, runs in per.items()}
    if "random" in strategies:
        for strat, entry in strategies.items():
            if strat != "random":
                entry["vs_random"] = {
                    level: _vs_random(entry[level]["per_seed"], strategies["random"][level]["per_seed"], budgets)
                    for level in ("slice_auc", "patient_auc")
                }

    result = {
        "study": "al_simulation",
        "classes": [str(c) for c in classes],
        "protocol": _protocol(cfg, n_pool),
        "pool": {
            "n_slices": int(n_pool),
            "n_patients": int(len(set(g_pool.tolist()))),
            "class_counts": _class_counts(classes, y[pool_idx]),
        },
        "test": {**test_info, "class_counts": _class_counts(classes, y_test)},
        "baseline": baseline,
        "strategies": strategies,
    }
    result["summary"] = summarise(result)
    if keep_log:
        result["_log"] = {key: [(r, pool_idx[p]) for r, p in log] for key, log in logs.items()}
        result["_pool_idx"], result["_test_idx"] = pool_idx, test_idx
    return result


def _pool_and_test(y: np.ndarray, g: np.ndarray, cfg: ALConfig, test_idx) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pool and test positions, and a description of the test split: `test_idx` when given (checked
    patient-disjoint from the rest), else ``split_pool_test``."""
    if test_idx is None:
        return split_pool_test(y, g, cfg.test_fraction)

    test_idx = np.asarray(test_idx, dtype=np.int64)
    pool_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    assert_disjoint(g, pool_idx, test_idx)
    return (
        pool_idx,
        test_idx,
        {"n_patients": int(len(set(g[test_idx].tolist()))), "n_slices": int(len(test_idx)), "method": "given"},
    )


def _standardised(x: np.ndarray, pool_idx: np.ndarray) -> np.ndarray:
    """Features standardised with the pool's mean/std (unlabelled statistics)."""
    mu = x[pool_idx].mean(axis=0)
    sd = x[pool_idx].std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return (x - mu) / sd


def _run_all(
    x_pool, g_pool, y_pool, x_test, y_test, g_test, classes, cfg: ALConfig, on_progress, keep_log: bool
) -> tuple[dict[str, list[list[dict]]], dict]:
    """Every strategy x seed: the learning curves per strategy (one per seed, in seed order) and,
    with ``keep_log``, {(strategy, seed): [(round, pool positions)]}."""
    n_pool = len(x_pool)
    first = _budget_counts(n_pool, cfg.budgets)[0]
    per: dict[str, list[list[dict]]] = {s: [] for s in cfg.strategies}
    logs: dict = {}
    total, done = len(cfg.strategies) * len(cfg.seeds), 0
    for seed in cfg.seeds:
        initial = np.random.default_rng([int(seed), 9001]).permutation(n_pool)[:first]
        for strat in cfg.strategies:
            log = [] if keep_log else None
            per[strat].append(
                run_one(
                    strat, int(seed), x_pool, g_pool, Oracle(y_pool), x_test, y_test, g_test, classes, cfg, initial, log
                )
            )
            if keep_log:
                logs[(strat, int(seed))] = log
            done += 1
            if on_progress:
                on_progress(done, total, f"seed {seed}: {strat}")
    return per, logs


def _curves(runs: list[list[dict]], budgets: list[float], baseline: dict) -> dict:
    """One strategy's learning curves over seeds: bands per metric and the label saving per AUC level."""
    entry: dict = {
        "budgets": budgets,
        "n_labelled": [r["n_labelled"] for r in runs[0]],
        "n_labelled_patients_mean": [
            float(np.mean([run[b]["n_labelled_patients"] for run in runs])) for b in range(len(budgets))
        ],
    }
    for m in METRICS:
        ps = [[r[m] for r in run] for run in runs]
        entry[m] = {**_band(ps), "per_seed": ps}
    entry["label_saving"] = {}
    for level in ("slice_auc", "patient_auc"):
        reach = _first_reaching(budgets, entry[level]["mean"], baseline[level])
        reach_lo = _first_reaching(budgets, entry[level]["mean"], baseline[f"{level}_ci95"][0])
        entry["label_saving"][level] = {
            "budget_to_baseline": reach,
            "saving": None if reach is None else round(1 - reach, 4),
            "budget_to_baseline_lower_ci": reach_lo,
            "saving_lower_ci": None if reach_lo is None else round(1 - reach_lo, 4),
        }
    return entry


def _vs_random(a: list[list[float | None]], r: list[list[float | None]], budgets: list[float]) -> dict:
    """Paired (same seed) differences of per-seed AUCs `a` to random's `r`, per budget, with their
    t-interval over seeds."""
    diffs, rows = [], []
    for b in range(len(budgets)):
        d = [None if (a[s][b] is None or r[s][b] is None) else a[s][b] - r[s][b] for s in range(len(a))]
        ci = mean_ci_over_folds(d)
        rows.append(
            {
                "budget": budgets[b],
                "mean_diff": ci["mean"],
                "ci95": ci["ci95"],
                "wins": int(sum(1 for v in d if v is not None and v > 0)),
                "n": ci["n"],
            }
        )
        if budgets[b] < 1.0:
            diffs.append(ci["mean"])
    valid = [v for v in diffs if v is not None]
    return {
        "per_budget": rows,
        "mean_diff_below_full": float(np.mean(valid)) if valid else None,
        "budgets_significantly_better": [
            row["budget"] for row in rows if row["ci95"][0] is not None and row["ci95"][0] > 0 and row["budget"] < 1
        ],
        "budgets_significantly_worse": [
            row["budget"] for row in rows if row["ci95"][1] is not None and row["ci95"][1] < 0 and row["budget"] < 1
        ],
    }


def _protocol(cfg: ALConfig, n_pool: int) -> dict:
    return {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "query_level": "slice (at most per_patient_cap slices of one patient per round)",
        "round_size": max(1, int(round(cfg.round_fraction * n_pool))),
        "seed_set": "random slices, first budget, shared by all strategies of a seed",
        "head": f"logistic regression (L2, C={cfg.C}) on pool-standardised features",
        "bald": f"bootstrap ensemble of {cfg.ensemble} logistic heads (ensemble BALD)",
        "auc": "binary: AUC of the last class; 3 classes: macro one-vs-rest",
        "patient_aggregation": "mean slice probability per patient",
        "band": "Student-t 95% interval of the mean over seeds",
        "label_saving": "1 - smallest budget whose mean AUC >= the full-pool baseline's point AUC "
        "(headline); *_lower_ci: >= the baseline's lower 95% CI bound",
    }


def _class_counts(classes: Sequence[str], y: np.ndarray) -> dict[str, int]:
    return {str(c): int(v) for c, v in zip(classes, np.bincount(y, minlength=len(classes)))}


def summarise(result: dict, max_budget: float = 0.6) -> dict:
    """Headline answers to the issue's target, per AUC level."""
    out = {}
    strategies = result["strategies"]
    for level in ("slice_auc", "patient_auc"):
        rows = {}
        for name, e in strategies.items():
            ls = e["label_saving"][level]
            vr = (e.get("vs_random") or {}).get(level) or {}
            rows[name] = {
                "budget_to_baseline": ls["budget_to_baseline"],
                "budget_to_baseline_lower_ci": ls["budget_to_baseline_lower_ci"],
                "mean_diff_vs_random": vr.get("mean_diff_below_full"),
                "budgets_significantly_better_than_random": vr.get("budgets_significantly_better"),
                "budgets_significantly_worse_than_random": vr.get("budgets_significantly_worse"),
            }
        unc = [n for n in UNCERTAINTY if n in rows]
        reach = [
            n
            for n in unc
            if rows[n]["budget_to_baseline"] is not None and rows[n]["budget_to_baseline"] <= max_budget + 1e-9
        ]
        beat = [n for n in unc if (rows[n]["mean_diff_vs_random"] or 0) > 0]
        out[level] = {
            "per_strategy": rows,
            "baseline": result["baseline"][level],
            f"uncertainty_reaching_baseline_within_{int(max_budget * 100)}pct": reach,
            "uncertainty_with_positive_mean_diff_vs_random": beat,
        }
    return out
