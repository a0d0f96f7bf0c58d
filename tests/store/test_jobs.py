"""Jobs: a worker that raises, one that dies without a word, one that is cancelled."""

import subprocess
import sys
import textwrap

from core.config import REPO_ROOT
from core.store.jobs import launch, run_job, wait_and_reap


def test_exception_marks_job_failed_with_traceback(repo):
    job = repo.jobs.create("train", {"task": "grade"})

    def work(j):
        j.progress(0.25, {"loss": [1.2]})
        j.log("epoch 1 done")
        raise RuntimeError("CUDA out of memory (simulated)")

    assert run_job(job, work, repo) == 1
    view = repo.jobs.get(job)
    assert view.status == "failed" and view.finished_at is not None
    assert "Traceback" in view.log_tail and "CUDA out of memory (simulated)" in view.log_tail
    assert "epoch 1 done" in view.log_tail and view.progress == 0.25
    assert view.metrics["error"].startswith("RuntimeError")
    assert [a.after["status"] for a in repo.audit.entries(entity="job", action="status")] == ["running", "failed"]


def test_success_and_cancel(repo):
    ok = repo.jobs.create("import")
    assert run_job(ok, lambda j: {"cases": 3}, repo) == 0
    assert repo.jobs.get(ok).status == "succeeded" and repo.jobs.get(ok).metrics == {"cases": 3}
    assert repo.jobs.get(ok).progress == 1.0

    stop = repo.jobs.create("train")
    seen = []

    def work(j):
        for epoch in range(10):
            j.check_cancel()
            seen.append(epoch)
            if epoch == 2:
                repo.jobs.request_cancel(stop, actor="ann")  # the user presses cancel
        return {"done": True}

    assert run_job(stop, work, repo) == 130
    assert seen == [0, 1, 2] and repo.jobs.get(stop).status == "cancelled"


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from core.store import Store
    from core.store.jobs import run_job
    repo = Store.open()
    def work(job):
        job.progress(0.5, {"loss": [0.9]})
        print("about to crash", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)      # no chance to report: like a segfault / OOM kill
        repo.models.promote("grade", "v2")               # never reached
    run_job(int(sys.argv[1]), work, repo)
""")


def _crash(repo, tmp_path):
    repo.models.register("grade", "v1")
    repo.models.register("grade", "v2")
    repo.models.promote("grade", "v1")
    job = repo.jobs.create("train", {"task": "grade"})
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    proc = launch(job, [str(script), str(job)], env={"PYTHONPATH": str(REPO_ROOT)}, repo=repo)
    return job, proc


def test_crashed_worker_marked_failed_champion_untouched(repo, tmp_path):
    job, proc = _crash(repo, tmp_path)
    assert wait_and_reap(job, proc, repo, timeout=120) == -9
    view = repo.jobs.get(job)
    assert view.status == "failed"
    assert "about to crash" in view.log_tail and "status -9" in view.log_tail
    assert repo.models.champion("grade").version == "v1"


def test_reap_dead_jobs_finds_vanished_worker(repo, tmp_path):
    job, proc = _crash(repo, tmp_path)
    proc.wait(120)  # the launcher itself went away: nobody reaped
    assert repo.jobs.get(job).status == "running"
    assert repo.jobs.reap_dead() == [job]
    assert repo.jobs.get(job).status == "failed" and "crashed or killed" in repo.jobs.get(job).log_tail
    assert repo.jobs.reap_dead() == []
    out = subprocess.run(
        [sys.executable, "-m", "core", "jobs", "list", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and '"status": "failed"' in out.stdout
