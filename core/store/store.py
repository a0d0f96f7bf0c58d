"""`Store`: the repositories by concern over one engine. Pages, the CLI and workers go through
it; nothing else writes SQL.

    store = Store.open()                 # settings.db_url, schema upgraded to head
    store.cases.save(volume, slices)     # cases, items, predictions
    store.queue.label(item_id, task, value, reviewer, expect_version=v)
    store.models.champion(task)          # the single truth for champions
    store.jobs.update(job_id, progress=0.5)
    store.audit.entries(entity="champion")

Every repository method is one transaction; `store.session()` opens one for code that needs a
few operations to commit together (e.g. core.store.users).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.store.db import init_db
from core.store.repositories import AuditRepository, CaseRepository, JobRepository, ModelRepository, QueueRepository


class Store:
    def __init__(self, engine: Engine | None = None):
        self.engine = engine if engine is not None else init_db()
        self.audit = AuditRepository(self.session)
        self.cases = CaseRepository(self.session, self.audit)
        self.queue = QueueRepository(self.session, self.audit, self.cases)
        self.models = ModelRepository(self.session, self.audit)
        self.jobs = JobRepository(self.session, self.audit)

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """A store on `url` (default settings.db_url), schema upgraded to head."""
        return cls(init_db(url))

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on leaving the block, rolled back on an exception. Rows stay
        readable after the commit (views are built from them)."""
        with Session(self.engine, expire_on_commit=False) as s:
            with s.begin():
                yield s


__all__ = ["Store"]
