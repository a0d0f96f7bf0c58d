"""The training loop: one `fit` over in-memory uint8 slices, and batched `predict_logits`.

CPU speed: channels_last, bf16 autocast only where the CPU has AMX (without it bf16 is slower than
fp32 on this kind of machine), a fixed learning-rate schedule (one-cycle or cosine) so no epoch is
chosen on a test fold; optional early stopping / best-epoch on the VALIDATION split only.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from core.preprocess import model_input
from core.training.augment import AugmentConfig, augment_batch
from core.training.distributed import DistInfo, epoch_indices, wrap
from core.training.metrics import roc_auc_binary


@dataclass
class FitConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "onecycle"  # onecycle | cosine | constant
    class_weights: bool = True
    augment: bool = True
    augment_cfg: AugmentConfig = field(default_factory=AugmentConfig)
    bf16: str = "auto"  # auto | on | off
    channels_last: bool = True
    patience: int = 0  # early stopping on validation (0: off, fixed schedule)
    keep: str = "last"  # last | best (best epoch on VALIDATION)
    select_metric: str = "accuracy"  # accuracy | auc | nll, on validation
    seed: int = 0
    log_every: int = 20  # steps between progress calls
    balance_synthetic: bool = False  # head stage: top up minority classes of the TRAINING
    # features with feature-ACGAN samples (core.research.acgan)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment_cfg"] = asdict(self.augment_cfg) if self.augment else None
        return d


@functools.lru_cache(maxsize=1)
def bf16_fast() -> bool:
    """True where bf16 autocast speeds up CPU convolutions: AMX tiles (amx_bf16), not just
    avx512_bf16. Also checks that a tiny bf16 matmul runs."""
    try:
        flags = open("/proc/cpuinfo").read()
        if "amx_bf16" not in flags:
            return False
        a = torch.randn(8, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return bool(torch.isfinite(a @ a).all())
    except Exception:
        return False


def use_bf16(setting: str, device: torch.device) -> bool:
    if setting == "off":
        return False
    if device.type == "cuda":
        return setting == "on" or torch.cuda.is_bf16_supported()
    return setting == "on" or (setting == "auto" and bf16_fast())


def to_model_input(
    pixels_u8: np.ndarray, spec, device, augment: AugmentConfig | None, gen: torch.Generator | None, channels_last: bool
) -> torch.Tensor:
    x = torch.from_numpy(pixels_u8).float().div_(255.0)
    if x.ndim == 3:
        x = x[:, None]
    if augment is not None:
        x = augment_batch(x, augment, gen)
    x = model_input(x, spec).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def rotated(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """`x` (N, C, H, W) rotated about its centre; edge pixels fill the corners (MRI background)."""
    a = math.radians(degrees)
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype, device=x.device
    ).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


def predict_logits(
    model: torch.nn.Module,
    spec,
    images_u8: np.ndarray,
    *,
    batch_size: int = 128,
    tta_flip: bool = True,
    rotations: tuple[float, ...] = (),
    device: torch.device | str = "cpu",
    bf16: str = "auto",
    channels_last: bool = True,
) -> np.ndarray:
    """Logits (N, K) float64 for uint8 slices; with `tta_flip` the mean of the logits of the slice
    and its left-right mirror; `rotations` (degrees) add rotated copies of each of those views."""
    device = torch.device(device)
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(bf16, device)):
        for i in range(0, len(images_u8), batch_size):
            x = to_model_input(images_u8[i : i + batch_size], spec, device, None, None, channels_last)
            views = [x] + [rotated(x, r) for r in rotations]
            if tta_flip:
                views += [torch.flip(v, dims=[3]) for v in views]
            z = torch.stack([model(v).float() for v in views]).mean(0)
            out.append(z.cpu().double().numpy())
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out)


def _val_score(logits: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Higher is better."""
    z = torch.from_numpy(logits)
    if metric == "nll":
        return -float(F.cross_entropy(z, torch.from_numpy(y)))
    if metric == "auc" and logits.shape[1] == 2:
        p = torch.softmax(z, 1)[:, 1].numpy()
        v = roc_auc_binary(p, y == 1)
        return float(v) if v is not None else 0.0
    return float((logits.argmax(1) == y).mean())


def _class_weights(y: np.ndarray, k: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / k, 0.0)
    return torch.tensor(w, dtype=torch.float32)


def _scheduler(opt, cfg: FitConfig, steps_per_epoch: int):
    """Per-step LR. onecycle: torch's OneCycleLR (25% warm-up); for fewer than 8 steps in all (where
    OneCycleLR is undefined) a linear warm-up from 1/25 then cosine to ~0; cosine; constant."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and total >= 8:  # torch's OneCycleLR (what the shipped models used)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=0.25
        )
    warm = max(1, int(0.25 * total)) if cfg.schedule == "onecycle" else 0

    def factor(step: int) -> float:
        if step < warm:
            return 0.04 + 0.96 * step / warm
        if cfg.schedule == "constant":
            return 1.0
        t = min(step - warm, total - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * t)) + 1e-4

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(
    model: torch.nn.Module,
    spec,
    train_x: np.ndarray,
    train_y: np.ndarray,
    n_classes: int,
    cfg: FitConfig,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    params: list | None = None,
    train_mode: Callable | None = None,
    on_progress: Callable[[dict], None] | None = None,
    stage: str = "full",
    device: torch.device | str = "cpu",
    dist: DistInfo = DistInfo(),
) -> list[dict]:
    """Train `model` in place on (train_x uint8, train_y); returns one history row per epoch
    {epoch, loss, val_<metric>, seconds}. `params`: the trainable parameters (default: all that
    require grad). `train_mode(model)` puts the model in training mode (default model.train();
    block-wise fine-tuning passes model_zoo.train_mode so frozen BatchNorms stay in eval)."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    model.to(device)
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    net = wrap(model, dist, device)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train_y)
    per_rank = math.ceil(n / dist.world_size)
    bs = min(cfg.batch_size, per_rank)
    steps = max(1, per_rank // bs)
    sched = _scheduler(opt, cfg, steps)
    weight = _class_weights(train_y, n_classes).to(device) if cfg.class_weights else None
    bf16 = use_bf16(cfg.bf16, device)
    aug = cfg.augment_cfg if cfg.augment else None
    history, best, best_state, bad = [], -math.inf, None, 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        (train_mode or (lambda m: m.train()))(model)
        order = epoch_indices(n, epoch, cfg.seed, dist)
        losses = []
        for step in range(steps):
            idx = np.sort(np.asarray(order[step * bs : (step + 1) * bs]))
            x = to_model_input(train_x[idx], spec, device, aug, gen, cfg.channels_last)
            y = torch.from_numpy(train_y[idx]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if on_progress and (step + 1) % cfg.log_every == 0:
                on_progress(
                    {
                        "stage": stage,
                        "epoch": epoch,
                        "step": step + 1,
                        "steps": steps,
                        "loss": float(np.mean(losses[-cfg.log_every :])),
                    }
                )
        row = {"stage": stage, "epoch": epoch, "loss": float(np.mean(losses)), "lr": float(opt.param_groups[0]["lr"])}
        if val is not None and len(val[1]):
            vz = predict_logits(
                model, spec, val[0], tta_flip=False, device=device, bf16=cfg.bf16, channels_last=cfg.channels_last
            )
            row["val_loss"] = float(F.cross_entropy(torch.from_numpy(vz), torch.from_numpy(val[1])))
            row["val_accuracy"] = float((vz.argmax(1) == val[1]).mean())
            score = _val_score(vz, val[1], cfg.select_metric)
            row[f"val_{cfg.select_metric}"] = score
            if score > best:
                best, bad = score, 0
                if cfg.keep == "best":
                    best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
        row["seconds"] = round(time.time() - t0, 2)
        history.append(row)
        if on_progress:
            on_progress(
                {
                    **row,
                    "step": steps,
                    "steps": steps,
                    "val": {k[4:]: v for k, v in row.items() if k.startswith("val_")},
                }
            )
        if cfg.patience and val is not None and bad >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
