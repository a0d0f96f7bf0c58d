"""Jobs: long work that runs in a worker process and reports its status, progress, metrics and
log tail here; and the liveness check that fails a job whose worker died without reporting.

The worker side (run_job, launch) is `core.store.jobs`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import select

from core.config import get_settings
from core.jsonable import jsonable
from core.store.errors import NotFound
from core.store.models import Job, utcnow
from core.store.repositories.audit import AuditRepository, SessionFactory
from core.store.views import JobView, job_view

LOG_TAIL_CHARS = 8000
TERMINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")


def log_path(job_id: int) -> Path:
    return get_settings().home / "jobs" / f"{job_id}.log"


def log_file_tail(job_id: int, chars: int = 4000) -> str:
    path = log_path(job_id)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child not yet waited for is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class JobRepository:
    def __init__(self, session: SessionFactory, audit: AuditRepository):
        self._session = session
        self._audit = audit

    def create(self, kind: str, params: Mapping | None = None, actor: str = "system") -> int:
        with self._session() as s:
            now = utcnow()
            row = Job(
                kind=kind,
                status="queued",
                progress=0.0,
                params=jsonable(dict(params or {})),
                metrics={},
                log_tail="",
                created_at=now,
                updated_at=now,
                cancel_requested=False,
            )
            s.add(row)
            s.flush()
            self._audit.add(s, actor, "create", "job", row.id, None, {"kind": kind, "params": row.params})
            return row.id

    def get(self, job_id: int) -> JobView:
        with self._session() as s:
            row = s.get(Job, job_id)
            if row is None:
                raise NotFound(f"no job {job_id}")
            return job_view(row)

    def update(
        self,
        job_id: int,
        *,
        status: str | None = None,
        progress: float | None = None,
        metrics: Mapping | None = None,
        merge_metrics: bool = True,
        log_tail: str | None = None,
        append_log: str | None = None,
        pid: int | None = None,
        host: str | None = None,
    ) -> JobView:
        with self._session() as s:
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
                row.metrics = jsonable({**(row.metrics or {}), **dict(metrics)} if merge_metrics else dict(metrics))
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
                self._audit.add(s, "job", "status", "job", job_id, {"status": before}, {"status": status})
            return job_view(row)

    def request_cancel(self, job_id: int, actor: str = "system") -> bool:
        """Ask a job to stop; a queued job is cancelled at once. False if it already finished."""
        with self._session() as s:
            row = s.get(Job, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no job {job_id}")
            if row.status in TERMINAL_JOB_STATUSES:
                return False
            row.cancel_requested = True
            row.updated_at = utcnow()
            if row.status == "queued":
                row.status, row.finished_at = "cancelled", utcnow()
            self._audit.add(s, actor, "cancel", "job", job_id, None, {"status": row.status})
            return True

    def cancel_requested(self, job_id: int) -> bool:
        with self._session() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def recent(self, kind: str | None = None, status: str | None = None, limit: int | None = None) -> list[JobView]:
        q = select(Job).order_by(Job.id.desc())
        if kind is not None:
            q = q.where(Job.kind == kind)
        if status is not None:
            q = q.where(Job.status == status)
        if limit:
            q = q.limit(limit)
        with self._session() as s:
            return [job_view(r) for r in s.scalars(q)]

    def reap_dead(self) -> list[int]:
        """Mark failed every running job of this host whose worker process is gone (crashed,
        killed, machine restarted); returns their ids. Pages call this when they poll."""
        host = socket.gethostname()
        dead = []
        for job in self.recent(status="running"):
            if job.pid is None or (job.host and job.host != host):
                continue
            if not process_alive(job.pid):
                tail = log_file_tail(job.id)
                note = f"\n[worker process {job.pid} ended without reporting a result: crashed or killed]\n"
                self.update(job.id, status="failed", log_tail=(tail or job.log_tail or "") + note)
                dead.append(job.id)
        return dead


__all__ = ["JobRepository", "LOG_TAIL_CHARS", "TERMINAL_JOB_STATUSES", "log_path", "log_file_tail", "process_alive"]
