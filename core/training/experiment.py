"""One training experiment: data -> patient-grouped splits -> cross-validation -> final model ->
metrics with patient-bootstrap CIs -> model card. `python -m core train` is a thin shell over `run`.

Splits (all by patient; never by slice):
- Figshare with its manifest folds (and no test fraction): the folds are the CV; no locked test.
- otherwise a locked test split (`splits.locked_test_split`, fingerprint in the card), then grouped
  k-fold CV on the rest.
Every model (fold or final) holds out a grouped VALIDATION split of its own training data: it fits
the temperature, picks the block-wise stage and (optionally) stops early. Test folds are only
predicted, once, at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import model_zoo as zoo
from core import zoo as versions
from core.cards import ModelCard
from core.training import splits
from core.training.calibration import apply_temperature, fit_temperature
from core.training.datasets import SliceSet, load_dataset
from core.training.distributed import DistInfo
from core.training.loop import FitConfig, predict_logits, use_bf16
from core.training.metrics import classification_metrics, mean_ci_over_folds, metrics_with_ci
from core.training.strategies import Data, run_strategy

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")


@dataclass
class TrainConfig:
    task: str
    data: str
    arch: str = "vgg19_slim"
    strategy: str = "full"
    init: str = "random"
    folds: int = 4
    img_size: int | None = None
    final: bool = False
    test_fraction: float | None = None  # None: 0 for Figshare manifest folds, else 0.2
    val_fraction: float = 0.1
    tta: bool = True
    max_blocks: int | None = None  # block-wise: how many blocks to unfreeze at most
    lr_decay: float = 0.5  # block-wise: lr factor per stage
    n_boot: int = 1000
    stratify: str = "label"  # locked test + CV folds: "label", or "source" (source and label)
    fit: FitConfig = field(default_factory=FitConfig)

    @property
    def seed(self) -> int:
        return self.fit.seed

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fit"] = self.fit.to_dict()
        return d


def model_spec(arch: str, size: int | None, in_channels: int | None = None):
    spec = zoo.get_spec(arch).with_channels(in_channels)
    return dataclasses.replace(spec, input_size=int(size)) if size else spec


# ------------------------------------------------------------------------------ splits
def strata(ds: SliceSet, how: str = "label") -> np.ndarray:
    """What the locked test and the CV folds stratify on: the label, or ("source") the source and
    the label, so that every source (e.g. the few subjects of normal/) has its share of patients on
    both sides. A combined set's groups are "<source>:<patient>"."""
    if how == "label":
        return ds.labels
    if how != "source":
        raise ValueError(f"stratify must be 'label' or 'source', not {how!r}")
    if len(ds.parts) < 2:
        return ds.labels
    return np.array([f"{str(g).split(':', 1)[0]}|{y}" for g, y in zip(ds.groups.tolist(), ds.labels.tolist())])


def make_splits(ds: SliceSet, cfg: TrainConfig) -> dict:
    """{"pool": idx, "test": idx | None, "folds": [(train, test)], "info": {...}} (positional)."""
    manifest_folds = ds.folds is not None and (cfg.test_fraction or 0) == 0 and cfg.folds == len(set(ds.folds.tolist()))
    info: dict = {"grouping": "patient (pid_family on Figshare)"}
    if manifest_folds:
        ids = sorted(set(ds.folds.tolist()))
        tests = [np.flatnonzero(ds.folds == f) for f in ids]
        splits.assert_disjoint(ds.groups, *tests)
        folds = [(np.flatnonzero(ds.folds != f), te) for f, te in zip(ids, tests)]
        info.update(cv="manifest folds", fold_ids=ids)
        return {"pool": np.arange(len(ds)), "test": None, "folds": folds, "info": info}
    frac = 0.2 if cfg.test_fraction is None else cfg.test_fraction
    y = strata(ds, cfg.stratify)
    if cfg.stratify != "label":
        info["stratified_by"] = "source and label (each patient's most frequent)"
    if frac > 0:
        locked = splits.locked_test_split(ds.groups, y, fraction=frac)
        pool, test = locked.pool_idx, locked.test_idx
        info["locked_test"] = {
            "fraction": frac,
            "seed": splits.LOCKED_TEST_SEED,
            "fingerprint": locked.fingerprint,
            "n_patients": len(locked.test_groups),
            "patients": locked.test_groups,
        }
    else:
        pool, test = np.arange(len(ds)), None
    folds = []
    if cfg.folds >= 2:
        for tr, te in splits.grouped_kfold(ds.groups[pool], y[pool], cfg.folds, seed=cfg.seed):
            folds.append((pool[tr], pool[te]))
        info.update(cv=f"grouped_kfold(k={cfg.folds}, seed={cfg.seed}) on the non-test patients")
    return {"pool": pool, "test": test, "folds": folds, "info": info}


# ------------------------------------------------------------------------------ train + score
def train_model(
    cfg: TrainConfig,
    ds: SliceSet,
    train_idx: np.ndarray,
    *,
    seed: int,
    on_progress: Callable | None = None,
    dist: DistInfo = DistInfo(),
    device="cpu",
    label: str = "final",
) -> tuple[torch.nn.Module, dict]:
    """One model on `train_idx` (minus its validation split); returns (model, info)."""
    t0 = time.time()
    tr_rel, va_rel = (
        splits.grouped_train_val_split(ds.groups[train_idx], ds.labels[train_idx], cfg.val_fraction, seed=seed)
        if cfg.val_fraction > 0
        else (np.arange(len(train_idx)), np.zeros(0, dtype=np.int64))
    )
    tr, va = train_idx[tr_rel], train_idx[va_rel]
    splits.assert_disjoint(ds.groups, tr, va)
    torch.manual_seed(seed)
    n_classes = len(ds.classes)
    model = zoo.create(cfg.arch, n_classes, weights=zoo.parse_weights(cfg.init), zoo=versions.zoo())
    spec = model_spec(cfg.arch, cfg.img_size)
    data = Data(ds.images[tr], ds.labels[tr], ds.images[va], ds.labels[va], n_classes)
    fit_cfg = dataclasses.replace(cfg.fit, seed=seed)

    def progress(row: dict) -> None:
        if on_progress:
            on_progress({"run": label, **row})

    kw: dict = {"on_progress": progress, "device": device, "dist": dist}
    if cfg.strategy == "blockwise":
        kw.update(max_blocks=cfg.max_blocks, lr_decay=cfg.lr_decay)
    elif cfg.strategy == "top":
        kw.update(max_blocks=cfg.max_blocks)
    report = run_strategy(cfg.strategy, model, spec, data, fit_cfg, **kw)
    temperature = 1.0
    if len(va):
        vz = predict_logits(model, spec, ds.images[va], tta_flip=cfg.tta, device=device, bf16=cfg.fit.bf16)
        temperature = fit_temperature(vz, ds.labels[va])
    info = {
        "run": label,
        "n_train": int(len(tr)),
        "n_val": int(len(va)),
        "n_train_patients": int(len(set(ds.groups[tr].tolist()))),
        "n_val_patients": int(len(set(ds.groups[va].tolist()))),
        "temperature": float(temperature),
        "strategy": report,
        "seconds": round(time.time() - t0, 1),
    }
    return model, info


def _single_label_patients(groups: np.ndarray, y: np.ndarray) -> bool:
    first: dict = {}
    for g, v in zip(groups.tolist(), y.tolist()):
        if first.setdefault(g, v) != v:
            return False
    return True


def score(probs: np.ndarray, ds: SliceSet, idx: np.ndarray, n_boot: int = 1000) -> dict:
    """Slice-level metrics with patient-bootstrap CIs; patient-level (mean slice probability) where
    every patient has one label; per-source figures when the data mixes sources (shortcut check)."""
    y, g = ds.labels[idx], ds.groups[idx]
    out = metrics_with_ci(y, probs, ds.classes, groups=g, n_boot=n_boot)
    if _single_label_patients(g, y):
        out["patient"] = metrics_with_ci(y, probs, ds.classes, groups=g, patient_level=True, n_boot=n_boot)
    sources = ds.source[idx]
    if len(set(sources.tolist())) > 1 or len(ds.parts) > 1:
        by = {}
        for s in sorted(set(sources.tolist())):
            m = sources == s
            d = classification_metrics(y[m], probs[m], ds.classes)
            entry = {
                "n": int(m.sum()),
                "n_patients": int(len(set(g[m].tolist()))),
                "accuracy": d["accuracy"],
                "per_class": d["per_class"],
            }
            if len(ds.classes) == 2:
                for c, name in enumerate(ds.classes):
                    sel = y[m] == c
                    entry[f"mean_p_{ds.classes[-1]}_given_{name}"] = (
                        float(probs[m][sel, -1].mean()) if sel.any() else None
                    )
            by[str(s)] = entry
        out["by_source"] = by
    return out


def _flat(metrics: dict) -> dict:
    """Scalar headline values of a score() dict: slice keys plus patient_<key>."""
    out = {k: metrics.get(k) for k in SUMMARY_KEYS}
    for k in SUMMARY_KEYS:
        if "patient" in metrics:
            out[f"patient_{k}"] = metrics["patient"].get(k)
    return out


def _state_bytes(model: torch.nn.Module) -> bytes:
    """fp16 state dict (fold models are kept for `evaluate --fold`, at half the size)."""
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in zoo.unwrap(model).state_dict().items()
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@dataclass
class Result:
    card: ModelCard
    model: torch.nn.Module
    fold_weights: dict[str, bytes]  # relative file name -> bytes (written beside model.pt)
    dataset: SliceSet


@dataclass
class _Folds:
    """What the CV folds gave on the main process: a row per fold, the fold weights, the
    out-of-fold probabilities and the first fold's model (shipped when there is no final model)."""

    per_fold: list[dict] = field(default_factory=list)
    weights: dict[str, bytes] = field(default_factory=dict)
    oof_idx: list[np.ndarray] = field(default_factory=list)
    oof_p: list[np.ndarray] = field(default_factory=list)
    first: tuple[torch.nn.Module, dict] | tuple[None, None] = (None, None)


def run(
    cfg: TrainConfig,
    *,
    on_progress: Callable | None = None,
    dist: DistInfo = DistInfo(),
    device="cpu",
    command: str = "",
    only_fold: int | None = None,
) -> Result:
    """Cross-validation, then the final model (cfg.final). `only_fold=K`: a pilot that trains and
    scores CV fold K alone, exactly as the full run would (same split, same seed), and no final model."""
    t_start = time.time()
    cfg, spec, ds, sp = _data_and_splits(cfg, only_fold=only_fold, on_progress=on_progress)
    size = spec.input_size
    folds = _cross_validate(cfg, ds, sp, spec, only_fold=only_fold, on_progress=on_progress, dist=dist, device=device)
    cv = _cv_metrics(folds, ds, sp, cfg)
    fold_weights = folds.weights
    test = None
    if only_fold is None and (cfg.final or not sp["folds"]):
        model, info, test = _final_model(cfg, ds, sp, spec, on_progress=on_progress, dist=dist, device=device)
        shipped_from = "final model: all training patients (minus its validation split)"
    else:
        model, info = folds.first
        k = only_fold or 1
        shipped_from = f"fold {k} model (no --final): trained without fold {k}"

    card = ModelCard.new(
        {
            "task": cfg.task,
            "classes": list(ds.classes),
            "architecture": cfg.arch,
            "input": {
                "size": size,
                "channels": spec.in_channels,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "sequences": list(ds.sequences),
            },
            "temperature": info["temperature"] if info else 1.0,
            "training_data": ds.summary(),
            "recipe": {
                **cfg.to_dict(),
                "split": sp["info"],
                "model_trained_on": shipped_from,
                "final_train": info,
                "world_size": dist.world_size,
                "bf16": bool(use_bf16(cfg.fit.bf16, torch.device(device))),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            "command": command,
            "metrics": {"cv": cv, "test": None if test is None else {**_flat(test), **test}},
            "training_time_s": round(time.time() - t_start, 1),
            "parent": zoo.parse_weights(cfg.init).ref,  # a zoo version it started from, else None
            # a pretrained natural-image backbone: where it came from, its licence
            **({"pretrained_from": zoo.BACKBONES[cfg.init].provenance()} if cfg.init in zoo.BACKBONES else {}),
        }
    )
    return Result(card=card, model=model, fold_weights=fold_weights, dataset=ds)


def _data_and_splits(cfg: TrainConfig, *, only_fold: int | None, on_progress: Callable | None):
    """(cfg at the architecture's input size, its spec, the dataset, its patient-grouped splits);
    ValueError for one-class data or a pilot fold the run does not have."""
    spec = model_spec(cfg.arch, cfg.img_size)
    cfg = dataclasses.replace(cfg, img_size=spec.input_size)
    ds = load_dataset(cfg.data, cfg.task, spec.input_size, seed=cfg.seed)
    if len(set(ds.labels.tolist())) < 2:
        raise ValueError(f"{cfg.data}: the training data holds one class only ({ds.classes})")
    sp = make_splits(ds, cfg)
    if only_fold is not None and not 1 <= only_fold <= len(sp["folds"]):
        raise ValueError(f"--fold {only_fold}: this run has {len(sp['folds'])} CV folds")
    if on_progress:
        on_progress(
            {
                "run": "data",
                "n_images": len(ds),
                "n_patients": len(set(ds.groups.tolist())),
                "folds": len(sp["folds"]),
                "locked_test": sp["test"] is not None,
            }
        )
    return cfg, spec, ds, sp


def _cross_validate(
    cfg: TrainConfig,
    ds: SliceSet,
    sp: dict,
    spec,
    *,
    only_fold: int | None,
    on_progress: Callable | None,
    dist: DistInfo,
    device,
) -> _Folds:
    """Train each CV fold (only `only_fold` when given) and score it on its test fold."""
    folds = _Folds()
    for k, (tr, te) in enumerate(sp["folds"], start=1):
        if only_fold is not None and k != only_fold:
            continue
        splits.assert_disjoint(ds.groups, tr, te)
        model, info = train_model(
            cfg, ds, tr, seed=cfg.seed + 100 * k, on_progress=on_progress, dist=dist, device=device, label=f"fold {k}"
        )
        if not dist.is_main:
            continue
        z = predict_logits(model, spec, ds.images[te], tta_flip=cfg.tta, device=device, bf16=cfg.fit.bf16)
        p = apply_temperature(z, info["temperature"])
        m = score(p, ds, te, cfg.n_boot)
        name = f"folds/fold{k}.pt"
        folds.weights[name] = _state_bytes(model)
        folds.per_fold.append(
            {
                "fold": k,
                "n_test": int(len(te)),
                "n_test_patients": int(len(set(ds.groups[te].tolist()))),
                **_flat(m),
                "metrics": m,
                "train": info,
                "weights": {
                    "file": name,
                    "sha256": hashlib.sha256(folds.weights[name]).hexdigest(),
                    "dtype": "float16",
                },
            }
        )
        folds.oof_idx.append(te)
        folds.oof_p.append(p)
        if folds.first[0] is None:
            folds.first = (model, info)
        if on_progress:
            by = {s: round(e["accuracy"], 3) for s, e in (m.get("by_source") or {}).items()}
            on_progress({"run": f"fold {k}", "done": True, **_flat(m), **({"accuracy_by_source": by} if by else {})})
    return folds


def _cv_metrics(folds: _Folds, ds: SliceSet, sp: dict, cfg: TrainConfig) -> dict | None:
    """The card's `metrics.cv`: t-intervals over folds and the pooled out-of-fold scores; None
    without folds."""
    if not folds.per_fold:
        return None
    per_fold = folds.per_fold
    keys = list(_flat(per_fold[0]["metrics"]))
    summ = {k: mean_ci_over_folds([f.get(k) for f in per_fold]) for k in keys}
    idx = np.concatenate(folds.oof_idx)
    return {
        "folds": len(per_fold),
        "split": sp["info"].get("cv"),
        "mean": {k: v["mean"] for k, v in summ.items()},
        "ci95": {k: v["ci95"] for k, v in summ.items()},
        "std": {k: v["std"] for k, v in summ.items()},
        "ci_method": "Student t over folds; pooled: percentile bootstrap over patients",
        "pooled": score(np.concatenate(folds.oof_p)[np.argsort(idx)], ds, np.sort(idx), cfg.n_boot),
        "per_fold": [{k: v for k, v in f.items() if k != "metrics"} | {"metrics": f["metrics"]} for f in per_fold],
    }


def _final_model(
    cfg: TrainConfig, ds: SliceSet, sp: dict, spec, *, on_progress: Callable | None, dist: DistInfo, device
) -> tuple[torch.nn.Module, dict, dict | None]:
    """The model trained on the whole pool, and its locked-test scores (None without a locked test)."""
    model, info = train_model(
        cfg, ds, sp["pool"], seed=cfg.seed, on_progress=on_progress, dist=dist, device=device, label="final"
    )
    test = None
    if dist.is_main and sp["test"] is not None:
        z = predict_logits(model, spec, ds.images[sp["test"]], tta_flip=cfg.tta, device=device, bf16=cfg.fit.bf16)
        test = score(apply_temperature(z, info["temperature"]), ds, sp["test"], cfg.n_boot)
        test["split"] = "locked test"
    return model, info, test
