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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core import auth
from core.cards import ModelCard
from core.config import get_settings
from core.devices import select_device
from core.promotion import card_evaluation, compare, record_evaluation
from core.store import Store
from core.store.jobs import launch, run_job
from core.training import splits
from core.training.calibration import apply_temperature
from core.training.datasets import TASK_CLASSES, load_dataset
from core.training.experiment import TrainConfig, _flat, model_spec, score, train_model
from core.training.loop import FitConfig, predict_logits
from core.training.store_labels import StoreLabels
from core.zoo import active_version, load_checkpoint, model_card, save_checkpoint, set_active
from model_zoo import headline_metrics

DEFAULT_HOLDOUT = 0.25
DEFAULT_N_BOOT = 200


def _device():
    try:
        return select_device(get_settings().device)
    except ValueError:
        return torch.device("cpu")


def evaluate(model, spec, temperature: float, ds, idx: np.ndarray, n_boot: int, device="cpu") -> dict:
    """score() of a model on ds[idx] (temperature-scaled, flip TTA), with the flat headline keys."""
    z = predict_logits(model, spec, ds.images[idx], device=device)
    m = score(apply_temperature(z, float(temperature or 1.0)), ds, idx, n_boot)
    return {**_flat(m), **m}


def _champion_split(card: ModelCard, task: str, size: int):
    """(dataset at `size`, test idx, fingerprint) of the champion's locked test split, or None."""
    ev = card_evaluation(card)
    locked = card.locked_test
    if ev is None or not card.recipe.data or not locked.fraction:
        return None
    try:
        ds = load_dataset(card.recipe.data, task, size, seed=card.recipe.seed)
    except (OSError, ValueError):
        return None
    split = splits.locked_test_split(
        ds.groups,
        ds.labels,
        fraction=float(locked.fraction),
        **({"seed": locked.seed} if locked.seed is not None else {}),
    )
    if split.fingerprint != ev.fingerprint:
        return None
    return ds, split.test_idx, split.fingerprint, list(split.test_groups)


def _same_patient(store_group: str, test_groups: set[str]) -> bool:
    key = str(store_group).split(":", 1)[1] if ":" in str(store_group) else str(store_group)
    return key in test_groups or any(g.endswith(":" + key) for g in test_groups)


def retrain(
    params: Mapping[str, Any],
    *,
    job_id: int | None = None,
    repo=None,
    on_progress: Callable[[float, dict], None] | None = None,
    log: Callable[[str], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    device=None,
) -> dict:
    """Train a challenger on the store's confirmed labels; returns the job's final metrics."""
    if repo is None:
        repo = Store.open()
    say = log or (lambda line: None)
    cancel = check_cancel or (lambda: None)
    plan = _plan(params)
    device = device or _device()
    if params.get("threads"):
        torch.set_num_threads(int(params["threads"]))
    t0 = time.time()
    say(
        f"task {plan.task}: base {plan.init}, {plan.arch} at {plan.size} px, strategy {plan.strategy}, "
        f"{plan.epochs} epochs, device {device}"
        + (", balanced with synthetic features" if params.get("balance_synthetic") else "")
    )

    ds = StoreLabels(repo=repo).load(plan.task, plan.size)
    say(f"{len(ds)} confirmed labels from {len(set(ds.groups.tolist()))} patients/cases")
    cancel()
    held = _held_out(ds, plan, params, say)

    cfg = _train_config(params, plan, n_groups=len(set(ds.groups[held.pool].tolist())))
    progress = _Progress(_n_epochs(cfg, plan.spec), cancel, say, on_progress)
    if on_progress:
        on_progress(
            0.05, {"history": [], "phase": "training", "n_train": int(len(held.pool)), "n_test": int(len(held.idx))}
        )
    model, info = train_model(cfg, ds, held.pool, seed=plan.seed, on_progress=progress, device=device, label="retrain")
    cancel()

    # ---- evaluate on the held-out split
    if on_progress:
        on_progress(0.92, {"history": progress.history, "phase": "evaluating"})
    test = evaluate(model, plan.spec, info["temperature"], held.ds, held.idx, plan.n_boot, device)
    test.update(fingerprint=held.fingerprint, split=held.name)
    if not held.champions_own and plan.champion:
        _score_champion(plan, held, list(ds.classes), repo=repo, job_id=job_id, device=device, say=say)
    cancel()

    # ---- write the challenger (never made active here)
    version = params.get("version") or (f"{plan.base}.rq{job_id}" if plan.base else f"rq{job_id or int(t0)}")
    card = _challenger_card(plan, cfg, ds, held, info, test, job_id=job_id, t0=t0)
    comparison = _save_and_register(model, card, plan, version, held, test, repo=repo, job_id=job_id, say=say)
    return {
        "phase": "done",
        "history": progress.history,
        "version": version,
        "challenger": f"{plan.task}@{version}",
        "champion": plan.champion,
        "fingerprint": held.fingerprint,
        "split": held.name,
        "test": {k: test.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")},
        "beats": bool(comparison.beats) if comparison else None,
        "comparison_reason": comparison.reason if comparison else None,
    }


@dataclass
class _Plan:
    """What a retraining job trains, resolved from its params and the zoo."""

    task: str
    strategy: str
    epochs: int
    seed: int
    n_boot: int
    champion: str | None  # the active version of the task
    base: str | None  # the version fine-tuned (default the champion)
    base_card: ModelCard
    arch: str
    spec: Any  # model_zoo's ModelSpec at the input size trained

    @property
    def size(self) -> int:
        return self.spec.input_size

    @property
    def init(self) -> str:
        return f"{self.task}@{self.base}" if self.base else "random"


def _plan(params: Mapping[str, Any]) -> _Plan:
    task = params["task"]
    strategy = params.get("strategy", "head")
    epochs = int(params.get("epochs", 3))
    seed = int(params.get("seed", 0))
    n_boot = int(params.get("n_boot", DEFAULT_N_BOOT))
    champion = active_version(task)
    base = params.get("base") or champion
    base_card = model_card(f"{task}@{base}") if base else ModelCard()
    arch = params.get("arch") or base_card.architecture or "vgg19_slim"
    size = int(params.get("img_size") or base_card.input.size or 0) or None
    return _Plan(
        task=task,
        strategy=strategy,
        epochs=epochs,
        seed=seed,
        n_boot=n_boot,
        champion=champion,
        base=base,
        base_card=base_card,
        arch=arch,
        spec=model_spec(arch, size),
    )


@dataclass
class _HeldOut:
    """The split the challenger is judged on, and the review labels it trains on."""

    ds: Any  # the SliceSet `idx` points into
    idx: np.ndarray
    fingerprint: str
    name: str
    pool: np.ndarray  # training positions in the review labels
    champions_own: bool  # the champion's locked test (else a hold-out of the review labels)


def _held_out(ds, plan: _Plan, params: Mapping[str, Any], say: Callable[[str], None]) -> _HeldOut:
    """The champion's own locked test when it can be rebuilt here (review items of its patients
    left out of training), else a locked hold-out of the review labels."""
    task, champion = plan.task, plan.champion
    champ_card = model_card(f"{task}@{champion}") if champion else ModelCard()
    own = _champion_split(champ_card, task, plan.size) if champion else None
    if own is not None:
        test_ds, test_idx, fingerprint, test_groups = own
        tg = set(test_groups)
        pool = np.array([i for i in range(len(ds)) if not _same_patient(ds.groups[i], tg)], dtype=np.int64)
        split_name = f"locked test of {task}@{champion}"
        say(
            f"held out: {split_name} ({len(test_idx)} slices); {len(ds) - len(pool)} review items of those "
            "patients left out of training"
        )
    else:
        frac = float(params.get("holdout", DEFAULT_HOLDOUT))
        if len(set(ds.groups.tolist())) < 4:
            raise ValueError(
                f"too few labelled patients/cases ({len(set(ds.groups.tolist()))}) to hold some out "
                "for a fair comparison: label more items first"
            )
        locked = splits.locked_test_split(ds.groups, ds.labels, fraction=frac)
        pool, test_idx, fingerprint = locked.pool_idx, locked.test_idx, locked.fingerprint
        test_ds = ds
        split_name = f"hold-out of review labels ({len(test_idx)} items)"
        say(f"held out: {split_name}, fingerprint {fingerprint[:12]}")
    if len(pool) < 2 or len(set(ds.labels[pool].tolist())) < 2:
        raise ValueError("the training labels hold fewer than two classes: label more items of each class")
    return _HeldOut(
        ds=test_ds, idx=test_idx, fingerprint=fingerprint, name=split_name, pool=pool, champions_own=own is not None
    )


def _train_config(params: Mapping[str, Any], plan: _Plan, n_groups: int):
    """experiment.TrainConfig of the fine-tuning: one final model, no CV, no test split of its own
    (a validation split only with enough patients)."""
    fit = FitConfig(
        epochs=plan.epochs,
        batch_size=int(params.get("batch_size", 32)),
        lr=float(params.get("lr", 1e-3 if plan.strategy != "head" else 3e-3)),
        seed=plan.seed,
        log_every=int(params.get("log_every", 10)),
        balance_synthetic=bool(params.get("balance_synthetic", False)),
    )
    return TrainConfig(
        task=plan.task,
        data="store:review-queue",
        arch=plan.arch,
        strategy=plan.strategy,
        init=plan.init,
        folds=0,
        img_size=plan.size,
        final=True,
        test_fraction=0.0,
        val_fraction=float(params.get("val_fraction", 0.15 if n_groups >= 10 else 0.0)),
        n_boot=plan.n_boot,
        fit=fit,
    )


def _n_epochs(cfg, spec) -> int:
    """Epochs of the whole fine-tuning (block-wise: `epochs` per stage)."""
    n_stages = (len(spec.blocks) + 1) if cfg.strategy == "blockwise" else 1
    if cfg.strategy == "blockwise" and cfg.max_blocks is not None:
        n_stages = cfg.max_blocks + 1
    return max(1, cfg.fit.epochs * n_stages)


class _Progress:
    """train_model's progress callback: honours cancel requests, keeps the per-epoch history, logs
    each epoch and reports the job's progress (0.05 .. 0.9 over `total` epochs)."""

    def __init__(
        self,
        total: int,
        cancel: Callable[[], None],
        say: Callable[[str], None],
        on_progress: Callable[[float, dict], None] | None,
    ):
        self.total, self.cancel, self.say, self.on_progress = total, cancel, say, on_progress
        self.history: list[dict] = []

    def __call__(self, row: dict) -> None:
        self.cancel()
        if "val" in row:  # an epoch ended
            keep = {k: v for k, v in row.items() if k != "val" and isinstance(v, (int, float, str))}
            self.history.append(keep)
            self.say(
                f"{row.get('stage', '')} epoch {row.get('epoch')}: loss {row.get('loss', float('nan')):.4f}"
                + "".join(
                    f", val {k} {v:.3f}" for k, v in (row.get("val") or {}).items() if isinstance(v, (int, float))
                )
            )
            if self.on_progress:
                self.on_progress(self._fraction(), {"history": self.history, "phase": "training"})
        elif self.on_progress:
            self.on_progress(
                self._fraction(),
                {"history": self.history, "phase": "training", "step": row.get("step"), "steps": row.get("steps")},
            )

    def _fraction(self) -> float:
        return min(0.9, 0.05 + 0.85 * len(self.history) / self.total)


def _actor(job_id: int | None) -> str:
    return f"job:{job_id}" if job_id else "system"


def _score_champion(
    plan: _Plan, held: _HeldOut, classes: list[str], *, repo, job_id: int | None, device, say: Callable[[str], None]
) -> None:
    """Score the champion on the review-label hold-out too and record it (same classes only)."""
    task, champion = plan.task, plan.champion
    champ = load_checkpoint(f"{task}@{champion}")
    cds = held.ds if champ.spec.input_size == plan.size else StoreLabels(repo=repo).load(task, champ.spec.input_size)
    if champ.classes == classes:
        cm = evaluate(champ.model, champ.spec, champ.temperature, cds, held.idx, plan.n_boot, device)
        record_evaluation(
            task,
            champion,
            held.fingerprint,
            {**cm, "fingerprint": held.fingerprint, "split": held.name},
            held.name,
            repo=repo,
            actor=_actor(job_id),
        )
        say(f"champion {task}@{champion} scored on the same hold-out")


def _challenger_card(
    plan: _Plan, cfg, ds, held: _HeldOut, info: dict, test: dict, *, job_id: int | None, t0: float
) -> ModelCard:
    spec = plan.spec
    return ModelCard.new(
        {
            "task": plan.task,
            "classes": list(ds.classes),
            "architecture": plan.arch,
            "input": {
                "size": plan.size,
                "channels": spec.in_channels,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "sequences": list(ds.sequences),
            },
            "temperature": info["temperature"],
            "training_data": ds.summary(),
            "recipe": {
                **cfg.to_dict(),
                "source": "retraining on confirmed review labels",
                "job_id": job_id,
                "split": {
                    "held_out": held.name,
                    "fingerprint": held.fingerprint,
                    "n_train": int(len(held.pool)),
                    "n_test": int(len(held.idx)),
                    # confirmed labels per class (training + held out): core.promotion.MINIMUMS
                    "labels_per_class": {c: int((ds.labels == k).sum()) for k, c in enumerate(ds.classes)},
                },
                "final_train": info,
                "torch": torch.__version__,
            },
            "command": f"python -m core train-job {job_id}" if job_id else "core.training.job.retrain",
            "metrics": {"cv": None, "test": test},
            "intended_use": plan.base_card.intended_use or "",
            "limitations": list(plan.base_card.limitations)
            + [f"Fine-tuned on {len(held.pool)} review-queue labels; judged on {held.name}."],
            "training_time_s": round(time.time() - t0, 1),
            "parent": plan.base,
        }
    )


def _save_and_register(
    model,
    card: ModelCard,
    plan: _Plan,
    version: str,
    held: _HeldOut,
    test: dict,
    *,
    repo,
    job_id: int | None,
    say: Callable[[str], None],
):
    """Save the challenger as a new version (the champion stays active), register it and its
    held-out evaluation, and compare it with the champion (None without one)."""
    task, champion = plan.task, plan.champion
    folder = save_checkpoint(model, card, task, version)
    if champion and active_version(task) != champion:  # the zoo's "newest" fallback: keep the champion
        set_active(task, champion)
    saved = model_card(f"{task}@{version}")
    repo.models.register(task, version, metrics={"headline": headline_metrics(saved)}, actor=_actor(job_id))
    record_evaluation(task, version, held.fingerprint, test, held.name, repo=repo, actor=_actor(job_id))
    comparison = compare(task, version, champion, repo=repo) if champion else None
    say(f"saved {task}@{version} in {folder}")
    if comparison is not None:
        say(
            (
                "beats the champion: "
                if comparison.beats
                else "does not beat the champion: "
                if comparison.comparable
                else "not compared with the champion: "
            )
            + comparison.reason
        )
    return comparison


def run_training_job(job_id: int, repo=None) -> int:
    """Worker entry: run job `job_id` (kind "train") and record its outcome; returns the exit status."""
    repo = repo or Store.open()
    params = dict(repo.jobs.get(job_id).params or {})

    def work(reporter):
        return retrain(
            params,
            job_id=job_id,
            repo=repo,
            on_progress=lambda fraction, metrics: reporter.progress(fraction, metrics=metrics),
            log=reporter.log,
            check_cancel=reporter.check_cancel,
        )

    return run_job(job_id, work, repo)


def create_training_job(repo, params: Mapping[str, Any], actor) -> int:
    """A queued "train" job with validated parameters (the page and the CLI call this). `actor`: the
    signed-in core.auth.Identity (PermissionDenied unless its role may train) or a trusted name."""
    actor = auth.authorize(actor, "train")
    p = dict(params)
    if p.get("task") not in TASK_CLASSES:
        raise ValueError(f"unknown task {p.get('task')!r}")
    if p.get("strategy", "head") not in ("head", "blockwise", "full"):
        raise ValueError(f"unknown strategy {p.get('strategy')!r}")
    if int(p.get("epochs", 1)) < 1:
        raise ValueError("epochs must be at least 1")
    p["actor"] = actor
    return repo.jobs.create("train", params=p, actor=actor)


def launch_training_job(job_id: int, repo=None):
    """Start the worker process of a created job (detached; survives the browser and Streamlit)."""
    return launch(job_id, ["-m", "core", "train-job", str(job_id)], repo=repo)


__all__ = ["retrain", "run_training_job", "create_training_job", "launch_training_job", "evaluate"]
