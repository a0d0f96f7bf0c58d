"""The store's operations. Pages, the CLI and workers go through `Repository`; nothing else
writes SQL.

Views returned here are plain frozen dataclasses (safe to cache and to hand across threads). The
reviewer-facing ones (`CaseView`, `ItemView`, `QueueCandidate`, ...) never carry the hidden
`patient_key` / `known_label`; `hidden_truth()` is the one door to those, for simulation and audit.

Concurrency: labels use optimistic versioning per (item, task). `label_item(..., expect_version=V)`
runs `UPDATE queue_entries SET version = version + 1 WHERE item_id = ? AND task = ? AND version = V`
and checks the row count inside one transaction, so of several processes saving against the same
version exactly one wins; the others get `VersionConflict` carrying the current label and version.
The audit log is append-only: the repository only inserts into it (and the ORM and the database
refuse updates and deletes).
"""
from __future__ import annotations

import contextlib
import io
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.tasks import check_label, check_task
from core.store.models import (LABEL_SOURCES, AuditEntry, Case, Item, Job, Label, ModelVersion,
                               Prediction, QueueEntry, Score, utcnow)

LOG_TAIL_CHARS = 8000
TERMINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")


# --------------------------------------------------------------------------- errors

class StoreError(Exception):
    pass


class NotFound(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class VersionConflict(StoreError):
    """Someone saved this item/task since the version the caller saw."""

    def __init__(self, item_id: int, task: str, current_label: "LabelView | None",
                 current_version: int, expected_version: int | None):
        self.item_id = item_id
        self.task = task
        self.current_label = current_label
        self.current_version = current_version
        self.expected_version = expected_version
        shown = (f"{current_label.value!r} by {current_label.reviewer}" if current_label
                 else "no label")
        super().__init__(f"item {item_id} ({task}) changed: you saw version {expected_version}, "
                         f"it is now version {current_version} with {shown}")


# --------------------------------------------------------------------------- views

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class CaseView:
    id: int
    source: str
    modality: str
    shape: tuple | None
    meta: dict
    created_at: datetime
    n_items: int = 0


@dataclass(frozen=True)
class ItemView:
    id: int
    case_id: int
    slice_index: int
    plane: str
    has_image: bool
    created_at: datetime


@dataclass(frozen=True)
class PredictionView:
    id: int
    item_id: int
    task: str
    model_version: str
    probabilities: list
    uncertainty: dict
    embedding: list | None
    created_at: datetime


@dataclass(frozen=True)
class LabelView:
    id: int
    item_id: int
    task: str
    value: str
    reviewer: str
    source: str
    version: int
    reading: int | None
    replaced_label_id: int | None
    comment: str | None
    created_at: datetime

    def to_dict(self) -> dict:
        d = asdict(self)
        d["created_at"] = _iso(self.created_at)
        return d


@dataclass(frozen=True)
class EntryView:
    item_id: int
    task: str
    status: str
    version: int
    current_label: LabelView | None
    readings_required: int
    comment: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class QueueCandidate:
    """A pending item of a task's queue, with its newest prediction (if any).

    `group` is an opaque grouping key for the per-patient cap; it is derived from the hidden
    patient key and must not be displayed."""
    item_id: int
    case_id: int
    slice_index: int
    plane: str
    task: str
    status: str
    version: int
    group: str = field(repr=False)
    probabilities: list | None = None
    uncertainty: dict | None = None
    embedding: list | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict | None
    after: dict | None


@dataclass(frozen=True)
class ModelVersionView:
    task: str
    version: str
    is_champion: bool
    metrics: dict
    created_at: datetime
    promoted_at: datetime | None


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    status: str
    progress: float
    params: dict
    metrics: dict
    log_tail: str
    pid: int | None
    host: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("created_at", "updated_at", "finished_at"):
            d[key] = _iso(d[key])
        return d


def _label_view(row: Label | None) -> LabelView | None:
    if row is None:
        return None
    return LabelView(row.id, row.item_id, row.task, row.value, row.reviewer, row.source,
                     row.version, row.reading, row.replaced_label_id, row.comment, row.created_at)


def _job_view(row: Job) -> JobView:
    return JobView(row.id, row.kind, row.status, float(row.progress or 0.0), dict(row.params or {}),
                   dict(row.metrics or {}), row.log_tail or "", row.pid, row.host,
                   bool(row.cancel_requested), row.created_at, row.updated_at, row.finished_at)


def _mv_view(row: ModelVersion) -> ModelVersionView:
    return ModelVersionView(row.task, row.version, bool(row.is_champion), dict(row.metrics or {}),
                            row.created_at, row.promoted_at)


def _audit_view(row: AuditEntry) -> AuditView:
    return AuditView(row.id, row.at, row.actor, row.action, row.entity, row.entity_id,
                     row.before, row.after)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def encode_png(image: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) float in [0, 1] or uint8 -> PNG bytes (8-bit)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
        arr = np.round(arr * 255.0).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)   # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


# --------------------------------------------------------------------------- repository

class Repository:
    def __init__(self, engine: Engine | None = None):
        if engine is None:
            from core.store.db import init_db

            engine = init_db()
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> "Repository":
        """A repository on `url` (default settings.db_url), schema upgraded to head."""
        from core.store.db import init_db

        return cls(init_db(url))

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            with s.begin():
                yield s

    # ------------------------------------------------------------------ audit
    @staticmethod
    def _audit(s: Session, actor: str, action: str, entity: str, entity_id: Any,
               before: Any = None, after: Any = None) -> None:
        s.add(AuditEntry(actor=actor or "unknown", action=action, entity=entity,
                         entity_id=str(entity_id), before=_jsonable(before), after=_jsonable(after),
                         at=utcnow()))

    def audit(self, actor: str, action: str, entity: str, entity_id: Any,
              before: Any = None, after: Any = None) -> None:
        """Append one entry to the audit log (the only write the log accepts)."""
        with self.session() as s:
            self._audit(s, actor, action, entity, entity_id, before, after)

    def audit_log(self, *, entity: str | None = None, entity_id: Any = None,
                  action: str | None = None, actor: str | None = None,
                  limit: int | None = None) -> list[AuditView]:
        """Entries oldest first (filtered)."""
        q = select(AuditEntry).order_by(AuditEntry.id)
        if entity is not None:
            q = q.where(AuditEntry.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEntry.entity_id == str(entity_id))
        if action is not None:
            q = q.where(AuditEntry.action == action)
        if actor is not None:
            q = q.where(AuditEntry.actor == actor)
        with self.session() as s:
            rows = s.scalars(q).all()
        views = [_audit_view(r) for r in rows]
        return views[-limit:] if limit else views

    # ------------------------------------------------------------------ cases and items
    def save_case(self, volume: Any, slices: Any = None, predictions: Sequence[Mapping] | None = None,
                  *, source: str | None = None, plane: str = "axial",
                  slice_indices: Sequence[int] | None = None, tasks: Iterable[str] = (),
                  patient_key: str | None = None, known_label: str | None = None,
                  item_known_labels: Sequence[str | None] | None = None,
                  actor: str = "system") -> int:
        """Store a de-identified case, its slices as items and their predictions; returns the case id.

        volume: a `core.io.Volume` or a mapping/object with `modality`, `shape`, `meta`,
                `source_format` (only these de-identified summary fields are kept).
        slices: (N, H, W) or (N, H, W, 3) images in [0, 1] (or uint8), display-oriented; default:
                `core.preprocess.slices(volume, plane)` (every slice).
        slice_indices: the slice number of each image in the volume (default 0..N-1).
        predictions: mappings {"index": position in `slices`, "task", "model_version",
                "probabilities", optional "uncertainty", "embedding"}; each also queues the item
                for its task.
        tasks: queue every item for these tasks even without a prediction.
        patient_key / known_label / item_known_labels: hidden, for simulation and audit only.
        """
        get = (volume.get if isinstance(volume, Mapping) else lambda k, d=None: getattr(volume, k, d))
        if slices is None:
            from core.preprocess import slices as make_slices

            slices = make_slices(volume, plane)
        images = list(slices)
        meta = dict(get("meta", None) or {})
        fmt = get("source_format", None)
        if fmt:
            meta.setdefault("source_format", fmt)
        shape = get("shape", None)
        with self.session() as s:
            case = Case(source=str(source if source is not None else (fmt or "")),
                        modality=str(get("modality", None) or "unknown"),
                        shape=list(shape) if shape is not None else None, meta=_jsonable(meta),
                        patient_key=patient_key, known_label=known_label, created_at=utcnow())
            s.add(case)
            s.flush()
            ids = self._add_items(s, case.id, images, plane, slice_indices, item_known_labels)
            for task in tasks:
                for item_id in ids:
                    self._ensure_entry(s, item_id, task)
            for p in predictions or ():
                self._record_prediction(s, ids[int(p.get("index", 0))], p["task"], p["model_version"],
                                        p["probabilities"], p.get("uncertainty"), p.get("embedding"))
            self._audit(s, actor, "create", "case", case.id, None,
                        {"source": case.source, "items": len(ids), "plane": plane})
            return case.id

    def _add_items(self, s: Session, case_id: int, images: list, plane: str,
                   slice_indices: Sequence[int] | None, known: Sequence[str | None] | None) -> list[int]:
        if slice_indices is not None and len(slice_indices) != len(images):
            raise ValueError("slice_indices must have one entry per image")
        if known is not None and len(known) != len(images):
            raise ValueError("item_known_labels must have one entry per image")
        rows = []
        for n, img in enumerate(images):
            row = Item(case_id=case_id, plane=plane, created_at=utcnow(),
                       slice_index=int(slice_indices[n]) if slice_indices is not None else n,
                       image_png=encode_png(img) if img is not None else None,
                       known_label=known[n] if known is not None else None)
            s.add(row)
            rows.append(row)
        s.flush()
        return [r.id for r in rows]

    def add_items(self, case_id: int, images: Sequence[Any], *, plane: str = "axial",
                  slice_indices: Sequence[int] | None = None, tasks: Iterable[str] = (),
                  known_labels: Sequence[str | None] | None = None) -> list[int]:
        with self.session() as s:
            if s.get(Case, case_id) is None:
                raise NotFound(f"no case {case_id}")
            ids = self._add_items(s, case_id, list(images), plane, slice_indices, known_labels)
            for task in tasks:
                for item_id in ids:
                    self._ensure_entry(s, item_id, task)
            return ids

    def get_case(self, case_id: int) -> CaseView:
        with self.session() as s:
            row = s.get(Case, case_id)
            if row is None:
                raise NotFound(f"no case {case_id}")
            n = s.scalar(select(func.count()).select_from(Item).where(Item.case_id == case_id))
            return CaseView(row.id, row.source, row.modality, tuple(row.shape) if row.shape else None,
                            dict(row.meta or {}), row.created_at, int(n or 0))

    def list_cases(self, limit: int | None = None) -> list[CaseView]:
        with self.session() as s:
            q = select(Case.id).order_by(Case.id.desc())
            if limit:
                q = q.limit(limit)
            ids = s.scalars(q).all()
        return [self.get_case(i) for i in ids]

    @staticmethod
    def _item_view(row: Item) -> ItemView:
        return ItemView(row.id, row.case_id, row.slice_index, row.plane,
                        row.image_png is not None or row.image_path is not None, row.created_at)

    def get_item(self, item_id: int) -> ItemView:
        with self.session() as s:
            row = s.get(Item, item_id)
            if row is None:
                raise NotFound(f"no item {item_id}")
            return self._item_view(row)

    def case_items(self, case_id: int) -> list[ItemView]:
        with self.session() as s:
            rows = s.scalars(select(Item).where(Item.case_id == case_id)
                             .order_by(Item.plane, Item.slice_index, Item.id)).all()
            return [self._item_view(r) for r in rows]

    def item_image(self, item_id: int) -> np.ndarray:
        """The stored picture of an item, uint8 (H, W) or (H, W, 3)."""
        with self.session() as s:
            row = s.get(Item, item_id)
            if row is None:
                raise NotFound(f"no item {item_id}")
            data, path = row.image_png, row.image_path
        if data is None and path:
            from core.config import get_settings

            data = (get_settings().home / "items" / path).read_bytes()
        if data is None:
            raise NotFound(f"item {item_id} has no stored image")
        return decode_png(data)

    def item_images(self, item_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Stored pictures of several items at once (e.g. for training on confirmed labels)."""
        ids = list(item_ids)
        with self.session() as s:
            rows = s.execute(select(Item.id, Item.image_png).where(Item.id.in_(ids))).all()
        out = {i: decode_png(data) for i, data in rows if data is not None}
        for i in ids:
            if i not in out:
                out[i] = self.item_image(i)
        return out

    def hidden_truth(self, item_ids: Iterable[int] | None = None) -> dict[int, dict]:
        """Simulation/audit only, never for reviewers: {item_id: {patient_key, case_label, item_label}}."""
        q = select(Item.id, Case.patient_key, Case.known_label, Item.known_label).join(Case)
        if item_ids is not None:
            q = q.where(Item.id.in_(list(item_ids)))
        with self.session() as s:
            return {i: {"patient_key": pk, "case_label": cl, "item_label": il}
                    for i, pk, cl, il in s.execute(q).all()}

    # ------------------------------------------------------------------ predictions
    def _record_prediction(self, s: Session, item_id: int, task: str, model_version: str,
                           probabilities: Any, uncertainty: Any = None, embedding: Any = None) -> int:
        row = Prediction(item_id=item_id, task=task, model_version=str(model_version),
                         probabilities=_jsonable(np.asarray(probabilities, dtype=float)),
                         uncertainty=_jsonable(uncertainty) if uncertainty is not None else None,
                         embedding=_jsonable(np.asarray(embedding, dtype=float)) if embedding is not None else None,
                         created_at=utcnow())
        s.add(row)
        s.flush()
        self._ensure_entry(s, item_id, task)
        return row.id

    def record_prediction(self, item_id: int, task: str, model_version: str, probabilities: Any,
                          uncertainty: Any = None, embedding: Any = None) -> int:
        """Store one prediction and make sure the item is in the task's queue."""
        with self.session() as s:
            if s.get(Item, item_id) is None:
                raise NotFound(f"no item {item_id}")
            return self._record_prediction(s, item_id, task, model_version, probabilities,
                                           uncertainty, embedding)

    def latest_predictions(self, task: str, model_version: str | None = None,
                           item_ids: Iterable[int] | None = None) -> dict[int, PredictionView]:
        q = select(Prediction).where(Prediction.task == task).order_by(Prediction.id)
        if model_version is not None:
            q = q.where(Prediction.model_version == str(model_version))
        if item_ids is not None:
            q = q.where(Prediction.item_id.in_(list(item_ids)))
        out: dict[int, PredictionView] = {}
        with self.session() as s:
            for r in s.scalars(q):
                out[r.item_id] = PredictionView(r.id, r.item_id, r.task, r.model_version,
                                                list(r.probabilities), dict(r.uncertainty or {}),
                                                list(r.embedding) if r.embedding is not None else None,
                                                r.created_at)
        return out

    # ------------------------------------------------------------------ queue entries
    def _ensure_entry(self, s: Session, item_id: int, task: str, readings_required: int = 1) -> None:
        """Insert the (item, task) queue entry at version 0 unless it exists (race-safe)."""
        values = dict(item_id=item_id, task=task, status="pending", version=0,
                      readings_required=readings_required, updated_at=utcnow())
        dialect = s.get_bind().dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            s.execute(insert(QueueEntry).values(**values)
                      .on_conflict_do_nothing(index_elements=["item_id", "task"]))
            return
        exists = s.scalar(select(QueueEntry.id).where(QueueEntry.item_id == item_id,
                                                      QueueEntry.task == task))
        if exists is None:
            try:
                with s.begin_nested():
                    s.add(QueueEntry(**values))
            except IntegrityError:
                pass

    def enqueue(self, item_ids: Iterable[int], task: str, readings_required: int = 1) -> None:
        with self.session() as s:
            for item_id in item_ids:
                self._ensure_entry(s, item_id, task, readings_required)

    def set_double_reading(self, task: str, item_ids: Iterable[int] | None = None,
                           readings: int = 2, actor: str = "system") -> int:
        """Require `readings` independent readings for pending entries of `task` (or the given items)."""
        with self.session() as s:
            stmt = update(QueueEntry).where(QueueEntry.task == task)
            if item_ids is not None:
                ids = list(item_ids)
                for i in ids:
                    self._ensure_entry(s, i, task)
                stmt = stmt.where(QueueEntry.item_id.in_(ids))
            n = s.execute(stmt.values(readings_required=int(readings))
                          .execution_options(synchronize_session=False)).rowcount
            self._audit(s, actor, "double_reading", "task", task, None,
                        {"readings": readings, "entries": n})
            return int(n)

    def entry(self, item_id: int, task: str) -> EntryView:
        """The queue state of (item, task); version 0 / no label when never touched."""
        with self.session() as s:
            row = s.scalar(select(QueueEntry).where(QueueEntry.item_id == item_id,
                                                    QueueEntry.task == task))
            if row is None:
                if s.get(Item, item_id) is None:
                    raise NotFound(f"no item {item_id}")
                return EntryView(item_id, task, "pending", 0, None, 1, None, None)
            label = s.get(Label, row.current_label_id) if row.current_label_id else None
            return EntryView(item_id, task, row.status, row.version, _label_view(label),
                             row.readings_required, row.comment, row.updated_at)

    def label_history(self, item_id: int, task: str) -> list[LabelView]:
        with self.session() as s:
            rows = s.scalars(select(Label).where(Label.item_id == item_id, Label.task == task)
                             .order_by(Label.id)).all()
            return [_label_view(r) for r in rows]

    def _bump(self, s: Session, item_id: int, task: str, expect_version: int | None) -> bool:
        stmt = update(QueueEntry).where(QueueEntry.item_id == item_id, QueueEntry.task == task)
        if expect_version is not None:
            stmt = stmt.where(QueueEntry.version == int(expect_version))
        stmt = stmt.values(version=QueueEntry.version + 1, updated_at=utcnow())
        return s.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1

    @contextlib.contextmanager
    def _claimed_entry(self, item_id: int, task: str,
                       expect_version: int | None) -> Iterator[tuple[Session, QueueEntry]]:
        """(session, queue entry) with the entry's version already bumped, in one transaction: the
        UPDATE ... WHERE version = expected is what stops two savers from both winning. Raises
        VersionConflict, having written nothing, when someone saved since `expect_version`."""
        self._prepare(item_id, task)
        with self.session() as s:
            claimed = self._bump(s, item_id, task, expect_version)
            if claimed:
                yield s, s.scalar(select(QueueEntry).where(QueueEntry.item_id == item_id,
                                                           QueueEntry.task == task)
                                  .execution_options(populate_existing=True))
            else:
                s.rollback()
        if not claimed:
            raise self._conflict(item_id, task, expect_version)

    def _conflict(self, item_id: int, task: str, expect_version: int | None) -> VersionConflict:
        e = self.entry(item_id, task)
        return VersionConflict(item_id, task, e.current_label, e.version, expect_version)

    def _prepare(self, item_id: int, task: str) -> None:
        with self.session() as s:
            if s.get(Item, item_id) is None:
                raise NotFound(f"no item {item_id}")
            self._ensure_entry(s, item_id, task)

    def label_item(self, item_id: int, task: str, value: str, reviewer: str,
                   expect_version: int | None = None, *, source: str = "review",
                   comment: str | None = None) -> int:
        """Save a label; returns the new (item, task) version.

        expect_version: the version the reviewer saw (EntryView.version / QueueCandidate.version);
        if someone saved since, nothing is written and VersionConflict is raised. None: save
        whatever the current version is (imports, scripts)."""
        if source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, got {source!r}")
        if not str(reviewer or "").strip():
            raise ValueError("a reviewer name is required")
        value = check_label(task, value)     # the task table (and the active card) decide, not the caller
        with self._claimed_entry(item_id, task, expect_version) as (s, entry):
            prior = s.get(Label, entry.current_label_id) if entry.current_label_id else None
            before = {"version": entry.version - 1, "status": entry.status,
                      "label": prior.value if prior else None,
                      "reviewer": prior.reviewer if prior else None}
            reading = None
            status = "labelled"
            if entry.readings_required > 1 and source == "review":
                readers = self._readings(s, item_id, task)
                readers[reviewer] = value
                order = list(readers)
                reading = order.index(reviewer) + 1
                if len(readers) < entry.readings_required:
                    status = "pending"
                elif len(set(readers.values())) > 1:
                    status = "disputed"
            label = Label(item_id=item_id, task=task, value=str(value), reviewer=reviewer,
                          source=source, replaced_label_id=prior.id if prior else None,
                          comment=comment, version=entry.version, reading=reading,
                          created_at=utcnow())
            s.add(label)
            s.flush()
            entry.current_label_id = label.id
            entry.status = status
            entry.comment = comment
            self._audit(s, reviewer, "label" if source != "adjudication" else "adjudicate",
                        "queue_entry", f"{item_id}:{task}", before,
                        {"version": entry.version, "status": status, "label": label.value,
                         "label_id": label.id, "source": source, "reading": reading})
            new_version = entry.version
        return new_version

    def _readings(self, s: Session, item_id: int, task: str) -> dict[str, str]:
        """Latest review label per reviewer since the last adjudication/import (insertion order)."""
        rows = s.scalars(select(Label).where(Label.item_id == item_id, Label.task == task)
                         .order_by(Label.id)).all()
        readers: dict[str, str] = {}
        for r in rows:
            if r.source != "review":
                readers = {}
            else:
                readers[r.reviewer] = r.value   # a re-read keeps the reader's ordinal
        return readers

    def adjudicate(self, item_id: int, task: str, value: str, reviewer: str,
                   expect_version: int | None = None, comment: str | None = None) -> int:
        return self.label_item(item_id, task, value, reviewer, expect_version,
                               source="adjudication", comment=comment)

    def skip_item(self, item_id: int, task: str, reviewer: str, comment: str | None = None) -> None:
        """Not now, for this reviewer: the item leaves their queue, stays in everyone else's."""
        check_task(task)
        self._prepare(item_id, task)
        with self.session() as s:
            self._audit(s, reviewer, "skip", "queue_entry", f"{item_id}:{task}", None,
                        {"comment": comment})

    def flag_item(self, item_id: int, task: str, reviewer: str, comment: str,
                  expect_version: int | None = None) -> int:
        """Take the item out of the queue for a human look (bad image, wrong case...)."""
        check_task(task)
        with self._claimed_entry(item_id, task, expect_version) as (s, entry):
            before = {"version": entry.version - 1, "status": entry.status, "comment": entry.comment}
            entry.status, entry.comment = "flagged", comment
            self._audit(s, reviewer, "flag", "queue_entry", f"{item_id}:{task}", before,
                        {"version": entry.version, "status": "flagged", "comment": comment})
            return entry.version

    def flagged(self, task: str) -> list[EntryView]:
        with self.session() as s:
            ids = s.scalars(select(QueueEntry.item_id).where(QueueEntry.task == task,
                                                             QueueEntry.status == "flagged")
                            .order_by(QueueEntry.item_id)).all()
        return [self.entry(i, task) for i in ids]

    def disagreements(self, task: str) -> list[dict]:
        """Double-read items whose readers disagree, for adjudication:
        [{"item_id", "case_id", "version", "readings": {reviewer: value}}]."""
        out = []
        with self.session() as s:
            rows = s.execute(select(QueueEntry.item_id, QueueEntry.version, Item.case_id)
                             .join(Item, Item.id == QueueEntry.item_id)
                             .where(QueueEntry.task == task, QueueEntry.status == "disputed")
                             .order_by(QueueEntry.item_id)).all()
            for item_id, version, case_id in rows:
                out.append({"item_id": item_id, "case_id": case_id, "version": version,
                            "readings": self._readings(s, item_id, task)})
        return out

    def candidates(self, task: str, reviewer: str | None = None,
                   model_version: str | None = None) -> list[QueueCandidate]:
        """Pending entries of `task` that `reviewer` may work on, each with its newest prediction
        (of `model_version` when given). Excludes items this reviewer skipped or already read."""
        with self.session() as s:
            rows = s.execute(
                select(QueueEntry, Item.case_id, Item.slice_index, Item.plane, Case.patient_key)
                .join(Item, Item.id == QueueEntry.item_id).join(Case, Case.id == Item.case_id)
                .where(QueueEntry.task == task, QueueEntry.status == "pending")
                .order_by(QueueEntry.item_id)).all()
            excluded: set[int] = set()
            if reviewer:
                for (eid,) in s.execute(select(AuditEntry.entity_id).where(
                        AuditEntry.action == "skip", AuditEntry.actor == reviewer,
                        AuditEntry.entity == "queue_entry")).all():
                    item, _, t = eid.partition(":")
                    if t == task:
                        excluded.add(int(item))
                double = [e.item_id for e, *_ in rows if e.readings_required > 1]
                for d in double:
                    if reviewer in self._readings(s, d, task):
                        excluded.add(d)
        preds = self.latest_predictions(task, model_version, [e.item_id for e, *_ in rows])
        out = []
        for e, case_id, slice_index, plane, patient_key in rows:
            if e.item_id in excluded:
                continue
            p = preds.get(e.item_id)
            out.append(QueueCandidate(
                e.item_id, case_id, slice_index, plane, task, e.status, e.version,
                group=f"patient:{patient_key}" if patient_key else f"case:{case_id}",
                probabilities=p.probabilities if p else None, uncertainty=p.uncertainty if p else None,
                embedding=p.embedding if p else None, model_version=p.model_version if p else None))
        return out

    def progress(self, task: str) -> dict:
        """{"task", "total", "pending", "labelled", "flagged", "disputed", "by_class": {value: n}}."""
        with self.session() as s:
            counts = dict(s.execute(select(QueueEntry.status, func.count())
                                    .where(QueueEntry.task == task)
                                    .group_by(QueueEntry.status)).all())
            by_class = dict(s.execute(select(Label.value, func.count())
                                      .join(QueueEntry, QueueEntry.current_label_id == Label.id)
                                      .where(QueueEntry.task == task, QueueEntry.status == "labelled")
                                      .group_by(Label.value)).all())
        out = {"task": task, "total": int(sum(counts.values()))}
        for status in ("pending", "labelled", "flagged", "disputed"):
            out[status] = int(counts.get(status, 0))
        out["by_class"] = {k: int(v) for k, v in sorted(by_class.items())}
        return out

    def tasks(self) -> list[str]:
        with self.session() as s:
            return sorted(s.scalars(select(QueueEntry.task).distinct()).all())

    def confirmed_labels(self, task: str) -> list[dict]:
        """Current labels of settled entries, for training:
        [{"item_id", "case_id", "group", "value", "version", "reviewer", "source"}]."""
        with self.session() as s:
            rows = s.execute(select(QueueEntry.item_id, Item.case_id, Case.patient_key, Label.value,
                                    QueueEntry.version, Label.reviewer, Label.source)
                             .join(Label, Label.id == QueueEntry.current_label_id)
                             .join(Item, Item.id == QueueEntry.item_id)
                             .join(Case, Case.id == Item.case_id)
                             .where(QueueEntry.task == task, QueueEntry.status == "labelled")
                             .order_by(QueueEntry.item_id)).all()
        return [{"item_id": i, "case_id": c, "group": f"patient:{pk}" if pk else f"case:{c}",
                 "value": v, "version": ver, "reviewer": r, "source": src}
                for i, c, pk, v, ver, r, src in rows]

    # ------------------------------------------------------------------ scores
    def save_scores(self, task: str, strategy: str, model_version: str,
                    scores: Mapping[int, float]) -> None:
        with self.session() as s:
            ids = [int(i) for i in scores]
            if ids:
                s.query(Score).filter(Score.task == task, Score.strategy == strategy,
                                      Score.item_id.in_(ids)).delete(synchronize_session=False)
            now = utcnow()
            s.add_all([Score(item_id=int(i), task=task, strategy=strategy,
                             model_version=str(model_version), score=float(v), created_at=now)
                       for i, v in scores.items()])

    def scores(self, task: str, strategy: str) -> dict[int, tuple[float, str]]:
        with self.session() as s:
            rows = s.execute(select(Score.item_id, Score.score, Score.model_version)
                             .where(Score.task == task, Score.strategy == strategy)).all()
        return {i: (float(v), mv) for i, v, mv in rows}

    # ------------------------------------------------------------------ model versions
    def register_model_version(self, task: str, version: str, metrics: Mapping | None = None,
                               actor: str = "system") -> ModelVersionView:
        """Record a version (idempotent; metrics are updated when given)."""
        with self.session() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.task == task,
                                                      ModelVersion.version == version))
            if row is None:
                row = ModelVersion(task=task, version=version, metrics=_jsonable(dict(metrics or {})),
                                   is_champion=False, created_at=utcnow())
                s.add(row)
                s.flush()
                self._audit(s, actor, "register", "model_version", f"{task}@{version}", None,
                            {"metrics": row.metrics})
            elif metrics is not None:
                row.metrics = _jsonable(dict(metrics))
            return _mv_view(row)

    def model_versions(self, task: str | None = None) -> list[ModelVersionView]:
        q = select(ModelVersion).order_by(ModelVersion.task, ModelVersion.id)
        if task is not None:
            q = q.where(ModelVersion.task == task)
        with self.session() as s:
            return [_mv_view(r) for r in s.scalars(q)]

    def champion(self, task: str) -> ModelVersionView | None:
        with self.session() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.task == task,
                                                      ModelVersion.is_champion.is_(True)))
            return _mv_view(row) if row else None

    def _set_champion(self, s: Session, task: str, version: str, actor: str, action: str,
                      reason: str | None) -> ModelVersionView:
        # lock every version of the task so concurrent promotions serialise (one champion)
        rows = s.scalars(select(ModelVersion).where(ModelVersion.task == task)
                         .order_by(ModelVersion.id).with_for_update()).all()
        row = next((r for r in rows if r.version == version), None)
        if row is None:
            raise NotFound(f"no model version {task}@{version}; register it first")
        champions = [r for r in rows if r.is_champion]
        old = champions[0] if champions else None
        for r in champions:
            if r.id != row.id:
                r.is_champion = False
        s.flush()
        row.is_champion = True
        row.promoted_at = utcnow()
        self._audit(s, actor, action, "champion", task, {"version": old.version if old else None},
                    {"version": version, "reason": reason})
        return _mv_view(row)

    def promote(self, task: str, version: str, actor: str = "system",
                reason: str | None = None) -> ModelVersionView:
        """Make `task@version` the champion (audited)."""
        with self.session() as s:
            return self._set_champion(s, task, version, actor, "promote", reason)

    def champion_history(self, task: str) -> list[str]:
        """The promotion stack: promote pushes, rollback pops; the last entry is the champion."""
        stack: list[str] = []
        for a in self.audit_log(entity="champion", entity_id=task):
            if a.action == "promote":
                stack.append(a.after["version"])
            elif a.action == "rollback" and stack:
                stack.pop()
        return stack

    def rollback(self, task: str, actor: str = "system", reason: str | None = None) -> ModelVersionView:
        """Give the champion title back to the version promoted before the current one."""
        stack = self.champion_history(task)
        if len(stack) < 2:
            raise StoreError(f"no earlier champion of {task} to roll back to")
        with self.session() as s:
            return self._set_champion(s, task, stack[-2], actor, "rollback", reason)

    # ------------------------------------------------------------------ jobs
    def create_job(self, kind: str, params: Mapping | None = None, actor: str = "system") -> int:
        with self.session() as s:
            now = utcnow()
            row = Job(kind=kind, status="queued", progress=0.0, params=_jsonable(dict(params or {})),
                      metrics={}, log_tail="", created_at=now, updated_at=now, cancel_requested=False)
            s.add(row)
            s.flush()
            self._audit(s, actor, "create", "job", row.id, None, {"kind": kind, "params": row.params})
            return row.id

    def get_job(self, job_id: int) -> JobView:
        with self.session() as s:
            row = s.get(Job, job_id)
            if row is None:
                raise NotFound(f"no job {job_id}")
            return _job_view(row)

    def update_job(self, job_id: int, *, status: str | None = None, progress: float | None = None,
                   metrics: Mapping | None = None, merge_metrics: bool = True,
                   log_tail: str | None = None, append_log: str | None = None,
                   pid: int | None = None, host: str | None = None) -> JobView:
        with self.session() as s:
            row = s.get(Job, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no job {job_id}")
            before = row.status
            if status is not None:
                row.status = status
                if status in TERMINAL_JOB_STATUSES:
                    row.finished_at = utcnow()
            if progress is not None:
                row.progress = float(min(1.0, max(0.0, progress)))
            if metrics is not None:
                row.metrics = _jsonable({**(row.metrics or {}), **dict(metrics)} if merge_metrics
                                        else dict(metrics))
            if log_tail is not None:
                row.log_tail = log_tail[-LOG_TAIL_CHARS:]
            if append_log:
                row.log_tail = ((row.log_tail or "") + append_log)[-LOG_TAIL_CHARS:]
            if pid is not None:
                row.pid = pid
            if host is not None:
                row.host = host
            row.updated_at = utcnow()
            if status is not None and status != before:
                self._audit(s, "job", "status", "job", job_id, {"status": before}, {"status": status})
            return _job_view(row)

    def request_cancel(self, job_id: int, actor: str = "system") -> bool:
        """Ask a job to stop; a queued job is cancelled at once. False if it already finished."""
        with self.session() as s:
            row = s.get(Job, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no job {job_id}")
            if row.status in TERMINAL_JOB_STATUSES:
                return False
            row.cancel_requested = True
            row.updated_at = utcnow()
            if row.status == "queued":
                row.status, row.finished_at = "cancelled", utcnow()
            self._audit(s, actor, "cancel", "job", job_id, None, {"status": row.status})
            return True

    def cancel_requested(self, job_id: int) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def list_jobs(self, kind: str | None = None, status: str | None = None,
                  limit: int | None = None) -> list[JobView]:
        q = select(Job).order_by(Job.id.desc())
        if kind is not None:
            q = q.where(Job.kind == kind)
        if status is not None:
            q = q.where(Job.status == status)
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return [_job_view(r) for r in s.scalars(q)]

    def reap_dead_jobs(self) -> list[int]:
        """Mark failed every running job of this host whose worker process is gone (crashed,
        killed, machine restarted); returns their ids. Pages call this when they poll."""
        from core.store.jobs import log_file_tail, process_alive

        host = socket.gethostname()
        dead = []
        for job in self.list_jobs(status="running"):
            if job.pid is None or (job.host and job.host != host):
                continue
            if not process_alive(job.pid):
                tail = log_file_tail(job.id)
                note = (f"\n[worker process {job.pid} ended without reporting a result: "
                        "crashed or killed]\n")
                self.update_job(job.id, status="failed",
                                log_tail=(tail or job.log_tail or "") + note)
                dead.append(job.id)
        return dead


__all__ = ["Repository", "VersionConflict", "NotFound", "StoreError", "CaseView", "ItemView",
           "PredictionView", "LabelView", "EntryView", "QueueCandidate", "AuditView",
           "ModelVersionView", "JobView", "encode_png", "decode_png"]
