"""Clean failure of the home folder and files (issue 14, item 6): a home that is a file, full,
tiny or read-only gives one clear line and a non-zero exit (no traceback); imports are all or
nothing per case with a summary; a killed save leaves no temp file behind; a killed job does not
stay "running"; checksum and unsafe-pickle errors of evaluate / int8 are one-line messages."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import main

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
ENV.pop("NEUROGRADE_DB_URL", None)


def _cli(*args, home, extra_env=None):
    env = {**ENV, "NEUROGRADE_HOME": str(home), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )


def _one_clean_line(proc, *needles):
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_home_that_is_a_file(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    _one_clean_line(_cli("queue", "stats", home=home), "is a file")
    _one_clean_line(_cli("jobs", "list", home=home), "is a file")


def _unshare_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return (
            subprocess.run(
                ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, timeout=30
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


needs_mounts = pytest.mark.skipif(
    not _unshare_ok(), reason="cannot mount a tmpfs in a private mount namespace here (unshare -m needs CAP_SYS_ADMIN)"
)


def _in_tmpfs(tmp_path, options: str, script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) with $M a fresh tmpfs mounted with `options`, in a private namespace."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "$M" && {script}'],
        capture_output=True,
        text=True,
        env={**ENV, "M": str(mnt)},
        cwd=REPO,
        timeout=600,
    )


@needs_mounts
def test_tiny_and_read_only_home(tmp_path):
    py = sys.executable
    tiny = _in_tmpfs(tmp_path, "size=64k", f'NEUROGRADE_HOME="$M/home" {py} -m core queue stats')
    _one_clean_line(tiny, "is full")
    ro = _in_tmpfs(tmp_path, "ro", f'NEUROGRADE_HOME="$M/home" {py} -m core queue stats')
    _one_clean_line(ro, "read-only")


def _images(folder: Path, n: int, size=96) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(40, 255, (size, size), dtype=np.uint8)).save(p)
        out.append(p)
    return out


@needs_mounts
def test_full_disk_mid_import_leaves_only_whole_cases(tmp_path):
    """A real full disk: a 1 MB home fills up during an import of 40 noisy images."""
    _images(tmp_path / "pool", 40, size=160)
    check = tmp_path / "check.py"
    check.write_text(
        textwrap.dedent("""
        import json, sys
        from sqlalchemy import create_engine, text
        eng = create_engine(sys.argv[1])
        with eng.connect() as c:
            cases = c.execute(text("select id from cases")).scalars().all()
            per = c.execute(text("select case_id, count(*) from items group by case_id")).all()
            entries = c.execute(text("select count(*) from queue_entries")).scalar()
        print(json.dumps({"cases": len(cases), "items": dict(per), "entries": entries}))
    """)
    )
    py = sys.executable
    proc = _in_tmpfs(
        tmp_path,
        "size=1m",
        f'NEUROGRADE_HOME="$M/home" {py} -m core queue import {tmp_path / "pool"} '
        f'--task presence --json > {tmp_path / "out.json"}; echo "rc=$?"; '
        f'cat {tmp_path / "out.json"}; {py} {check} "sqlite:///$M/home/neurograde.db"',
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, (proc.stdout, proc.stderr)
    rc = int(lines[0].split("=")[1])
    result, db = json.loads(lines[1]), json.loads(lines[2])
    assert rc == 1 and result["failed"] > 0 and result["stopped"] and "full" in result["stopped"]
    assert result["imported"] + result["skipped"] + result["failed"] == 40
    assert db["cases"] == result["imported"] > 0  # what it says it stored, and no more
    assert all(n == 1 for n in db["items"].values())  # every stored case is whole
    assert db["entries"] == db["cases"]


def test_import_is_per_case_with_a_summary(tmp_path, capsys, monkeypatch):
    """The store refuses the 3rd case (disk full): cases 1-2 stay whole, the rest are reported."""
    from sqlalchemy.exc import OperationalError

    from core.store import Store
    from core.store.repositories import CaseRepository

    _images(tmp_path / "pool", 6)
    (tmp_path / "pool" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    calls = {"n": 0}
    real = CaseRepository.save

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        return real(self, *a, **kw)

    monkeypatch.setattr(CaseRepository, "save", flaky)
    assert main(["queue", "import", str(tmp_path / "pool"), "--task", "presence", "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["imported"] == 2 and res["skipped"] == 1 and res["failed"] == 4
    assert "full" in res["stopped"]
    repo = Store.open()
    assert len(repo.cases.recent()) == 2 and all(c.n_items == 1 for c in repo.cases.recent())
    assert all("img" not in e for e in res["errors"])  # sources by position, not by name


def test_killed_job_is_reaped_when_the_cli_starts(capsys):
    from core.store import Store

    repo = Store.open()
    job = repo.jobs.create("train")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    repo.jobs.update(job, status="running", pid=dead.pid, host=socket.gethostname())
    assert main(["queue", "stats"]) == 0
    assert repo.jobs.get(job).status == "failed"
    assert "without reporting" in repo.jobs.get(job).log_tail


def test_killed_worker_is_reaped_when_the_next_worker_starts():
    from core.store import Store
    from core.store.jobs import run_job

    repo = Store.open()
    stale = repo.jobs.create("train")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    repo.jobs.update(stale, status="running", pid=dead.pid, host=socket.gethostname())
    assert run_job(repo.jobs.create("import"), lambda job: {"ok": 1}, repo) == 0
    assert repo.jobs.get(stale).status == "failed"


KILLED_SAVE = """
import os, signal, sys
import torch
from core.zoo import save_checkpoint
from model_zoo import create

def dying_save(obj, path, *a, **k):
    with open(path, "wb") as fh:
        fh.write(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying_save
save_checkpoint(create("vgg19_slim", 3), {"architecture": "vgg19_slim", "classes": ["a", "b", "c"]},
                "tumor_type", "killed", root=sys.argv[1])
"""


def test_a_kill_during_model_save_leaves_no_temp_file(tmp_path):
    import torch  # noqa: F401 - the zoo needs it

    from core.zoo import save_checkpoint
    from model_zoo import create

    root = tmp_path / "models"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(root)], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = list((root / "tumor_type" / "killed").glob(".model.pt.*"))
    assert left, "the killed save should have left its temp file (else this test proves nothing)"
    save_checkpoint(
        create("vgg19_slim", 3),
        {"architecture": "vgg19_slim", "classes": ["a", "b", "c"]},
        "tumor_type",
        "next",
        root=root,
    )
    assert not any(root.rglob(".model.pt.*")) and not (root / "tumor_type" / "killed").exists()
    assert (root / "tumor_type" / "next" / "model.pt").is_file()


def _user_copy_of_shipped(home: Path, task="grade", version="1.0.0", new="9.9.9") -> Path:
    dst = home / "models" / task / new
    shutil.copytree(REPO / "model_zoo" / "checkpoints" / task / version, dst, ignore=shutil.ignore_patterns("folds"))
    card = json.loads((dst / "card.json").read_text())
    card["version"] = new
    (dst / "card.json").write_text(json.dumps(card))
    return dst


def test_evaluate_checksum_error_is_one_line(tmp_path, capsys):
    from core.config import get_settings

    folder = _user_copy_of_shipped(get_settings().home)
    with open(folder / "model.pt", "ab") as fh:
        fh.write(b"tampered")
    assert main(["evaluate", "--model", "grade@9.9.9", "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err and "Traceback" not in err


def test_int8_unsafe_pickle_is_one_line(tmp_path, fixtures_dir):
    """--precision int8 with observers that hold a pickled callable (sha256 matching the card)."""
    home = tmp_path / "home"
    folder = _user_copy_of_shipped(home)
    marker = tmp_path / "pwned"
    evil = (
        f"import os, torch\nclass E:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'x': E()}}, '{folder / 'int8_observers.pt'}')\n"
    )
    subprocess.run([sys.executable, "-c", evil], env=ENV, cwd=REPO, check=True, timeout=300)
    card = json.loads((folder / "card.json").read_text())
    card["int8"]["sha256"] = hashlib.sha256((folder / "int8_observers.pt").read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    proc = _cli(
        "predict",
        str(fixtures_dir / "figshare_glioma_209.jpg"),
        "--model",
        "grade@9.9.9",
        "--tasks",
        "grade",
        "--precision",
        "int8",
        home=home,
    )
    _one_clean_line(proc, "unsafe pickle")
    assert not marker.exists()


@pytest.mark.parametrize("command", [["users", "list"], ["zoo", "rollback", "presence"], ["jobs", "list"]])
def test_every_command_reports_an_unusable_home_in_one_line(tmp_path, monkeypatch, capsys, command):
    """The CLI entry point guards every command, not only those that guard themselves."""
    from core.cli import main

    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("NEUROGRADE_HOME", str(home))
    monkeypatch.delenv("NEUROGRADE_DB_URL", raising=False)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err
