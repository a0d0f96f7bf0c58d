"""Active learning: which items a reviewer should label next.

Query strategies are small pure functions over probability arrays; every one returns an
*informativeness score* per item, higher = ask a human sooner:

    entropy(p)           -sum_c p_c log p_c                       (nats)
    margin(p)            1 - (p_(1) - p_(2))   (top-1 minus top-2: a small margin = uncertain)
    least_confidence(p)  1 - max_c p_c
    bald(mc)             H(mean_t p_t) - mean_t H(p_t), from MC-dropout samples (T, N, C)
    random_scores(n, s)  uniform, seeded
    coreset(features, k) batch-aware: greedy k-center (Sener & Savarese 2018), picks items far
                         from what is labelled and from each other, so near-duplicate slices of
                         one scan do not fill a batch

`order_queue(scores, patient_ids, k, per_patient_cap)` turns scores into a queue with at most
`per_patient_cap` items per patient. `next_items(repo, ...)` is what the review page and
`python -m core queue next` call; `refresh_scores(repo, ...)` recomputes stored scores when the
champion model version changes (each score row keeps the model version that produced it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

STRATEGIES = ("entropy", "margin", "least_confidence", "bald", "random", "coreset")
_EPS = 1e-12


def _probs(p: Any) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"probabilities must be (N, C) with C >= 2, got shape {arr.shape}")
    return arr


def _entropy_last(p: np.ndarray) -> np.ndarray:
    return -np.sum(p * np.log(np.clip(p, _EPS, 1.0)), axis=-1)


def entropy(p: Any) -> np.ndarray:
    return _entropy_last(_probs(p))


def margin(p: Any) -> np.ndarray:
    arr = np.sort(_probs(p), axis=1)
    return 1.0 - (arr[:, -1] - arr[:, -2])


def least_confidence(p: Any) -> np.ndarray:
    return 1.0 - _probs(p).max(axis=1)


def bald(mc_samples: Any) -> np.ndarray:
    """Mutual information between prediction and weights from MC-dropout samples (T, N, C)."""
    mc = np.asarray(mc_samples, dtype=np.float64)
    if mc.ndim == 2:
        mc = mc[:, None, :]
    if mc.ndim != 3:
        raise ValueError(f"MC samples must be (T, N, C), got shape {mc.shape}")
    mi = _entropy_last(mc.mean(axis=0)) - _entropy_last(mc).mean(axis=0)
    return np.maximum(mi, 0.0)


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def score(strategy: str, probabilities: Any = None, mc_samples: Any = None, seed: int = 0) -> np.ndarray:
    """Scores of one strategy (`coreset` is a batch selection, see `coreset`)."""
    if strategy == "entropy":
        return entropy(probabilities)
    if strategy == "margin":
        return margin(probabilities)
    if strategy == "least_confidence":
        return least_confidence(probabilities)
    if strategy == "bald":
        if mc_samples is None:
            raise ValueError("BALD needs MC-dropout samples (T, N, C)")
        return bald(mc_samples)
    if strategy == "random":
        n = len(probabilities) if probabilities is not None else np.asarray(mc_samples).shape[1]
        return random_scores(n, seed)
    raise ValueError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")


def order_queue(
    scores: Sequence[float], patient_ids: Sequence[Any], k: int | None = None, per_patient_cap: int | None = None
) -> list[int]:
    """Indices of the items to show, most informative first, at most `per_patient_cap` per patient.

    Ties keep input order; NaN scores (not scored yet) go last. With a cap the queue can be
    shorter than k: one case never floods it."""
    s = np.asarray(scores, dtype=np.float64)
    if len(patient_ids) != len(s):
        raise ValueError("one patient id per score")
    key = np.where(np.isnan(s), -np.inf, s)
    order = sorted(range(len(s)), key=lambda i: (-key[i], i))
    taken: dict[Any, int] = {}
    out: list[int] = []
    for i in order:
        if k is not None and len(out) >= k:
            break
        pid = patient_ids[i]
        if per_patient_cap is not None and taken.get(pid, 0) >= per_patient_cap:
            continue
        taken[pid] = taken.get(pid, 0) + 1
        out.append(i)
    return out


def coreset(
    features: Any,
    k: int,
    labelled: Any = None,
    patient_ids: Sequence[Any] | None = None,
    per_patient_cap: int | None = None,
    scores: Sequence[float] | None = None,
) -> list[int]:
    """Greedy k-center: repeatedly pick the candidate farthest from every chosen/labelled point.

    features: (N, D) of the candidates; labelled: (M, D) already labelled (the initial centres).
    With no labelled points the first pick is the highest `scores` item (or index 0).
    Exact duplicates of a chosen point have distance 0 and are picked only when nothing else is left.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    n = len(x)
    if n == 0 or k <= 0:
        return []
    allowed = np.ones(n, dtype=bool)
    taken: dict[Any, int] = {}
    if labelled is not None and len(labelled):
        lab = np.asarray(labelled, dtype=np.float64).reshape(-1, x.shape[1])
        dist = np.sqrt(((x[:, None, :] - lab[None, :, :]) ** 2).sum(-1)).min(axis=1)
        first = None
    else:
        dist = np.full(n, np.inf)
        if scores is not None:
            sc = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
            first = int(np.argmax(sc))
        else:
            first = 0
    chosen: list[int] = []

    def take(i: int) -> None:
        nonlocal dist
        chosen.append(i)
        allowed[i] = False
        if patient_ids is not None:
            pid = patient_ids[i]
            taken[pid] = taken.get(pid, 0) + 1
            if per_patient_cap is not None and taken[pid] >= per_patient_cap:
                for j in range(n):
                    if patient_ids[j] == pid:
                        allowed[j] = False
        dist = np.minimum(dist, np.sqrt(((x - x[i]) ** 2).sum(-1)))

    if first is not None:
        take(first)
    while len(chosen) < k and allowed.any():
        cand = np.where(allowed, dist, -np.inf)
        take(int(np.argmax(cand)))  # argmax returns the first maximum: deterministic
    return chosen


# ------------------------------------------------------------------ queue over the store


def _mc_samples(uncertainty: Mapping | None) -> np.ndarray | None:
    if not uncertainty:
        return None
    for key in ("mc_probabilities", "mc_samples"):
        if uncertainty.get(key) is not None:
            return np.asarray(uncertainty[key], dtype=np.float64)  # (T, C)
    return None


def candidate_scores(candidates: Sequence[Any], strategy: str, seed: int = 0) -> np.ndarray:
    """Scores for `QueueCandidate`s (NaN where the item has no usable prediction)."""
    n = len(candidates)
    out = np.full(n, np.nan)
    if strategy == "random":
        return random_scores(n, seed)
    for i, c in enumerate(candidates):
        if strategy == "bald":
            mc = _mc_samples(c.uncertainty)
            if mc is not None:
                out[i] = bald(mc[:, None, :])[0]
            elif c.uncertainty and c.uncertainty.get("bald") is not None:
                out[i] = float(c.uncertainty["bald"])
            elif c.uncertainty and c.uncertainty.get("mutual_information") is not None:
                out[i] = float(c.uncertainty["mutual_information"])
        elif c.probabilities is not None:
            out[i] = score("entropy" if strategy == "coreset" else strategy, [c.probabilities])[0]
    return out


def next_items(
    repo: Any,
    task: str,
    strategy: str = "entropy",
    k: int = 10,
    reviewer: str | None = None,
    per_patient_cap: int | None = 2,
    seed: int = 0,
    model_version: str | None = None,
) -> list[dict]:
    """The next `k` items for `reviewer` in `task`'s queue, as plain dicts (no hidden fields):
    {"rank", "item_id", "case_id", "slice_index", "plane", "task", "version", "score",
     "strategy", "probabilities", "model_version"}.
    `version` is what to pass back as `expect_version` when labelling."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
    cands = repo.queue.candidates(task, reviewer=reviewer, model_version=model_version)
    if not cands:
        return []
    scores = candidate_scores(cands, strategy, seed)
    groups = [c.group for c in cands]
    if strategy == "coreset":
        feats = [c.embedding if c.embedding is not None else c.probabilities for c in cands]
        have = [i for i, f in enumerate(feats) if f is not None]
        dims = {len(feats[i]) for i in have}
        if have and len(dims) == 1:
            labelled_ids = [r["item_id"] for r in repo.queue.confirmed_labels(task)]
            lp = repo.cases.latest_predictions(task, item_ids=labelled_ids) if labelled_ids else {}
            lab = [p.embedding if p.embedding is not None else p.probabilities for p in lp.values()]
            lab = [f for f in lab if f is not None and len(f) in dims]
            picked = coreset(
                np.asarray([feats[i] for i in have]),
                k,
                labelled=lab or None,
                patient_ids=[groups[i] for i in have],
                per_patient_cap=per_patient_cap,
                scores=scores[have],
            )
            order = [have[j] for j in picked]
            if len(order) < k:  # unscored items after, still capped
                counts: dict[str, int] = {}
                for i in order:
                    counts[groups[i]] = counts.get(groups[i], 0) + 1
                for i in range(len(cands)):
                    if len(order) >= k:
                        break
                    if i in order or (per_patient_cap and counts.get(groups[i], 0) >= per_patient_cap):
                        continue
                    counts[groups[i]] = counts.get(groups[i], 0) + 1
                    order.append(i)
        else:
            order = order_queue(scores, groups, k, per_patient_cap)
    else:
        order = order_queue(scores, groups, k, per_patient_cap)
    out = []
    for rank, i in enumerate(order, start=1):
        c = cands[i]
        out.append(
            {
                "rank": rank,
                "item_id": c.item_id,
                "case_id": c.case_id,
                "slice_index": c.slice_index,
                "plane": c.plane,
                "task": task,
                "version": c.version,
                "score": None if np.isnan(scores[i]) else float(scores[i]),
                "strategy": strategy,
                "probabilities": c.probabilities,
                "model_version": c.model_version,
            }
        )
    return out


def refresh_scores(
    repo: Any,
    task: str,
    strategy: str = "entropy",
    model_version: str | None = None,
    predict: Callable[[list[int]], Sequence[Mapping]] | None = None,
    seed: int = 0,
) -> dict:
    """Bring the stored scores of `task`'s pending items up to `model_version` (default: the
    champion's; else each item's newest prediction).

    A stored score from the same model version is kept. Otherwise the item's prediction by that
    version is used; if there is none and `predict` is given, `predict(item_ids)` must return one
    mapping per id ({"probabilities", optional "uncertainty", "embedding"}), which is recorded as
    a prediction of `model_version` and scored. Items left without a prediction are "stale".
    Returns {"model_version", "kept", "rescored", "predicted", "stale"}."""
    if strategy not in STRATEGIES or strategy == "coreset":
        raise ValueError(f"refresh_scores needs a per-item strategy, not {strategy!r}")
    if model_version is None:
        champ = repo.models.champion(task)
        model_version = champ.version if champ else None
    cands = repo.queue.candidates(task, model_version=model_version)
    stored = repo.queue.scores(task, strategy)
    counts = {"model_version": model_version, "kept": 0, "rescored": 0, "predicted": 0, "stale": 0}
    todo = []
    for c in cands:
        old = stored.get(c.item_id)
        if old is not None and model_version is not None and old[1] == model_version:
            counts["kept"] += 1
        else:
            todo.append(c)
    missing = [c.item_id for c in todo if c.probabilities is None and (strategy != "bald" or not c.uncertainty)]
    if missing and predict is not None and model_version is not None:
        results = list(predict(missing))
        if len(results) != len(missing):
            raise ValueError("predict() must return one result per item id")
        for item_id, r in zip(missing, results):
            repo.cases.record_prediction(
                item_id, task, model_version, r["probabilities"], r.get("uncertainty"), r.get("embedding")
            )
        counts["predicted"] = len(missing)
        fresh = {c.item_id: c for c in repo.queue.candidates(task, model_version=model_version)}
        todo = [fresh.get(c.item_id, c) for c in todo]
    values = candidate_scores(todo, strategy, seed)
    new: dict[int, float] = {}
    by_version: dict[str, dict[int, float]] = {}
    for c, v in zip(todo, values):
        if np.isnan(v):
            counts["stale"] += 1
            continue
        version = model_version or c.model_version or "unknown"
        by_version.setdefault(version, {})[c.item_id] = float(v)
        new[c.item_id] = float(v)
    for version, vals in by_version.items():
        repo.queue.save_scores(task, strategy, version, vals)
    counts["rescored"] = len(new)
    return counts


__all__ = [
    "STRATEGIES",
    "entropy",
    "margin",
    "least_confidence",
    "bald",
    "random_scores",
    "score",
    "order_queue",
    "coreset",
    "candidate_scores",
    "next_items",
    "refresh_scores",
]
