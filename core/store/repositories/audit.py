"""The audit log: append-only. This repository only inserts (and the ORM and the database refuse
updates and deletes)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.jsonable import jsonable
from core.store.models import AuditEntry, utcnow
from core.store.views import AuditView, audit_view

SessionFactory = Callable[[], AbstractContextManager[Session]]


class AuditRepository:
    def __init__(self, session: SessionFactory):
        self._session = session

    @staticmethod
    def add(
        s: Session, actor: str, action: str, entity: str, entity_id: Any, before: Any = None, after: Any = None
    ) -> None:
        """Append an entry inside the caller's transaction (it commits with the change it records)."""
        s.add(
            AuditEntry(
                actor=actor or "unknown",
                action=action,
                entity=entity,
                entity_id=str(entity_id),
                before=jsonable(before),
                after=jsonable(after),
                at=utcnow(),
            )
        )

    def append(
        self, actor: str, action: str, entity: str, entity_id: Any, before: Any = None, after: Any = None
    ) -> None:
        """Append one entry in its own transaction."""
        with self._session() as s:
            self.add(s, actor, action, entity, entity_id, before, after)

    def entries(
        self,
        *,
        entity: str | None = None,
        entity_id: Any = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int | None = None,
    ) -> list[AuditView]:
        """Entries oldest first (filtered); `limit` keeps the newest."""
        q = select(AuditEntry).order_by(AuditEntry.id)
        if entity is not None:
            q = q.where(AuditEntry.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEntry.entity_id == str(entity_id))
        if action is not None:
            q = q.where(AuditEntry.action == action)
        if actor is not None:
            q = q.where(AuditEntry.actor == actor)
        with self._session() as s:
            rows = s.scalars(q).all()
        views = [audit_view(r) for r in rows]
        return views[-limit:] if limit else views


__all__ = ["AuditRepository", "SessionFactory"]
