"""Which base model transfers best to a task, scored BEFORE fine-tuning and checked against the
accuracy actually reached after fine-tuning.

For every candidate (a backbone reference, see ``core.research.features``: the zoo's MRI-trained
models of the other tasks, a random-init control, ImageNet where its file is present, and
features taken at different block depths) the features of the target data are extracted once with
the frozen backbone and scored with LogME, H-score (features) and LEEP, NCE (the source model's
own head; only for penultimate features of a trained checkpoint).

Validation ("actual" transfer): head-only fine-tuning on the same frozen features - an L2
logistic regression, patient-grouped k-fold cross-validation (``splits.grouped_kfold``), features
standardised on each training fold - giving out-of-fold balanced accuracy and AUC. Head-only is a
linear probe: it is what the Train page's "head only" strategy does and what LogME models, so the
agreement measured here is for that regime, not for full fine-tuning. Agreement between each score
and the fine-tuned balanced accuracy: Kendall tau-b and Spearman rho (``rank_agreement``).

Leakage rule: a checkpoint trained on the target task's labels of these same patients (the
target's own shipped model) is excluded from the default candidates; one trained on these images
for another task (the presence model has seen TCGA-LGG slices) is kept and flagged ``saw_target_images``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.research.al_simulation import _one_blas_thread
from core.research.features import DEFAULT_SIZE, dataset_features, extract_features, load_backbone, parse_ref
from core.research.studies import default_data
from core.research.transferability import h_score, leep, logme, nce, rank_agreement, rank_candidates
from core.training.datasets import load_dataset
from core.training.metrics import aggregate_by_patient, classification_metrics, mean_ci_over_folds
from core.training.splits import assert_disjoint, grouped_kfold
from core.training.store_labels import StoreLabels
from core.zoo import list_checkpoints
from model_zoo import CheckpointError, ImageNetWeightsUnavailable

__all__ = [
    "default_candidates",
    "head_only_accuracy",
    "run_transferability",
    "advise_base_model",
    "SCORES",
    "advisor_candidates",
    "advise_on_images",
    "advise_for_training",
]

SCORES = ("logme", "h_score", "leep", "nce")
OTHER_TASKS = ("presence", "tumor_type", "grade")


def default_candidates(task: str) -> list[str]:
    """The zoo's models of the OTHER tasks (penultimate, block 3, block 4; per-sequence for the
    3-channel grade data), random-init vgg19_slim (penultimate, block 3) and ImageNet VGG19."""
    out = []
    for other in OTHER_TASKS:
        if other == task or not list_checkpoints(other):
            continue
        ref = f"{other}@active"
        out += [ref, f"{ref}#block3", f"{ref}#block4"]
        if task == "grade":
            out.append(f"{ref}+perseq")
    out += ["random:vgg19_slim", "random:vgg19_slim#block3", "imagenet:vgg19"]
    return out


def head_only_accuracy(
    features, labels, groups, classes: Sequence[str], folds: int = 4, seed: int = 0, C: float = 0.1
) -> dict:
    """Patient-grouped k-fold linear probe: {"balanced_accuracy", "auc", "patient_auc", per_fold...}."""
    from sklearn.linear_model import LogisticRegression  # heavy: sklearn, loaded on first use

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray([str(v) for v in np.asarray(groups).tolist()])
    k = len(classes)
    rows = []
    for tr, te in grouped_kfold(g, y, folds, seed=seed):
        assert_disjoint(g, tr, te)
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd = np.where(sd > 1e-8, sd, 1.0)
        clf = LogisticRegression(C=C, max_iter=1000).fit((x[tr] - mu) / sd, y[tr])
        p = np.full((len(te), k), 1e-6)
        p[:, clf.classes_] = clf.predict_proba((x[te] - mu) / sd)
        p /= p.sum(1, keepdims=True)
        m = classification_metrics(y[te], p, list(range(k)))
        _, pp, py = aggregate_by_patient(g[te], p, y[te])
        mp = classification_metrics(py.astype(np.int64), pp, list(range(k)))
        rows.append(
            {
                "balanced_accuracy": m["balanced_accuracy"],
                "auc": m["auc"],
                "patient_auc": mp["auc"],
                "patient_balanced_accuracy": mp["balanced_accuracy"],
                "n_test": int(len(te)),
            }
        )
    out = {
        key: mean_ci_over_folds([r[key] for r in rows])
        for key in ("balanced_accuracy", "auc", "patient_auc", "patient_balanced_accuracy")
    }
    return {
        "folds": folds,
        "seed": seed,
        "C": C,
        "per_fold": rows,
        **{key: v["mean"] for key, v in out.items()},
        "ci95": {key: v["ci95"] for key, v in out.items()},
    }


def _overlap(info: dict, data_name: str, task: str) -> dict:
    names = {str(d.get("name", "")) for d in info.get("trained_on") or []}
    data_names = set(data_name.split("+"))
    saw = bool(names & data_names)
    same_labels = saw and info.get("task") == task
    return {"saw_target_images": saw, "trained_on_target_labels": same_labels}


def score_features(features, labels, probs=None) -> dict:
    out = {"logme": logme(features, labels), "h_score": h_score(features, labels), "leep": None, "nce": None}
    if probs is not None:
        out["leep"] = leep(probs, labels)
        out["nce"] = nce(np.asarray(probs).argmax(1), labels)
    return out


def _subsample(n: int, groups: np.ndarray, max_slices: int | None, seed: int) -> np.ndarray:
    """Whole patients, seeded, up to about max_slices slices (all rows when None)."""
    if not max_slices or n <= max_slices:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    pats = np.array(sorted(set(groups.tolist())))
    keep, total = [], 0
    for p in pats[rng.permutation(len(pats))]:
        if total >= max_slices:
            break
        keep.append(p)
        total += int(np.sum(groups == p))
    return np.flatnonzero(np.isin(groups, keep))


def run_transferability(
    task: str,
    data: str,
    candidates: Sequence[str] | None = None,
    *,
    folds: int = 4,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    max_slices: int | None = None,
    validate: bool = True,
    include_same_task: bool = False,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Score every candidate, validate with head-only fine-tuning, measure rank agreement.
    Returns the JSON-ready study (``candidates`` list, ``ranking`` per score, ``agreement``)."""
    cands = list(candidates) if candidates else default_candidates(task)
    rows: list[dict] = []
    classes = None
    data_info = None
    with _one_blas_thread():
        for i, name in enumerate(cands):
            ref = parse_ref(name)
            row: dict = {
                "candidate": ref.name,
                "source": ref.source,
                "kind": ref.kind,
                "block": ref.block,
                "per_sequence": ref.per_sequence,
            }
            t0 = time.time()
            try:
                d = dataset_features(ref, data, task, size=size, seed=seed)
            except Exception as exc:  # noqa: BLE001 - an unavailable candidate is a result, not a crash
                if not isinstance(
                    exc, (ImageNetWeightsUnavailable, CheckpointError, FileNotFoundError, KeyError, ValueError)
                ):
                    raise
                row.update(status="unavailable", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
                rows.append(row)
                if on_progress:
                    on_progress(i + 1, len(cands), f"{ref.name}: unavailable")
                continue
            classes = d["classes"]
            data_info = d["data"]
            idx = _subsample(len(d["labels"]), d["groups"].astype(str), max_slices, seed)
            f, y, g = d["features"][idx], d["labels"][idx], d["groups"][idx]
            probs = None if d["probs"] is None or ref.block else d["probs"][idx]
            flags = _overlap(d["backbone"], d["data"]["name"], task)
            row.update(
                status="ok",
                feature_dim=int(f.shape[1]),
                n_slices=int(len(y)),
                backbone={
                    k: v for k, v in d["backbone"].items() if k in ("ref", "task", "sha256", "trained_on", "note")
                },
                **flags,
            )
            if flags["trained_on_target_labels"] and not include_same_task:
                row.update(status="excluded", reason="trained on this task's labels of these patients")
                rows.append(row)
                continue
            row["scores"] = score_features(f, y, probs)
            if validate:
                row["fine_tuned"] = head_only_accuracy(f, y, g, classes, folds=folds, seed=seed)
            row["seconds"] = round(time.time() - t0, 1)
            rows.append(row)
            if on_progress:
                on_progress(i + 1, len(cands), f"{ref.name}: LogME {row['scores']['logme']:.4f}")

    ok = [r for r in rows if r["status"] == "ok"]
    ranking = {s: rank_candidates({r["candidate"]: r["scores"][s] for r in ok}) for s in SCORES}
    agreement = {}
    if validate:
        for target in ("balanced_accuracy", "auc"):
            actual = {r["candidate"]: r["fine_tuned"][target] for r in ok}
            agreement[target] = {
                s: rank_agreement({r["candidate"]: r["scores"][s] for r in ok}, actual) for s in SCORES
            }
        ranking["fine_tuned_balanced_accuracy"] = rank_candidates(
            {r["candidate"]: r["fine_tuned"]["balanced_accuracy"] for r in ok}
        )
    return {
        "study": "transferability",
        "task": task,
        "classes": classes,
        "data": data_info,
        "protocol": {
            "scores": "LogME, H-score on frozen features (raw); LEEP, NCE from the source head "
            "(penultimate features of trained checkpoints only)",
            "fine_tuning": f"head only: L2 logistic regression (C=0.1) on the frozen features, "
            f"patient-grouped {folds}-fold CV (seed {seed}), out-of-fold metrics",
            "agreement": "Kendall tau-b and Spearman rho between each score and the fine-tuned "
            "metric over the available candidates",
            "input_size": size,
            "max_slices": max_slices,
            "depths": "#blockN = global-average-pooled output of block N; no suffix = penultimate",
            "per_sequence": "+perseq = each MRI sequence through the backbone as a grey image, features concatenated",
        },
        "candidates": rows,
        "ranking": ranking,
        "agreement": agreement,
        "advice": advice(rows),
    }


def advice(rows: Sequence[dict], by: str = "logme") -> list[dict]:
    """Candidates ranked by a score, with the base model and blocks to unfreeze they suggest.

    Heuristic for the Train page: if a source's best depth (by the score) is block b < 5, the layers
    above b transfer worse than b's own features, so re-train blocks b+1..5 ("block-wise", 5 - b
    blocks); if its penultimate features score best, start with the head only."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("scores", {}).get(by) is not None]
    best_depth: dict[str, dict] = {}
    for r in ok:
        src = r["source"]
        if src not in best_depth or r["scores"][by] > best_depth[src]["scores"][by]:
            best_depth[src] = r
    ranked = rank_candidates({r["candidate"]: r["scores"][by] for r in ok})
    random_best = max((r["scores"][by] for r in ok if r["kind"] == "random"), default=None)
    by_name = {r["candidate"]: r for r in ok}
    out = []
    for item in ranked:
        r = by_name[item["name"]]
        top = best_depth[r["source"]]
        b = top["block"]
        unfreeze = 0 if b is None else max(0, 5 - int(b))
        init = None if r["kind"] == "random" else r["source"]
        out.append(
            {
                "rank": item["rank"],
                "candidate": r["candidate"],
                "score": item["score"],
                "by": by,
                "init": init or "random",
                "suggested_strategy": "head" if unfreeze == 0 else "blockwise",
                "suggested_unfreeze_blocks": unfreeze,
                "fine_tuned_balanced_accuracy": (r.get("fine_tuned") or {}).get("balanced_accuracy"),
                "saw_target_images": r.get("saw_target_images", False),
                # False: random-init features score as high - expect little from this transfer
                "beats_random_init": None
                if random_best is None or r["kind"] == "random"
                else bool(item["score"] > random_best),
            }
        )
    return out


def advise_base_model(
    task: str,
    data: str,
    candidates: Sequence[str] | None = None,
    *,
    max_slices: int | None = 1500,
    by: str = "logme",
    seed: int = 0,
) -> list[dict]:
    """Advisor for the Train page: candidates ranked by ``by`` (LogME) on ``data``, scored before any
    fine-tuning (no validation run: seconds once the features are cached). Each entry: rank,
    candidate, score, init (a zoo ref or "random"), suggested_strategy, suggested_unfreeze_blocks."""
    res = run_transferability(task, data, candidates, max_slices=max_slices, validate=False, seed=seed)
    return advice(res["candidates"], by=by)


# ------------------------------------------------------------------ the Train page's advisor
ADVISOR_MAX_IMAGES = 300
ADVISOR_MIN_LABELS = 20
ADVISOR_DEPTHS = (None, 3, 4)  # penultimate, block 3, block 4: which depth transfers best


def advisor_candidates(task: str, depths: Sequence[int | None] = ADVISOR_DEPTHS) -> list[str]:
    """The zoo versions of ``task`` (the bases a retraining job can start from) and random init,
    each at the advisor's depths."""
    sources = [f"{task}@{c.version}" for c in list_checkpoints(task)] + ["random:vgg19_slim"]
    return [src + (f"#block{b}" if b else "") for src in sources for b in depths]


def advise_on_images(
    images: np.ndarray,
    labels,
    candidates: Sequence[str],
    *,
    groups=None,
    max_images: int = ADVISOR_MAX_IMAGES,
    seed: int = 0,
    by: str = "logme",
) -> list[dict]:
    """Rank ``candidates`` by LogME of their frozen features of ``images`` (uint8 (N, H, W) or
    (N, C, H, W)) against ``labels``; at most ``max_images`` (whole patients when ``groups``).
    Returns :func:`advice` rows plus one "unavailable" row per candidate that could not load."""
    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray([str(v) for v in (np.arange(len(y)) if groups is None else np.asarray(groups)).tolist()])
    idx = _subsample(len(y), g, max_images, seed)
    imgs, y = np.asarray(images)[idx], y[idx]
    in_ch = imgs.shape[1] if imgs.ndim == 4 else 1
    rows, missing = [], []
    with _one_blas_thread():
        for name in candidates:
            ref = parse_ref(name)
            row: dict = {"candidate": ref.name, "source": ref.source, "kind": ref.kind, "block": ref.block}
            try:
                bb = load_backbone(ref, size=DEFAULT_SIZE, in_channels=3 if in_ch == 3 else 1, seed=seed)
                f, _ = extract_features(bb, imgs)
            except Exception as exc:  # noqa: BLE001 - an unusable candidate is a result, not a crash
                missing.append(
                    {
                        "candidate": ref.name,
                        "status": "unavailable",
                        "reason": f"{type(exc).__name__}: {str(exc)[:200]}",
                    }
                )
                continue
            row.update(status="ok", scores={"logme": logme(f, y)}, n_slices=int(len(y)))
            rows.append(row)
    return advice(rows, by=by) + missing


def advise_for_training(
    task: str,
    repo=None,
    *,
    data: str | None = None,
    max_images: int = ADVISOR_MAX_IMAGES,
    min_labels: int = ADVISOR_MIN_LABELS,
    candidates: Sequence[str] | None = None,
    seed: int = 0,
) -> dict:
    """The Train page's advisor: rank the bases a retraining job can start from (the zoo versions of
    ``task``, and random init as the no-transfer control) by LogME, before any fine-tuning.

    Scored on the review queue's confirmed labels (``StoreLabels``); when there are fewer than
    ``min_labels`` of them (or one class only), on the task's shared data (``data``, default
    ``studies.default_data(task)``) when it is on this machine. At most ``max_images`` slices.
    Returns {"task", "source", "n_images", "rows" (advice rows), "best" (the top row or None),
    "best_version" (the zoo version of the top row or None for random init)}; raises ValueError
    when neither source has two classes."""
    cands = list(candidates) if candidates is not None else advisor_candidates(task)
    ds, source = None, None
    try:
        store = StoreLabels(repo=repo).load(task, DEFAULT_SIZE)
        if len(store) >= min_labels and len(set(store.labels.tolist())) >= 2:
            ds, source = store, f"review queue: {len(store)} confirmed labels"
    except ValueError:
        store = None
    if ds is None:
        if data is None:
            data = default_data(task)
        if not Path(str(data).split(",")[0].rsplit(":", 1)[0]).exists():
            n = 0 if store is None else len(store)
            raise ValueError(
                f"too few confirmed labels for {task} ({n}; the advisor needs {min_labels} of two "
                f"classes or more) and no shared data at {data}"
            )
        ds = load_dataset(str(data), task, DEFAULT_SIZE, seed=seed)
        source = f"shared data {ds.name} ({data})" + (f"; only {len(store)} confirmed labels" if store else "")
    if len(set(ds.labels.tolist())) < 2:
        raise ValueError(f"{source}: one class only, nothing to rank on")
    rows = advise_on_images(ds.images, ds.labels, cands, groups=ds.groups, max_images=max_images, seed=seed)
    ok = [r for r in rows if r.get("rank") is not None]
    best = ok[0] if ok else None
    best_version = None
    if best is not None and best["init"] != "random" and "@" in best["init"]:
        best_version = best["init"].split("@", 1)[1]
    n_used = len(_subsample(len(ds), np.asarray([str(v) for v in ds.groups.tolist()]), max_images, seed))
    return {
        "task": task,
        "source": source,
        "n_images": int(n_used),
        "rows": rows,
        "best": best,
        "best_version": best_version,
        "note": "LogME of frozen features (penultimate, block 3, block 4) before any fine-tuning; a source's "
        "best depth b < 5 suggests re-training blocks b+1..5, its penultimate features the head only",
    }
