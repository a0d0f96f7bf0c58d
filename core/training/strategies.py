"""Fine-tuning strategies (Swati et al. 2019): which parameters train, in which stages.

- `head`: backbone frozen; its pooled features are computed once (no augmentation) and only the
  classifier head is retrained on them, in seconds.
- `blockwise`: head first (on cached features), then unfreeze the top block (VGG "block 5") and
  train, then the next block down, ... each stage with a lower learning rate than the one before;
  every stage is scored on the VALIDATION split (never the test fold), every stage is reported and
  the best stage's weights are kept.
- `full`: every parameter trains from the first step.
- `top`: the top `max_blocks` blocks and the head train together from the first step, one stage;
  the blocks below stay frozen (their BatchNorms in eval). Cheaper than `full` (no backward pass
  through the frozen blocks) and keeps the low-level pretrained filters.

"Balance with synthetic features" (`FitConfig.balance_synthetic`, the head stage only): a feature
ACGAN (`core.research.acgan`) is trained on the cached TRAINING features of this model (one fold's
training split, never its validation split nor any test fold) and its samples top up every minority
class to the largest class count before the head trains; the report records what was added.

Each strategy is `fn(model, spec, data, cfg, ...) -> report` and trains `model` in place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

import model_zoo as zoo
from core.research.acgan import balance_with_synthetic
from core.training.loop import FitConfig, _val_score, fit, predict_logits, to_model_input


@dataclass
class Data:
    """What a strategy trains on: uint8 slices and labels, and the validation split."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    n_classes: int

    @property
    def val(self):
        return (self.val_x, self.val_y) if len(self.val_y) else None


def _features(model, spec, images_u8: np.ndarray, device, batch_size: int = 128) -> torch.Tensor:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images_u8), batch_size):
            x = to_model_input(images_u8[i : i + batch_size], spec, device, None, None, False)
            out.append(zoo.backbone_features(model, spec, x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def train_head(
    model, spec, data: Data, cfg: FitConfig, *, on_progress=None, device="cpu", dist=None, epochs: int | None = None
) -> dict:
    """Frozen backbone; the head trains on features extracted once."""
    device = torch.device(device)
    zoo.freeze_all_but(model, spec, 0)
    head = zoo.classifier(model, spec)
    ftr = _features(model, spec, data.train_x, device)
    fval = _features(model, spec, data.val_x, device) if len(data.val_y) else None
    train_y = np.asarray(data.train_y, dtype=np.int64)
    synthetic = None
    if getattr(cfg, "balance_synthetic", False):
        ftr, train_y, synthetic = balance_training_features(ftr, train_y, data.n_classes, cfg.seed)
    ytr = torch.from_numpy(train_y)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    counts = np.bincount(train_y, minlength=data.n_classes).astype(np.float64)
    weight = (
        torch.tensor(
            np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / data.n_classes, 0.0), dtype=torch.float32
        )
        if cfg.class_weights
        else None
    )
    history = []
    g = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, (epochs or cfg.epochs) + 1):
        head.train()
        perm = torch.randperm(len(ytr), generator=g)
        losses = []
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(
                head(ftr[idx].to(device)), ytr[idx].to(device), weight=weight, label_smoothing=cfg.label_smoothing
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        row = {"stage": "head", "epoch": epoch, "loss": float(np.mean(losses))}
        if fval is not None:
            head.eval()
            with torch.no_grad():
                vz = head(fval.to(device)).double().cpu().numpy()
            row[f"val_{cfg.select_metric}"] = _val_score(vz, data.val_y, cfg.select_metric)
            row["val_accuracy"] = float((vz.argmax(1) == data.val_y).mean())
        history.append(row)
        if on_progress:
            on_progress({**row, "step": 0, "val": {k[4:]: v for k, v in row.items() if k.startswith("val_")}})
    out = {"strategy": "head", "history": history}
    if synthetic is not None:
        out["synthetic"] = synthetic
    return out


SYNTHETIC_GAN_EPOCHS = 200


def balance_training_features(
    ftr: torch.Tensor, train_y: np.ndarray, n_classes: int, seed: int, epochs: int | None = None
) -> tuple[torch.Tensor, np.ndarray, dict]:
    """TRAINING features topped up with feature-ACGAN rows of the minority classes (a GAN trained
    on these rows only). Returns (features, labels, summary for the report)."""
    epochs = int(epochs or SYNTHETIC_GAN_EPOCHS)
    real_counts = np.bincount(train_y, minlength=n_classes)
    feats, labels, is_syn = balance_with_synthetic(
        ftr.numpy(), train_y, "max", n_classes=n_classes, epochs=epochs, seed=int(seed)
    )
    added = np.bincount(labels[is_syn], minlength=n_classes)
    summary = {
        "method": "feature ACGAN (core.research.acgan), trained on this model's training split only",
        "target": "largest class count",
        "gan_epochs": int(epochs),
        "n_real": int(len(train_y)),
        "n_synthetic": int(is_syn.sum()),
        "real_per_class": real_counts.tolist(),
        "synthetic_per_class": added.tolist(),
    }
    return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), labels.astype(np.int64), summary


def train_full(model, spec, data: Data, cfg: FitConfig, *, on_progress=None, device="cpu", dist=None) -> dict:
    zoo.freeze_all_but(model, spec, len(spec.blocks))
    kw = {"dist": dist} if dist is not None else {}
    history = fit(
        model,
        spec,
        data.train_x,
        data.train_y,
        data.n_classes,
        cfg,
        val=data.val,
        on_progress=on_progress,
        stage="full",
        device=device,
        **kw,
    )
    return {"strategy": "full", "history": history}


def _fit_top_blocks(model, spec, data: Data, cfg: FitConfig, k: int, stage: str, *, on_progress, device, dist):
    """Train the top `k` blocks and the head (the rest frozen, frozen BatchNorms in eval)."""
    kw = {"dist": dist} if dist is not None else {}
    trainable = zoo.freeze_all_but(model, spec, k)
    return fit(
        model,
        spec,
        data.train_x,
        data.train_y,
        data.n_classes,
        cfg,
        val=data.val,
        params=[p for _, p in trainable],
        train_mode=zoo.train_mode,
        on_progress=on_progress,
        stage=stage,
        device=device,
        **kw,
    )


def train_top(
    model,
    spec,
    data: Data,
    cfg: FitConfig,
    *,
    on_progress=None,
    device="cpu",
    dist=None,
    max_blocks: int | None = None,
    **_,
) -> dict:
    """The top `max_blocks` blocks (default 2) + head, trained jointly in one stage."""
    k = min(2 if max_blocks is None else int(max_blocks), len(spec.blocks))
    history = _fit_top_blocks(model, spec, data, cfg, k, f"top{k}", on_progress=on_progress, device=device, dist=dist)
    zoo.freeze_all_but(model, spec, len(spec.blocks))
    return {"strategy": "top", "trainable_blocks": k, "history": history}


def train_blockwise(
    model,
    spec,
    data: Data,
    cfg: FitConfig,
    *,
    on_progress=None,
    device="cpu",
    dist=None,
    max_blocks: int | None = None,
    lr_decay: float = 0.5,
    head_epochs: int | None = None,
) -> dict:
    """Stage 0: head; stage k: top k blocks + head at lr * lr_decay**k. Keeps the best stage on
    validation (the last stage when there is no validation split)."""
    n_blocks = len(spec.blocks) if max_blocks is None else min(max_blocks, len(spec.blocks))
    stages, best = [], (-np.inf, None, -1)
    for k in range(0, n_blocks + 1):
        name = "head" if k == 0 else f"block{len(spec.blocks) - k + 1}"
        if k == 0:
            rep = train_head(
                model, spec, data, cfg, on_progress=on_progress, device=device, epochs=head_epochs or cfg.epochs
            )
            history = rep["history"]
        else:
            stage_cfg = replace(cfg, lr=cfg.lr * lr_decay**k, seed=cfg.seed + k)
            history = _fit_top_blocks(
                model, spec, data, stage_cfg, k, name, on_progress=on_progress, device=device, dist=dist
            )
        score = None
        if data.val is not None:
            vz = predict_logits(model, spec, data.val_x, tta_flip=False, device=device, bf16=cfg.bf16)
            score = _val_score(vz, data.val_y, cfg.select_metric)
        stages.append(
            {
                "stage": name,
                "trainable_blocks": k,
                "lr": cfg.lr * (lr_decay**k if k else 1.0),
                f"val_{cfg.select_metric}": score,
                "history": history,
            }
        )
        if score is None or score > best[0]:
            best = (score if score is not None else np.inf, copy.deepcopy(model.state_dict()), k)
    model.load_state_dict(best[1])
    zoo.freeze_all_but(model, spec, len(spec.blocks))
    return {
        "strategy": "blockwise",
        "stages": stages,
        "kept_stage": stages[best[2]]["stage"],
        "selected_on": f"validation {cfg.select_metric}",
    }


STRATEGIES: dict[str, Callable] = {
    "head": train_head,
    "blockwise": train_blockwise,
    "full": train_full,
    "top": train_top,
}


def run_strategy(name: str, model, spec, data: Data, cfg: FitConfig, **kw) -> dict:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](model, spec, data, cfg, **kw)
