"""What the review page needs, without Streamlit: the item to show, its case's other slices, saving
a decision (label / skip / flag) with optimistic versioning, and its Grad-CAM.

    item = review.next_item(repo, "tumor_type", "entropy", reviewer="Dr Ada")
    out = review.decide(repo, item, "label", reviewer="Dr Ada", value="glioma")
    if out.conflict: print(out.message, out.current_label)     # never a silent overwrite

After a promotion or rollback the caller re-scores the pending queue with the new champion:

    review.refresh_queue_scores("tumor_type", result.version, store)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from core import auth, explain
from core.active_learning import next_items, refresh_scores
from core.cards import ModelCard
from core.preprocess import model_input, slices
from core.store import VersionConflict
from core.training.datasets import TASK_CLASSES
from core.viz import overlay
from core.zoo import list_checkpoints, load_checkpoint

TASKS = ("tumor_type", "presence", "grade")
ACTIONS = ("label", "skip", "flag")
RESCORE_STRATEGIES = ("entropy", "margin", "least_confidence", "bald", "random")  # per-item ones

log = logging.getLogger(__name__)


def task_classes(task: str) -> list[str]:
    return list(TASK_CLASSES.get(task, []))


@dataclass(frozen=True)
class ReviewItem:
    item_id: int
    case_id: int
    slice_index: int
    plane: str
    task: str
    version: int  # pass back as expect_version
    classes: list
    probabilities: list | None
    model_version: str | None
    score: float | None
    strategy: str
    status: str
    current_label: str | None
    readings_required: int

    @property
    def predicted(self) -> str | None:
        if not self.probabilities or len(self.probabilities) != len(self.classes):
            return None
        return self.classes[int(np.argmax(self.probabilities))]


def _classes_for(task: str, model_version: str | None, n: int | None) -> list[str]:
    if model_version:
        for c in list_checkpoints(task):
            if c.version == model_version and ModelCard.of(c).classes:
                return list(ModelCard.of(c).classes)
    classes = task_classes(task)
    if n is not None and len(classes) != n:
        return [str(i) for i in range(n)]
    return classes


def load_item(repo, item_id: int, task: str, strategy: str = "", score: float | None = None) -> ReviewItem:
    """The current state of one item of a task's queue (fresh from the store)."""
    it = repo.cases.item(item_id)
    entry = repo.queue.entry(item_id, task)
    pred = repo.cases.latest_predictions(task, item_ids=[item_id]).get(item_id)
    probs = list(pred.probabilities) if pred else None
    return ReviewItem(
        item_id,
        it.case_id,
        it.slice_index,
        it.plane,
        task,
        entry.version,
        _classes_for(task, pred.model_version if pred else None, len(probs) if probs else None),
        probs,
        pred.model_version if pred else None,
        score,
        strategy,
        entry.status,
        entry.current_label.value if entry.current_label else None,
        entry.readings_required,
    )


def next_item(
    repo, task: str, strategy: str = "entropy", reviewer: str | None = None, per_patient_cap: int | None = 2
) -> ReviewItem | None:
    got = next_items(repo, task, strategy, k=1, reviewer=reviewer or None, per_patient_cap=per_patient_cap)
    if not got:
        return None
    g = got[0]
    return load_item(repo, g["item_id"], task, strategy, g.get("score"))


def item_image01(repo, item_id: int) -> np.ndarray:
    """The stored picture in [0, 1]: (H, W) grey or (H, W, 3)."""
    return np.asarray(repo.cases.image(item_id), dtype=np.float32) / 255.0


def case_strip(repo, case_id: int, item_id: int, n: int = 7) -> list[tuple[int, int, np.ndarray]]:
    """Up to `n` items of the case around `item_id`: [(item_id, slice_index, uint8 image)]."""
    items = [i for i in repo.cases.items(case_id) if i.has_image]
    pos = next((k for k, i in enumerate(items) if i.id == item_id), 0)
    lo = max(0, min(pos - n // 2, len(items) - n))
    chosen = items[lo : lo + n]
    images = repo.cases.images([i.id for i in chosen])
    return [(i.id, i.slice_index, images[i.id]) for i in chosen]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    action: str
    message: str
    conflict: bool = False
    current_label: str | None = None
    current_reviewer: str | None = None
    current_version: int | None = None
    new_version: int | None = None


def decide(
    repo, item: ReviewItem, action: str, reviewer, value: str | None = None, comment: str | None = None
) -> Outcome:
    """Save one decision on `item` against the version the reviewer saw. `reviewer`: the signed-in
    core.auth.Identity (its role must allow labelling) or a trusted caller's name."""
    if reviewer is None:
        return Outcome(False, action, "Sign in first: every label records who gave it.")
    try:
        reviewer = auth.authorize(reviewer, "label")
    except auth.PermissionDenied as exc:
        return Outcome(False, action, str(exc))
    if not reviewer:
        return Outcome(False, action, "Sign in first: every label records who gave it.")
    comment = (comment or "").strip() or None
    try:
        if action == "label":
            if value not in item.classes:
                return Outcome(False, action, f"pick one of {', '.join(item.classes)}")
            v = repo.queue.label(item.item_id, item.task, value, reviewer, expect_version=item.version, comment=comment)
            agreed = "confirmed" if value == item.predicted else "corrected to"
            return Outcome(True, action, f"item {item.item_id}: {agreed} {value}", new_version=v)
        if action == "skip":
            repo.queue.skip(item.item_id, item.task, reviewer, comment)
            return Outcome(True, action, f"item {item.item_id} skipped")
        if action == "flag":
            if not comment:
                return Outcome(False, action, "say why you flag it (comment)")
            v = repo.queue.flag(item.item_id, item.task, reviewer, comment, expect_version=item.version)
            return Outcome(True, action, f"item {item.item_id} flagged", new_version=v)
    except VersionConflict as exc:
        cur = exc.current_label
        return Outcome(
            False,
            action,
            f"Someone else labelled this item: current label {cur.value if cur else 'none'}"
            + (f" (by {cur.reviewer}, version {exc.current_version})" if cur else f" (version {exc.current_version})")
            + ". Nothing was overwritten.",
            conflict=True,
            current_label=cur.value if cur else None,
            current_reviewer=cur.reviewer if cur else None,
            current_version=exc.current_version,
        )
    raise ValueError(f"unknown action {action!r}; one of {ACTIONS}")


def load_model(task: str, model_version: str):
    """The checkpoint that made the item's prediction (for Grad-CAM); None when it is not in the zoo."""
    if not model_version or not any(c.version == model_version for c in list_checkpoints(task)):
        return None
    return load_checkpoint(f"{task}@{model_version}")


def item_cam(
    loaded, image01: np.ndarray, task: str, class_index: int | None = None, method: str = "gradcam"
) -> tuple[np.ndarray, str]:
    """(uint8 RGB overlay, class name) of the Grad-CAM of `image01` on a LoadedModel."""
    a = np.asarray(image01, dtype=np.float32)
    x = np.moveaxis(a, -1, 0) if a.ndim == 3 else a  # (C, H, W) for multi-channel
    res = explain.cam(explain.LoadedExplainable(loaded, task), x, method, class_index, task=task)
    grey = a if a.ndim == 2 else a.mean(axis=-1)
    return overlay(grey, res.heatmap), res.class_name


__all__ = [
    "ReviewItem",
    "Outcome",
    "TASKS",
    "task_classes",
    "load_item",
    "next_item",
    "item_image01",
    "case_strip",
    "decide",
    "load_model",
    "item_cam",
    "slice_predictions",
    "send_to_review",
    "predict_items",
    "refresh_queue_scores",
    "rescore_note",
    "RESCORE_STRATEGIES",
]


def slice_predictions(prediction) -> list[dict]:
    """A VolumePrediction's per-slice outputs as store prediction rows (one per slice and task)."""
    rows = []
    for pos, s in enumerate(prediction.slices):
        for task, ref in prediction.model_versions.items():
            value = s.get(task)
            if value is None:
                continue
            probs = [1.0 - float(value), float(value)] if task == "presence" else [float(p) for p in value]
            rows.append({"index": pos, "task": task, "model_version": ref.split("@", 1)[-1], "probabilities": probs})
    return rows


def send_to_review(repo, volume, prediction, actor, images=None) -> int:
    """Store the de-identified case, its axial slices and the model's per-slice predictions, which
    puts every slice in each task's review queue; returns the case id. The upload's file names are
    not stored (they can carry patient identity). `actor`: the signed-in core.auth.Identity (raises
    PermissionDenied unless its role may send to review) or a trusted caller's name. `images`: the
    volume's axial display slices when the caller has them (core.case.Case does), else computed."""
    actor = auth.authorize(actor, "send_to_review")
    images = slices(volume, "axial") if images is None else images
    return repo.cases.save(
        volume,
        images,
        slice_predictions(prediction),
        source=f"scan page upload ({volume.source_format})",
        slice_indices=[int(s.get("index", i)) for i, s in enumerate(prediction.slices)],
        actor=actor or "anonymous",
    )


def predict_items(repo, task: str, item_ids: list[int], model_ref: str | None = None) -> list[dict]:
    """Calibrated probabilities of the active (or given) model for stored items, one mapping per id:
    what `active_learning.refresh_scores(predict=...)` needs to order a bulk-imported queue."""
    loaded = load_checkpoint(model_ref or f"{task}@active")
    images = repo.cases.images(item_ids)
    out = []
    with torch.inference_mode():
        for item_id in item_ids:
            img = np.asarray(images[item_id], dtype=np.float32) / 255.0
            x = img.transpose(2, 0, 1)[None] if img.ndim == 3 else img[None]  # (1, C, H, W) / (1, H, W)
            logits = loaded.model(model_input(x, loaded.spec)).float()
            probs = torch.softmax(logits / float(loaded.temperature or 1.0), dim=1)[0]
            out.append({"probabilities": [float(p) for p in probs]})
    return out


def rescore_note(rescore: Mapping | None) -> str:
    """One line about a post-promotion re-scoring, for pages and the CLI ("" when none ran)."""
    if not rescore:
        return ""
    done = rescore.get("strategies") or {}
    n = max((int(c.get("rescored", 0)) for c in done.values()), default=0)
    text = f"Review queue re-scored with {rescore.get('model_version')}: {n} pending item(s)" + (
        f" ({', '.join(done)})" if done else ""
    )
    errors = rescore.get("errors") or {}
    if errors:
        text += "; re-scoring FAILED for " + ", ".join(f"{k}: {v}" for k, v in errors.items())
    return text + "."


def refresh_queue_scores(task: str, version: str, repo) -> dict:
    """Re-score `task`'s pending review items with the (new) champion `version` (what a promotion
    or rollback is followed by), for "entropy" and every other per-item strategy that has stored
    scores for the task. Never raises: a strategy that fails is logged and reported under "errors"
    (the promotion it follows stands).

    Items are predicted once by `version` (recorded as predictions); further strategies reuse them.
    Returns {"model_version", "strategies": {strategy: refresh_scores() counts}, "errors": {strategy: msg}}."""
    out: dict = {"model_version": version, "strategies": {}, "errors": {}}
    try:
        strategies = ["entropy"] + [s for s in RESCORE_STRATEGIES[1:] if repo.queue.scores(task, s)]
    except Exception as exc:  # noqa: BLE001 - the store is unavailable
        log.exception("re-scoring the %s queue for %s@%s failed", task, task, version)
        out["errors"]["*"] = f"{type(exc).__name__}: {exc}"
        return out
    ref = f"{task}@{version}"
    predict = lambda ids: predict_items(repo, task, ids, ref)  # noqa: E731
    for strategy in strategies:
        try:
            out["strategies"][strategy] = refresh_scores(repo, task, strategy, model_version=version, predict=predict)
        except Exception as exc:  # noqa: BLE001 - must not undo the promotion
            log.exception("re-scoring the %s queue (%s) for %s failed", task, strategy, ref)
            out["errors"][strategy] = f"{type(exc).__name__}: {exc}"
    return out
