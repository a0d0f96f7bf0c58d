"""Store fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL: NEUROGRADE_TEST_PG_URL (a server where the user may CREATE DATABASE), else a throwaway
cluster started here with Debian's initdb/pg_ctl (as the `postgres` user when running as root),
else the PostgreSQL variants are skipped with the reason (they fail instead when
NEUROGRADE_REQUIRE_PG=1, so CI cannot pass by silently skipping them).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_ENV = "NEUROGRADE_TEST_PG_URL"


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_local_cluster():
    """(url, stop) of a throwaway cluster, or (None, reason)."""
    bindir = _pg_bindir()
    if bindir is None:
        return None, "no PostgreSQL binaries (apt-get install postgresql)"
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return None, "running as root without runuser"
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no postgres user"
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="ng-pg-"))
    if prefix:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = root / "data", _free_port()

    def run(*cmd):
        return subprocess.run([*prefix, *map(str, cmd)], capture_output=True, text=True, timeout=60)

    r = run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
    if r.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        return None, f"initdb failed: {r.stderr.strip()[-300:]}"
    opts = (
        f"-p {port} -k {root} -c listen_addresses=localhost -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    r = run(bindir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-t", "60", "-o", opts, "start")
    if r.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        return None, f"pg_ctl start failed: {(r.stderr + log).strip()[-300:]}"

    def stop():
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql+psycopg://postgres@localhost:{port}/postgres", stop


@pytest.fixture(scope="session")
def pg_server():
    """Admin URL of a PostgreSQL server, or None (with `pg_server_reason`)."""
    url = os.environ.get(PG_ENV)
    if url:
        yield url, ""
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield None, "psycopg is not installed"
        return
    url, stop_or_reason = _start_local_cluster()
    if url is None:
        yield None, stop_or_reason
        return
    try:
        yield url, ""
    finally:
        stop_or_reason()


def _fresh_pg_database(admin_url: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ng_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # no CREATEDB right: reset the given database's schema instead
        admin.dispose()
        eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        eng.dispose()
        return admin_url, lambda: None
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, monkeypatch):
    """A fresh, empty database URL (no schema yet); NEUROGRADE_DB_URL points at it."""
    from core.store.db import dispose_engines

    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp_path / 'store.db'}", (lambda: None)
    else:
        admin, reason = request.getfixturevalue("pg_server")
        if admin is None:
            if os.environ.get("NEUROGRADE_REQUIRE_PG"):
                pytest.fail(f"PostgreSQL unavailable but NEUROGRADE_REQUIRE_PG is set: {reason}")
            pytest.skip(f"PostgreSQL unavailable: {reason}")
        url, cleanup = _fresh_pg_database(admin)
    monkeypatch.setenv("NEUROGRADE_DB_URL", url)
    yield url
    dispose_engines()
    cleanup()


@pytest.fixture
def repo(db_url):
    from core.store import Store

    return Store.open(db_url)
