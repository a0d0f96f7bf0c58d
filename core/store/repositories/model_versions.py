"""Model versions known to the store, their recorded evaluations, and the champion of each task.

The store is the single truth for champions: promotion changes them here (audited), and the
zoo's active.json is only written from them (core.promotion).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.jsonable import jsonable
from core.store.errors import NotFound, StoreError
from core.store.models import ModelVersion, utcnow
from core.store.repositories.audit import AuditRepository, SessionFactory
from core.store.views import ModelVersionView, model_version_view


class ModelRepository:
    def __init__(self, session: SessionFactory, audit: AuditRepository):
        self._session = session
        self._audit = audit

    def register(
        self, task: str, version: str, metrics: Mapping | None = None, actor: str = "system"
    ) -> ModelVersionView:
        """Record a version (idempotent; metrics are updated when given)."""
        with self._session() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.version == version))
            if row is None:
                row = ModelVersion(
                    task=task,
                    version=version,
                    metrics=jsonable(dict(metrics or {})),
                    is_champion=False,
                    created_at=utcnow(),
                )
                s.add(row)
                s.flush()
                self._audit.add(
                    s, actor, "register", "model_version", f"{task}@{version}", None, {"metrics": row.metrics}
                )
            elif metrics is not None:
                row.metrics = jsonable(dict(metrics))
            return model_version_view(row)

    def versions(self, task: str | None = None) -> list[ModelVersionView]:
        q = select(ModelVersion).order_by(ModelVersion.task, ModelVersion.id)
        if task is not None:
            q = q.where(ModelVersion.task == task)
        with self._session() as s:
            return [model_version_view(r) for r in s.scalars(q)]

    def champion(self, task: str) -> ModelVersionView | None:
        with self._session() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.is_champion.is_(True)))
            return model_version_view(row) if row else None

    def _set_champion(
        self, s: Session, task: str, version: str, actor: str, action: str, reason: str | None
    ) -> ModelVersionView:
        # lock every version of the task so concurrent promotions serialise (one champion)
        rows = s.scalars(
            select(ModelVersion).where(ModelVersion.task == task).order_by(ModelVersion.id).with_for_update()
        ).all()
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
        self._audit.add(
            s,
            actor,
            action,
            "champion",
            task,
            {"version": old.version if old else None},
            {"version": version, "reason": reason},
        )
        return model_version_view(row)

    def promote(self, task: str, version: str, actor: str = "system", reason: str | None = None) -> ModelVersionView:
        """Make `task@version` the champion (audited)."""
        with self._session() as s:
            return self._set_champion(s, task, version, actor, "promote", reason)

    def champion_history(self, task: str) -> list[str]:
        """The promotion stack: promote pushes, rollback pops; the last entry is the champion."""
        stack: list[str] = []
        for a in self._audit.entries(entity="champion", entity_id=task):
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
        with self._session() as s:
            return self._set_champion(s, task, stack[-2], actor, "rollback", reason)


__all__ = ["ModelRepository"]
