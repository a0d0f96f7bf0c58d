"""What the store hands out: plain frozen dataclasses (safe to cache and to hand across threads).

The reviewer-facing ones (`CaseView`, `ItemView`, `QueueCandidate`, ...) never carry the hidden
`patient_key` / `known_label`; `CaseRepository.hidden_truth()` is the one door to those, for
simulation and audit. The `*_view(row)` functions build them from ORM rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from core.store.models import AuditEntry, Item, Job, Label, ModelVersion


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


def label_view(row: Label | None) -> LabelView | None:
    if row is None:
        return None
    return LabelView(
        row.id,
        row.item_id,
        row.task,
        row.value,
        row.reviewer,
        row.source,
        row.version,
        row.reading,
        row.replaced_label_id,
        row.comment,
        row.created_at,
    )


def job_view(row: Job) -> JobView:
    return JobView(
        row.id,
        row.kind,
        row.status,
        float(row.progress or 0.0),
        dict(row.params or {}),
        dict(row.metrics or {}),
        row.log_tail or "",
        row.pid,
        row.host,
        bool(row.cancel_requested),
        row.created_at,
        row.updated_at,
        row.finished_at,
    )


def model_version_view(row: ModelVersion) -> ModelVersionView:
    return ModelVersionView(
        row.task, row.version, bool(row.is_champion), dict(row.metrics or {}), row.created_at, row.promoted_at
    )


def audit_view(row: AuditEntry) -> AuditView:
    return AuditView(row.id, row.at, row.actor, row.action, row.entity, row.entity_id, row.before, row.after)


def item_view(row: Item) -> ItemView:
    return ItemView(
        row.id,
        row.case_id,
        row.slice_index,
        row.plane,
        row.image_png is not None or row.image_path is not None,
        row.created_at,
    )


__all__ = [
    "CaseView",
    "ItemView",
    "PredictionView",
    "LabelView",
    "EntryView",
    "QueueCandidate",
    "AuditView",
    "ModelVersionView",
    "JobView",
    "label_view",
    "job_view",
    "model_version_view",
    "audit_view",
    "item_view",
]
