"""Retraining on confirmed review labels as a store job (`python -m core train-job ID`).

The Train page creates a job (kind "train", params below) and launches the worker with
`core.store.jobs.launch(job_id, ["-m", "core", "train-job", str(job_id)])`. The worker:

1. loads the confirmed labels of the task from the store (`store_labels.StoreLabels`);
2. picks the held-out split the challenger is judged on:
   a. the champion's own locked test split, when its card records one (fingerprint) and its data is
      on this machine: the split is rebuilt, its fingerprint checked, and review items of those
      test patients are left out of training;
   b. otherwise a locked hold-out of the review labels (by patient, `splits.locked_test_split`):
      the champion is scored on it too and that evaluation is recorded in the store;
3. fine-tunes the base version (head / blockwise / full, `experiment.train_model`), reporting
   progress, the per-epoch history and a log tail to the job row; honours cancel requests;
4. writes the challenger as a new immutable user version (card with its held-out metrics and the
   split fingerprint), registers it in the store. It never changes the active version: the
   challenger is promoted only through `core.promotion.promote`.

Job params: task (required), base (version; default the active one), strategy (head | blockwise |
full), epochs, img_size, batch_size, lr, holdout (fraction, default 0.25), n_boot (default 200),
seed, version (name; default "<base>.rq<job id>"), threads, balance_synthetic (bool: head stage, top
up minority classes of the training split with feature-ACGAN vectors; see core.training.strategies).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

DEFAULT_HOLDOUT = 0.25
DEFAULT_N_BOOT = 200


def _device():
    from core.config import get_settings
    from core.devices import select_device

    try:
        return select_device(get_settings().device)
    except ValueError:
        import torch

        return torch.device("cpu")


def evaluate(model, spec, temperature: float, ds, idx: np.ndarray, n_boot: int, device="cpu") -> dict:
    """score() of a model on ds[idx] (temperature-scaled, flip TTA), with the flat headline keys."""
    from core.training.calibration import apply_temperature
    from core.training.experiment import _flat, score
    from core.training.loop import predict_logits

    z = predict_logits(model, spec, ds.images[idx], device=device)
    m = score(apply_temperature(z, float(temperature or 1.0)), ds, idx, n_boot)
    return {**_flat(m), **m}


def _champion_split(card: Mapping, task: str, size: int):
    """(dataset at `size`, test idx, fingerprint) of the champion's locked test split, or None."""
    from core.promotion import card_evaluation
    from core.training import splits
    from core.training.datasets import load_dataset

    ev = card_evaluation(card)
    recipe = card.get("recipe") or {}
    locked = ((recipe.get("split") or {}).get("locked_test")) or {}
    if ev is None or not recipe.get("data") or not locked.get("fraction"):
        return None
    try:
        ds = load_dataset(recipe["data"], task, size, seed=int((recipe.get("fit") or {}).get("seed", 0)))
    except (OSError, ValueError):
        return None
    split = splits.locked_test_split(ds.groups, ds.labels, fraction=float(locked["fraction"]),
                                     **({"seed": int(locked["seed"])} if locked.get("seed") is not None else {}))
    if split.fingerprint != ev.fingerprint:
        return None
    return ds, split.test_idx, split.fingerprint, list(split.test_groups)


def _same_patient(store_group: str, test_groups: set[str]) -> bool:
    key = str(store_group).split(":", 1)[1] if ":" in str(store_group) else str(store_group)
    return key in test_groups or any(g.endswith(":" + key) for g in test_groups)


def retrain(params: Mapping[str, Any], *, job_id: int | None = None, repo=None,
            on_progress: Callable[[float, dict], None] | None = None,
            log: Callable[[str], None] | None = None, check_cancel: Callable[[], None] | None = None,
            device=None) -> dict:
    """Train a challenger on the store's confirmed labels; returns the job's final metrics."""
    import torch

    from core.promotion import compare, record_evaluation
    from core.training import splits
    from core.training.experiment import TrainConfig, model_spec, train_model
    from core.training.loop import FitConfig
    from core.training.store_labels import StoreLabels
    from model_zoo.checkpoints import active_version, headline_metrics, load_checkpoint, resolve_ref, \
        save_checkpoint, set_active

    if repo is None:
        from core.store import Repository

        repo = Repository.open()
    say = log or (lambda line: None)
    cancel = check_cancel or (lambda: None)
    task = params["task"]
    strategy = params.get("strategy", "head")
    epochs = int(params.get("epochs", 3))
    seed = int(params.get("seed", 0))
    n_boot = int(params.get("n_boot", DEFAULT_N_BOOT))
    device = device or _device()
    if params.get("threads"):
        torch.set_num_threads(int(params["threads"]))
    t0 = time.time()

    champion = active_version(task)
    base = params.get("base") or champion
    base_card = dict(resolve_ref(f"{task}@{base}").card) if base else {}
    arch = params.get("arch") or base_card.get("architecture") or "vgg19_slim"
    size = int(params.get("img_size") or (base_card.get("input") or {}).get("size") or 0) or None
    spec = model_spec(arch, size)
    size = spec.input_size
    init = f"{task}@{base}" if base else "random"
    say(f"task {task}: base {init}, {arch} at {size} px, strategy {strategy}, {epochs} epochs, device {device}"
        + (", balanced with synthetic features" if params.get("balance_synthetic") else ""))

    store = StoreLabels(repo=repo)
    ds = store.load(task, size)
    say(f"{len(ds)} confirmed labels from {len(set(ds.groups.tolist()))} patients/cases")
    cancel()

    # ---- the split the challenger is judged on
    champ_card = dict(resolve_ref(f"{task}@{champion}").card) if champion else {}
    own = _champion_split(champ_card, task, size) if champion else None
    if own is not None:
        test_ds, test_idx, fingerprint, test_groups = own
        tg = set(test_groups)
        pool = np.array([i for i in range(len(ds)) if not _same_patient(ds.groups[i], tg)], dtype=np.int64)
        split_name = f"locked test of {task}@{champion}"
        say(f"held out: {split_name} ({len(test_idx)} slices); {len(ds) - len(pool)} review items of those "
            "patients left out of training")
    else:
        frac = float(params.get("holdout", DEFAULT_HOLDOUT))
        if len(set(ds.groups.tolist())) < 4:
            raise ValueError(f"too few labelled patients/cases ({len(set(ds.groups.tolist()))}) to hold some out "
                             "for a fair comparison: label more items first")
        locked = splits.locked_test_split(ds.groups, ds.labels, fraction=frac)
        pool, test_idx, fingerprint = locked.pool_idx, locked.test_idx, locked.fingerprint
        test_ds = ds
        split_name = f"hold-out of review labels ({len(test_idx)} items)"
        say(f"held out: {split_name}, fingerprint {fingerprint[:12]}")
    if len(pool) < 2 or len(set(ds.labels[pool].tolist())) < 2:
        raise ValueError("the training labels hold fewer than two classes: label more items of each class")

    # ---- train
    n_groups = len(set(ds.groups[pool].tolist()))
    fit = FitConfig(epochs=epochs, batch_size=int(params.get("batch_size", 32)),
                    lr=float(params.get("lr", 1e-3 if strategy != "head" else 3e-3)), seed=seed,
                    log_every=int(params.get("log_every", 10)),
                    balance_synthetic=bool(params.get("balance_synthetic", False)))
    cfg = TrainConfig(task=task, data="store:review-queue", arch=arch, strategy=strategy, init=init, folds=0,
                      img_size=size, final=True, test_fraction=0.0,
                      val_fraction=float(params.get("val_fraction", 0.15 if n_groups >= 10 else 0.0)),
                      n_boot=n_boot, fit=fit)
    n_stages = (len(spec.blocks) + 1) if strategy == "blockwise" else 1
    if strategy == "blockwise" and cfg.max_blocks is not None:
        n_stages = cfg.max_blocks + 1
    total = max(1, epochs * n_stages)
    history: list[dict] = []

    def progress(row: dict) -> None:
        cancel()
        if "val" in row:                 # an epoch ended
            keep = {k: v for k, v in row.items() if k != "val" and isinstance(v, (int, float, str))}
            history.append(keep)
            say(f"{row.get('stage', '')} epoch {row.get('epoch')}: loss {row.get('loss', float('nan')):.4f}"
                + "".join(f", val {k} {v:.3f}" for k, v in (row.get("val") or {}).items()
                          if isinstance(v, (int, float))))
            if on_progress:
                on_progress(min(0.9, 0.05 + 0.85 * len(history) / total), {"history": history, "phase": "training"})
        elif on_progress:
            on_progress(min(0.9, 0.05 + 0.85 * len(history) / total),
                        {"history": history, "phase": "training", "step": row.get("step"), "steps": row.get("steps")})

    if on_progress:
        on_progress(0.05, {"history": [], "phase": "training", "n_train": int(len(pool)), "n_test": int(len(test_idx))})
    model, info = train_model(cfg, ds, pool, seed=seed, on_progress=progress, device=device, label="retrain")
    cancel()

    # ---- evaluate on the held-out split
    if on_progress:
        on_progress(0.92, {"history": history, "phase": "evaluating"})
    test = evaluate(model, spec, info["temperature"], test_ds, test_idx, n_boot, device)
    test.update(fingerprint=fingerprint, split=split_name)
    if own is None and champion:
        champ = load_checkpoint(f"{task}@{champion}")
        cds = test_ds if champ.spec.input_size == size else StoreLabels(repo=repo).load(task, champ.spec.input_size)
        if champ.classes == list(ds.classes):
            cm = evaluate(champ.model, champ.spec, champ.temperature, cds, test_idx, n_boot, device)
            record_evaluation(task, champion, fingerprint, {**cm, "fingerprint": fingerprint, "split": split_name},
                              split_name, repo=repo, actor=f"job:{job_id}" if job_id else "system")
            say(f"champion {task}@{champion} scored on the same hold-out")
    cancel()

    # ---- write the challenger (never made active here)
    version = params.get("version") or (f"{base}.rq{job_id}" if base else f"rq{job_id or int(t0)}")
    card = {
        "task": task, "classes": list(ds.classes), "architecture": arch,
        "input": {"size": size, "channels": spec.in_channels, "mean": list(spec.mean), "std": list(spec.std),
                  "sequences": list(ds.sequences)},
        "temperature": info["temperature"],
        "training_data": ds.summary(),
        "recipe": {**cfg.to_dict(), "source": "retraining on confirmed review labels", "job_id": job_id,
                   "split": {"held_out": split_name, "fingerprint": fingerprint, "n_train": int(len(pool)),
                             "n_test": int(len(test_idx)),
                             # confirmed labels per class (training + held out): core.promotion.MINIMUMS
                             "labels_per_class": {c: int((ds.labels == k).sum()) for k, c in enumerate(ds.classes)}},
                   "final_train": info, "torch": torch.__version__},
        "command": f"python -m core train-job {job_id}" if job_id else "core.training.job.retrain",
        "metrics": {"cv": None, "test": test},
        "intended_use": base_card.get("intended_use", ""),
        "limitations": list(base_card.get("limitations") or []) + [
            f"Fine-tuned on {len(pool)} review-queue labels; judged on {split_name}."],
        "training_time_s": round(time.time() - t0, 1),
        "parent": base,
    }
    folder = save_checkpoint(model, card, task, version)
    if champion and active_version(task) != champion:      # the zoo's "newest" fallback: keep the champion
        set_active(task, champion)
    saved = dict(resolve_ref(f"{task}@{version}").card)
    repo.register_model_version(task, version, metrics={"headline": headline_metrics(saved)},
                                actor=f"job:{job_id}" if job_id else "system")
    record_evaluation(task, version, fingerprint, test, split_name, repo=repo,
                      actor=f"job:{job_id}" if job_id else "system")
    comparison = compare(task, version, champion, repo=repo) if champion else None
    say(f"saved {task}@{version} in {folder}")
    if comparison is not None:
        say(("beats the champion: " if comparison.beats else "does not beat the champion: "
             if comparison.comparable else "not compared with the champion: ") + comparison.reason)
    return {"phase": "done", "history": history, "version": version, "challenger": f"{task}@{version}",
            "champion": champion, "fingerprint": fingerprint, "split": split_name,
            "test": {k: test.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")},
            "beats": bool(comparison.beats) if comparison else None,
            "comparison_reason": comparison.reason if comparison else None}


def run_training_job(job_id: int, repo=None) -> int:
    """Worker entry: run job `job_id` (kind "train") and record its outcome; returns the exit status."""
    from core.store import Repository
    from core.store.jobs import run_job

    repo = repo or Repository.open()
    params = dict(repo.get_job(job_id).params or {})

    def work(reporter):
        return retrain(params, job_id=job_id, repo=repo,
                       on_progress=lambda fraction, metrics: reporter.progress(fraction, metrics=metrics),
                       log=reporter.log, check_cancel=reporter.check_cancel)

    return run_job(job_id, work, repo)


def create_training_job(repo, params: Mapping[str, Any], actor) -> int:
    """A queued "train" job with validated parameters (the page and the CLI call this). `actor`: the
    signed-in core.auth.Identity (PermissionDenied unless its role may train) or a trusted name."""
    from core import auth
    from core.training.datasets import TASK_CLASSES

    actor = auth.authorize(actor, "train")
    p = dict(params)
    if p.get("task") not in TASK_CLASSES:
        raise ValueError(f"unknown task {p.get('task')!r}")
    if p.get("strategy", "head") not in ("head", "blockwise", "full"):
        raise ValueError(f"unknown strategy {p.get('strategy')!r}")
    if int(p.get("epochs", 1)) < 1:
        raise ValueError("epochs must be at least 1")
    p["actor"] = actor
    return repo.create_job("train", params=p, actor=actor)


def launch_training_job(job_id: int, repo=None):
    """Start the worker process of a created job (detached; survives the browser and Streamlit)."""
    from core.store.jobs import launch

    return launch(job_id, ["-m", "core", "train-job", str(job_id)], repo=repo)


__all__ = ["retrain", "run_training_job", "create_training_job", "launch_training_job", "evaluate"]
