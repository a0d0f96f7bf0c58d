"""Long work as subprocess jobs that report to the store.

Worker side (inside `python -m core <cmd> --job ID`):

    from core.store.jobs import run_job
    def work(job):                      # job: JobReporter
        for epoch in range(n):
            job.check_cancel()          # raises JobCancelled when the user pressed cancel
            ...
            job.progress((epoch + 1) / n, metrics={"loss": [...]})
            job.log(f"epoch {epoch}: ...")
        return {"version": "v3"}        # optional final metrics
    raise SystemExit(run_job(job_id, work))

`run_job` marks the job running (pid, host), then succeeded / cancelled / failed; a Python
exception is recorded with its traceback tail. A worker that dies without reporting (SIGKILL,
segfault, out of memory, machine restart) is marked failed by `store.jobs.reap_dead()`,
which pages call when they poll, which runs at the start of every worker (`run_job`), launch and
store command of the CLI (`reap_quietly`), and by `launch()`'s `wait_and_reap()`.

Launcher side: `launch(job_id, argv)` starts the worker detached (own session, so closing the
browser or restarting Streamlit does not kill it), output to NEUROGRADE_HOME/jobs/<id>.log.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.store.repositories.jobs import log_file_tail, log_path, process_alive
from core.store.store import Store

TRACEBACK_CHARS = 4000


class JobCancelled(Exception):
    """Raised by `JobReporter.check_cancel()` when cancellation was requested."""


def reap_quietly(repo: Store) -> list[int]:
    """`repo.jobs.reap_dead()` at the start of a command or worker; a failure to reap (e.g. the
    database is read-only) is left to the caller's own first write to report."""
    try:
        return repo.jobs.reap_dead()
    except Exception:  # noqa: BLE001
        return []


class JobReporter:
    def __init__(self, repo: Store, job_id: int):
        self.repo = repo
        self.job_id = job_id

    def progress(self, fraction: float, metrics: Mapping | None = None) -> None:
        self.repo.jobs.update(self.job_id, progress=fraction, metrics=metrics)

    def log(self, line: str) -> None:
        self.repo.jobs.update(self.job_id, append_log=line if line.endswith("\n") else line + "\n")

    def cancelled(self) -> bool:
        return self.repo.jobs.cancel_requested(self.job_id)

    def check_cancel(self) -> None:
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} cancelled")


def run_job(job_id: int, work: Callable[[JobReporter], Mapping | None], repo: Store | None = None) -> int:
    """Run `work` as job `job_id`; returns the exit status for the worker process
    (0 succeeded, 1 failed, 130 cancelled). Exceptions are recorded, not re-raised."""
    repo = repo or Store.open()
    reap_quietly(repo)  # a worker killed earlier must not stay "running" forever
    job = repo.jobs.get(job_id)
    if job.cancel_requested or job.status == "cancelled":
        repo.jobs.update(job_id, status="cancelled", append_log="cancelled before it started\n")
        return 130
    repo.jobs.update(job_id, status="running", pid=os.getpid(), host=socket.gethostname())
    reporter = JobReporter(repo, job_id)
    try:
        result = work(reporter)
    except JobCancelled:
        repo.jobs.update(job_id, status="cancelled", append_log="cancelled\n")
        return 130
    except BaseException as exc:  # noqa: BLE001 - record everything, including KeyboardInterrupt
        tb = traceback.format_exc()[-TRACEBACK_CHARS:]
        repo.jobs.update(job_id, status="failed", append_log=tb, metrics={"error": f"{type(exc).__name__}: {exc}"})
        return 1
    repo.jobs.update(
        job_id, status="succeeded", progress=1.0, metrics=dict(result) if isinstance(result, Mapping) else None
    )
    return 0


def launch(
    job_id: int, argv: Sequence[str], env: Mapping[str, str] | None = None, repo: Store | None = None
) -> subprocess.Popen:
    """Start `python <argv>` detached as the worker of job `job_id`; output goes to its log file."""
    repo = repo or Store.open()
    reap_quietly(repo)
    path = log_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    repo.jobs.update(job_id, pid=proc.pid, host=socket.gethostname())
    return proc


def wait_and_reap(job_id: int, proc: subprocess.Popen, repo: Store | None = None, timeout: float | None = None) -> Any:
    """Wait for a launched worker; if it exited without a final status, mark the job failed."""
    repo = repo or Store.open()
    code = proc.wait(timeout=timeout)
    job = repo.jobs.get(job_id)
    if job.status in ("queued", "running"):
        tail = log_file_tail(job_id)
        repo.jobs.update(
            job_id, status="failed", log_tail=tail + f"\n[worker exited with status {code} without reporting]\n"
        )
    return code


__all__ = [
    "JobCancelled",
    "JobReporter",
    "run_job",
    "launch",
    "wait_and_reap",
    "reap_quietly",
    "log_path",
    "log_file_tail",
    "process_alive",
]
