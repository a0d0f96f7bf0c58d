"""Putting an item in a task's review queue: the one insert that saving a case, recording a
prediction and labelling all need (race-safe: concurrent callers never create two entries)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.store.models import QueueEntry, utcnow

_UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def ensure_entry(s: Session, item_id: int, task: str, readings_required: int = 1) -> None:
    """Insert the (item, task) queue entry at version 0 unless it exists."""
    values = dict(
        item_id=item_id,
        task=task,
        status="pending",
        version=0,
        readings_required=readings_required,
        updated_at=utcnow(),
    )
    insert = _UPSERT.get(s.get_bind().dialect.name)
    if insert is not None:
        s.execute(insert(QueueEntry).values(**values).on_conflict_do_nothing(index_elements=["item_id", "task"]))
        return
    exists = s.scalar(select(QueueEntry.id).where(QueueEntry.item_id == item_id, QueueEntry.task == task))
    if exists is None:
        try:
            with s.begin_nested():
                s.add(QueueEntry(**values))
        except IntegrityError:
            pass


__all__ = ["ensure_entry"]
