"""ORM models of the store (SQLAlchemy 2.x typed declarative).

The schema itself is owned by the Alembic migrations in `core/migrations/versions`; these classes
describe the *head* revision and must stay in step with it (tests/store/test_migrations.py checks
that the migrated database and these models agree).

De-identification: a case never holds patient identity. `Case.patient_key` (an opaque grouping key,
e.g. a pseudonymous patient id from an import CSV) and the `known_label` columns exist only for
simulation, the per-patient cap and audit; the reviewer-facing views in `repository.py` never
return them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

TASKS = ("presence", "tumor_type", "grade")
LABEL_SOURCES = ("review", "import", "adjudication")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ENTRY_STATUSES = ("pending", "labelled", "flagged", "disputed")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(500), default="")  # e.g. "upload: scan.nii.gz"
    modality: Mapped[str] = mapped_column(String(32), default="unknown")
    shape: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # de-identified only
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # hidden: never in a reviewer-facing view
    patient_key: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    known_label: Mapped[str | None] = mapped_column(String(100), nullable=True)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    slice_index: Mapped[int] = mapped_column(Integer, default=0)
    plane: Mapped[str] = mapped_column(String(16), default="axial")
    image_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    image_path: Mapped[str | None] = mapped_column(String(500), nullable=True)  # under home/items
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # 0002: slice-level hidden truth (e.g. tumour visible on this slice), simulation/audit only
    known_label: Mapped[str | None] = mapped_column(String(100), nullable=True)


class Prediction(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(100))
    probabilities: Mapped[list[Any]] = mapped_column(JSON)
    uncertainty: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # 0002: feature vector for batch-aware (core-set) selection
    embedding: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20), default="review")
    replaced_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # 0002: the (item, task) version this label created; the ordinal of a double reading
    version: Mapped[int] = mapped_column(Integer, default=1)
    reading: Mapped[int | None] = mapped_column(Integer, nullable=True)


class QueueEntry(Base):
    """0002: the state of one item in one task's review queue, with the optimistic version."""

    __tablename__ = "queue_entries"
    __table_args__ = (UniqueConstraint("item_id", "task", name="uq_queue_entries_item_task"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    version: Mapped[int] = mapped_column(Integer, default=0)
    current_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), nullable=True)
    readings_required: Mapped[int] = mapped_column(Integer, default=1)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Score(Base):
    """0002: an acquisition score of an item under a strategy, from one model version."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("item_id", "task", "strategy", name="uq_scores_item_task_strategy"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    strategy: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    """Append-only. The repository only inserts; the ORM refuses updates and deletes; the
    database refuses them too (triggers from migration 0001)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("task", "version", name="uq_model_versions_task_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(100))
    is_champion: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # 0002
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class User(Base):
    """0003: a person who may sign in. `password_hash` is a salted argon2 hash (core.auth), NULL for
    accounts that sign in only through the OIDC provider. Disabled, never deleted."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name", name="uq_users_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditIsAppendOnly(RuntimeError):
    pass


@event.listens_for(Session, "before_flush")
def _audit_append_only(session: Session, flush_context, instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditIsAppendOnly("the audit log is append-only: entries are never updated or deleted")
