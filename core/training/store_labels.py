"""Training data from the review queue: the items whose labels reviewers confirmed (core.store).

    from core.training.store_labels import StoreLabels
    ds = StoreLabels().load("tumor_type", 96)       # a SliceSet, like the folder loaders

The real implementation of `core.training.datasets.StoreLabels` (which is a stub there): the
lead can make that name point here (`from core.training.store_labels import StoreLabels`).

Pixels: a stored item is the display-oriented slice the reviewer saw, already intensity-normalised
when it was stored (`preprocess.slices`), as 8-bit PNG. It is NOT normalised again (that would
stretch it differently from what inference sees); it only goes through the same resize as every
other source (`datasets._resize`, i.e. `preprocess.model_input`). Grey items give (N, S, S); for
`grade` (three sequences t1pre, flair, t1post) RGB items give (N, 3, S, S) and grey items are
replicated.

Groups: the store's patient grouping key (a pseudonymous patient id where the import had one,
else the case), so splits never put one patient on both sides. Labels that are not classes of
the task are left out and counted in the summary.
"""

from __future__ import annotations

import hashlib

import numpy as np
from sqlalchemy.engine import make_url

from core.store import Store
from core.training.datasets import TASK_CLASSES, TCGA_SEQUENCES, SliceSet, _resize

MULTI_CHANNEL_TASKS = {"grade": TCGA_SEQUENCES}


def _safe_url(url: str | None) -> str:
    if not url:
        return "store"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a display string only
        return "store"


class StoreLabels:
    """Slices with labels confirmed in the review queue. `load(task, size) -> SliceSet`."""

    def __init__(self, db_url: str | None = None, repo=None, item_ids=None):
        self.db_url = db_url
        self._repo = repo
        self.item_ids = None if item_ids is None else {int(i) for i in item_ids}

    @property
    def repo(self):
        if self._repo is None:
            self._repo = Store.open(self.db_url)
        return self._repo

    def rows(self, task: str) -> list[dict]:
        rows = self.repo.queue.confirmed_labels(task)
        if self.item_ids is not None:
            rows = [r for r in rows if r["item_id"] in self.item_ids]
        return rows

    def load(self, task: str, size: int) -> SliceSet:
        if task not in TASK_CLASSES:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_CLASSES)}")
        classes = TASK_CLASSES[task]
        all_rows = self.rows(task)
        rows = [r for r in all_rows if r["value"] in classes]
        skipped = len(all_rows) - len(rows)
        if not rows:
            raise ValueError(
                f"no confirmed review labels for {task} ({skipped} labels outside the classes {classes})"
                if skipped
                else f"no confirmed review labels for {task} yet"
            )
        images = self.repo.cases.images([r["item_id"] for r in rows])
        multi = task in MULTI_CHANNEL_TASKS
        stack = np.stack([self._pixels(images[r["item_id"]], multi) for r in rows])
        if len({a.shape for a in stack}) > 1:  # pragma: no cover - np.stack already refuses
            raise ValueError("items of different sizes")
        return SliceSet(
            name="review-queue",
            path=_safe_url(self.db_url or str(self.repo.engine.url)),
            classes=list(classes),
            images=_resize(stack, size),
            labels=np.array([classes.index(r["value"]) for r in rows], dtype=np.int64),
            groups=np.array([str(r["group"]) for r in rows], dtype=object),
            manifest_sha256=self.fingerprint(rows),
            sequences=MULTI_CHANNEL_TASKS.get(task, ("grey",)),
            parts=[
                {
                    "name": "review-queue",
                    "path": "store: confirmed labels",
                    "sha256": self.fingerprint(rows),
                    "n_images": len(rows),
                    "n_patients": len({r["group"] for r in rows}),
                    "n_labels_outside_classes": skipped,
                    "reviewers": sorted({r["reviewer"] for r in rows}),
                }
            ],
        )

    @staticmethod
    def fingerprint(rows: list[dict]) -> str:
        """sha256 of (item id, label version, value): what defines this training set."""
        text = "\n".join(
            f"{r['item_id']}\t{r['version']}\t{r['value']}" for r in sorted(rows, key=lambda r: r["item_id"])
        )
        return hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def _pixels(img: np.ndarray, multi: bool) -> np.ndarray:
        a = np.asarray(img, dtype=np.float32) / 255.0
        if a.ndim == 3 and a.shape[-1] == 4:
            a = a[..., :3]
        if multi:
            if a.ndim == 2:
                a = np.repeat(a[None], 3, axis=0)
            else:
                a = np.moveaxis(a, -1, 0)
            return np.ascontiguousarray(a)
        if a.ndim == 3:  # luminance, as core.io does for a colour picture
            a = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        return a


__all__ = ["StoreLabels"]
