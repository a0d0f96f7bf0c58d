"""Review queues: one entry per (item, task) with its status and optimistic version, the labels
reviewers give (double reading, adjudication), what a reviewer may work on next, and the
acquisition scores that order a queue.

Concurrency: labels use optimistic versioning per (item, task). `label(..., expect_version=V)`
runs `UPDATE queue_entries SET version = version + 1 WHERE item_id = ? AND task = ? AND version = V`
and checks the row count inside one transaction, so of several processes saving against the same
version exactly one wins; the others get `VersionConflict` carrying the current label and version.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.store.errors import NotFound, VersionConflict
from core.store.models import LABEL_SOURCES, AuditEntry, Case, Item, Label, QueueEntry, Score, utcnow
from core.store.repositories.audit import AuditRepository, SessionFactory
from core.store.repositories.cases import CaseRepository
from core.store.repositories.entries import ensure_entry
from core.store.views import EntryView, LabelView, QueueCandidate, label_view
from core.tasks import check_label, check_task


class QueueRepository:
    def __init__(self, session: SessionFactory, audit: AuditRepository, cases: CaseRepository):
        self._session = session
        self._audit = audit
        self._cases = cases  # the newest predictions travel with each candidate

    def enqueue(self, item_ids: Iterable[int], task: str, readings_required: int = 1) -> None:
        with self._session() as s:
            for item_id in item_ids:
                ensure_entry(s, item_id, task, readings_required)

    def set_double_reading(
        self, task: str, item_ids: Iterable[int] | None = None, readings: int = 2, actor: str = "system"
    ) -> int:
        """Require `readings` independent readings for pending entries of `task` (or the given items)."""
        with self._session() as s:
            stmt = update(QueueEntry).where(QueueEntry.task == task)
            if item_ids is not None:
                ids = list(item_ids)
                for i in ids:
                    ensure_entry(s, i, task)
                stmt = stmt.where(QueueEntry.item_id.in_(ids))
            n = s.execute(
                stmt.values(readings_required=int(readings)).execution_options(synchronize_session=False)
            ).rowcount
            self._audit.add(s, actor, "double_reading", "task", task, None, {"readings": readings, "entries": n})
            return int(n)

    def entry(self, item_id: int, task: str) -> EntryView:
        """The queue state of (item, task); version 0 / no label when never touched."""
        with self._session() as s:
            row = s.scalar(select(QueueEntry).where(QueueEntry.item_id == item_id, QueueEntry.task == task))
            if row is None:
                if s.get(Item, item_id) is None:
                    raise NotFound(f"no item {item_id}")
                return EntryView(item_id, task, "pending", 0, None, 1, None, None)
            label = s.get(Label, row.current_label_id) if row.current_label_id else None
            return EntryView(
                item_id,
                task,
                row.status,
                row.version,
                label_view(label),
                row.readings_required,
                row.comment,
                row.updated_at,
            )

    def label_history(self, item_id: int, task: str) -> list[LabelView]:
        with self._session() as s:
            rows = s.scalars(select(Label).where(Label.item_id == item_id, Label.task == task).order_by(Label.id)).all()
            return [label_view(r) for r in rows]

    def _bump(self, s: Session, item_id: int, task: str, expect_version: int | None) -> bool:
        stmt = update(QueueEntry).where(QueueEntry.item_id == item_id, QueueEntry.task == task)
        if expect_version is not None:
            stmt = stmt.where(QueueEntry.version == int(expect_version))
        stmt = stmt.values(version=QueueEntry.version + 1, updated_at=utcnow())
        return s.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1

    @contextlib.contextmanager
    def _claimed_entry(
        self, item_id: int, task: str, expect_version: int | None
    ) -> Iterator[tuple[Session, QueueEntry]]:
        """(session, queue entry) with the entry's version already bumped, in one transaction: the
        UPDATE ... WHERE version = expected is what stops two savers from both winning. Raises
        VersionConflict, having written nothing, when someone saved since `expect_version`."""
        self._prepare(item_id, task)
        with self._session() as s:
            claimed = self._bump(s, item_id, task, expect_version)
            if claimed:
                yield (
                    s,
                    s.scalar(
                        select(QueueEntry)
                        .where(QueueEntry.item_id == item_id, QueueEntry.task == task)
                        .execution_options(populate_existing=True)
                    ),
                )
            else:
                s.rollback()
        if not claimed:
            raise self._conflict(item_id, task, expect_version)

    def _conflict(self, item_id: int, task: str, expect_version: int | None) -> VersionConflict:
        e = self.entry(item_id, task)
        return VersionConflict(item_id, task, e.current_label, e.version, expect_version)

    def _prepare(self, item_id: int, task: str) -> None:
        with self._session() as s:
            if s.get(Item, item_id) is None:
                raise NotFound(f"no item {item_id}")
            ensure_entry(s, item_id, task)

    def label(
        self,
        item_id: int,
        task: str,
        value: str,
        reviewer: str,
        expect_version: int | None = None,
        *,
        source: str = "review",
        comment: str | None = None,
    ) -> int:
        """Save a label; returns the new (item, task) version.

        expect_version: the version the reviewer saw (EntryView.version / QueueCandidate.version);
        if someone saved since, nothing is written and VersionConflict is raised. None: save
        whatever the current version is (imports, scripts)."""
        if source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, got {source!r}")
        if not str(reviewer or "").strip():
            raise ValueError("a reviewer name is required")
        value = check_label(task, value)  # the task table (and the active card) decide, not the caller
        with self._claimed_entry(item_id, task, expect_version) as (s, entry):
            prior = s.get(Label, entry.current_label_id) if entry.current_label_id else None
            before = {
                "version": entry.version - 1,
                "status": entry.status,
                "label": prior.value if prior else None,
                "reviewer": prior.reviewer if prior else None,
            }
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
            label = Label(
                item_id=item_id,
                task=task,
                value=str(value),
                reviewer=reviewer,
                source=source,
                replaced_label_id=prior.id if prior else None,
                comment=comment,
                version=entry.version,
                reading=reading,
                created_at=utcnow(),
            )
            s.add(label)
            s.flush()
            entry.current_label_id = label.id
            entry.status = status
            entry.comment = comment
            self._audit.add(
                s,
                reviewer,
                "label" if source != "adjudication" else "adjudicate",
                "queue_entry",
                f"{item_id}:{task}",
                before,
                {
                    "version": entry.version,
                    "status": status,
                    "label": label.value,
                    "label_id": label.id,
                    "source": source,
                    "reading": reading,
                },
            )
            new_version = entry.version
        return new_version

    def _readings(self, s: Session, item_id: int, task: str) -> dict[str, str]:
        """Latest review label per reviewer since the last adjudication/import (insertion order)."""
        rows = s.scalars(select(Label).where(Label.item_id == item_id, Label.task == task).order_by(Label.id)).all()
        readers: dict[str, str] = {}
        for r in rows:
            if r.source != "review":
                readers = {}
            else:
                readers[r.reviewer] = r.value  # a re-read keeps the reader's ordinal
        return readers

    def adjudicate(
        self,
        item_id: int,
        task: str,
        value: str,
        reviewer: str,
        expect_version: int | None = None,
        comment: str | None = None,
    ) -> int:
        return self.label(item_id, task, value, reviewer, expect_version, source="adjudication", comment=comment)

    def skip(self, item_id: int, task: str, reviewer: str, comment: str | None = None) -> None:
        """Not now, for this reviewer: the item leaves their queue, stays in everyone else's."""
        check_task(task)
        self._prepare(item_id, task)
        with self._session() as s:
            self._audit.add(s, reviewer, "skip", "queue_entry", f"{item_id}:{task}", None, {"comment": comment})

    def flag(self, item_id: int, task: str, reviewer: str, comment: str, expect_version: int | None = None) -> int:
        """Take the item out of the queue for a human look (bad image, wrong case...)."""
        check_task(task)
        with self._claimed_entry(item_id, task, expect_version) as (s, entry):
            before = {"version": entry.version - 1, "status": entry.status, "comment": entry.comment}
            entry.status, entry.comment = "flagged", comment
            self._audit.add(
                s,
                reviewer,
                "flag",
                "queue_entry",
                f"{item_id}:{task}",
                before,
                {"version": entry.version, "status": "flagged", "comment": comment},
            )
            return entry.version

    def flagged(self, task: str) -> list[EntryView]:
        with self._session() as s:
            ids = s.scalars(
                select(QueueEntry.item_id)
                .where(QueueEntry.task == task, QueueEntry.status == "flagged")
                .order_by(QueueEntry.item_id)
            ).all()
        return [self.entry(i, task) for i in ids]

    def disagreements(self, task: str) -> list[dict]:
        """Double-read items whose readers disagree, for adjudication:
        [{"item_id", "case_id", "version", "readings": {reviewer: value}}]."""
        out = []
        with self._session() as s:
            rows = s.execute(
                select(QueueEntry.item_id, QueueEntry.version, Item.case_id)
                .join(Item, Item.id == QueueEntry.item_id)
                .where(QueueEntry.task == task, QueueEntry.status == "disputed")
                .order_by(QueueEntry.item_id)
            ).all()
            for item_id, version, case_id in rows:
                out.append(
                    {
                        "item_id": item_id,
                        "case_id": case_id,
                        "version": version,
                        "readings": self._readings(s, item_id, task),
                    }
                )
        return out

    def candidates(
        self, task: str, reviewer: str | None = None, model_version: str | None = None
    ) -> list[QueueCandidate]:
        """Pending entries of `task` that `reviewer` may work on, each with its newest prediction
        (of `model_version` when given). Excludes items this reviewer skipped or already read."""
        with self._session() as s:
            rows = s.execute(
                select(QueueEntry, Item.case_id, Item.slice_index, Item.plane, Case.patient_key)
                .join(Item, Item.id == QueueEntry.item_id)
                .join(Case, Case.id == Item.case_id)
                .where(QueueEntry.task == task, QueueEntry.status == "pending")
                .order_by(QueueEntry.item_id)
            ).all()
            excluded: set[int] = set()
            if reviewer:
                for (eid,) in s.execute(
                    select(AuditEntry.entity_id).where(
                        AuditEntry.action == "skip", AuditEntry.actor == reviewer, AuditEntry.entity == "queue_entry"
                    )
                ).all():
                    item, _, t = eid.partition(":")
                    if t == task:
                        excluded.add(int(item))
                double = [e.item_id for e, *_ in rows if e.readings_required > 1]
                for d in double:
                    if reviewer in self._readings(s, d, task):
                        excluded.add(d)
        preds = self._cases.latest_predictions(task, model_version, [e.item_id for e, *_ in rows])
        out = []
        for e, case_id, slice_index, plane, patient_key in rows:
            if e.item_id in excluded:
                continue
            p = preds.get(e.item_id)
            out.append(
                QueueCandidate(
                    e.item_id,
                    case_id,
                    slice_index,
                    plane,
                    task,
                    e.status,
                    e.version,
                    group=f"patient:{patient_key}" if patient_key else f"case:{case_id}",
                    probabilities=p.probabilities if p else None,
                    uncertainty=p.uncertainty if p else None,
                    embedding=p.embedding if p else None,
                    model_version=p.model_version if p else None,
                )
            )
        return out

    def progress(self, task: str) -> dict:
        """{"task", "total", "pending", "labelled", "flagged", "disputed", "by_class": {value: n}}."""
        with self._session() as s:
            counts = dict(
                s.execute(
                    select(QueueEntry.status, func.count()).where(QueueEntry.task == task).group_by(QueueEntry.status)
                ).all()
            )
            by_class = dict(
                s.execute(
                    select(Label.value, func.count())
                    .join(QueueEntry, QueueEntry.current_label_id == Label.id)
                    .where(QueueEntry.task == task, QueueEntry.status == "labelled")
                    .group_by(Label.value)
                ).all()
            )
        out = {"task": task, "total": int(sum(counts.values()))}
        for status in ("pending", "labelled", "flagged", "disputed"):
            out[status] = int(counts.get(status, 0))
        out["by_class"] = {k: int(v) for k, v in sorted(by_class.items())}
        return out

    def tasks(self) -> list[str]:
        with self._session() as s:
            return sorted(s.scalars(select(QueueEntry.task).distinct()).all())

    def confirmed_labels(self, task: str) -> list[dict]:
        """Current labels of settled entries, for training:
        [{"item_id", "case_id", "group", "value", "version", "reviewer", "source"}]."""
        with self._session() as s:
            rows = s.execute(
                select(
                    QueueEntry.item_id,
                    Item.case_id,
                    Case.patient_key,
                    Label.value,
                    QueueEntry.version,
                    Label.reviewer,
                    Label.source,
                )
                .join(Label, Label.id == QueueEntry.current_label_id)
                .join(Item, Item.id == QueueEntry.item_id)
                .join(Case, Case.id == Item.case_id)
                .where(QueueEntry.task == task, QueueEntry.status == "labelled")
                .order_by(QueueEntry.item_id)
            ).all()
        return [
            {
                "item_id": i,
                "case_id": c,
                "group": f"patient:{pk}" if pk else f"case:{c}",
                "value": v,
                "version": ver,
                "reviewer": r,
                "source": src,
            }
            for i, c, pk, v, ver, r, src in rows
        ]

    # ------------------------------------------------------------------ scores
    def save_scores(self, task: str, strategy: str, model_version: str, scores: Mapping[int, float]) -> None:
        with self._session() as s:
            ids = [int(i) for i in scores]
            if ids:
                s.query(Score).filter(Score.task == task, Score.strategy == strategy, Score.item_id.in_(ids)).delete(
                    synchronize_session=False
                )
            now = utcnow()
            s.add_all(
                [
                    Score(
                        item_id=int(i),
                        task=task,
                        strategy=strategy,
                        model_version=str(model_version),
                        score=float(v),
                        created_at=now,
                    )
                    for i, v in scores.items()
                ]
            )

    def scores(self, task: str, strategy: str) -> dict[int, tuple[float, str]]:
        with self._session() as s:
            rows = s.execute(
                select(Score.item_id, Score.score, Score.model_version).where(
                    Score.task == task, Score.strategy == strategy
                )
            ).all()
        return {i: (float(v), mv) for i, v, mv in rows}


__all__ = ["QueueRepository"]
