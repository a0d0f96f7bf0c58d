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
segfault, out of memory, machine restart) is marked failed by `Repository.reap_dead_jobs()`,
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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from core.store.repository import Repository

TRACEBACK_CHARS = 4000


class JobCancelled(Exception):
    """Raised by `JobReporter.check_cancel()` when cancellation was requested."""


def log_path(job_id: int) -> Path:
    from core.config import get_settings

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


def reap_quietly(repo: Repository) -> list[int]:
    """`repo.reap_dead_jobs()` at the start of a command or worker; a failure to reap (e.g. the
    database is read-only) is left to the caller's own first write to report."""
    try:
        return repo.reap_dead_jobs()
    except Exception:  # noqa: BLE001
        return []


class JobReporter:
    def __init__(self, repo: Repository, job_id: int):
        self.repo = repo
        self.job_id = job_id

    def progress(self, fraction: float, metrics: Mapping | None = None) -> None:
        self.repo.update_job(self.job_id, progress=fraction, metrics=metrics)

    def log(self, line: str) -> None:
        self.repo.update_job(self.job_id, append_log=line if line.endswith("\n") else line + "\n")

    def cancelled(self) -> bool:
        return self.repo.cancel_requested(self.job_id)

    def check_cancel(self) -> None:
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} cancelled")


def run_job(job_id: int, work: Callable[[JobReporter], Mapping | None],
            repo: Repository | None = None) -> int:
    """Run `work` as job `job_id`; returns the exit status for the worker process
    (0 succeeded, 1 failed, 130 cancelled). Exceptions are recorded, not re-raised."""
    repo = repo or Repository.open()
    reap_quietly(repo)     # a worker killed earlier must not stay "running" forever
    job = repo.get_job(job_id)
    if job.cancel_requested or job.status == "cancelled":
        repo.update_job(job_id, status="cancelled", append_log="cancelled before it started\n")
        return 130
    repo.update_job(job_id, status="running", pid=os.getpid(), host=socket.gethostname())
    reporter = JobReporter(repo, job_id)
    try:
        result = work(reporter)
    except JobCancelled:
        repo.update_job(job_id, status="cancelled", append_log="cancelled\n")
        return 130
    except BaseException as exc:  # noqa: BLE001 - record everything, including KeyboardInterrupt
        tb = traceback.format_exc()[-TRACEBACK_CHARS:]
        repo.update_job(job_id, status="failed", append_log=tb,
                        metrics={"error": f"{type(exc).__name__}: {exc}"})
        return 1
    repo.update_job(job_id, status="succeeded", progress=1.0,
                    metrics=dict(result) if isinstance(result, Mapping) else None)
    return 0


def launch(job_id: int, argv: Sequence[str], env: Mapping[str, str] | None = None,
           repo: Repository | None = None) -> subprocess.Popen:
    """Start `python <argv>` detached as the worker of job `job_id`; output goes to its log file."""
    repo = repo or Repository.open()
    reap_quietly(repo)
    path = log_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as out:
        proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
    repo.update_job(job_id, pid=proc.pid, host=socket.gethostname())
    return proc


def wait_and_reap(job_id: int, proc: subprocess.Popen, repo: Repository | None = None,
                  timeout: float | None = None) -> Any:
    """Wait for a launched worker; if it exited without a final status, mark the job failed."""
    repo = repo or Repository.open()
    code = proc.wait(timeout=timeout)
    job = repo.get_job(job_id)
    if job.status in ("queued", "running"):
        tail = log_file_tail(job_id)
        repo.update_job(job_id, status="failed",
                        log_tail=tail + f"\n[worker exited with status {code} without reporting]\n")
    return code
