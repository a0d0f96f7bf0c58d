"""Engine and schema: SQLite (WAL) under NEUROGRADE_HOME by default, PostgreSQL through
NEUROGRADE_DB_URL. The schema is created and upgraded only by Alembic (`init_db()` runs
`upgrade head` programmatically; no alembic.ini is needed)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from core.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[tuple[str, int], Engine] = {}
_migrated: set[tuple[str, int]] = set()
_lock = threading.Lock()


def default_url() -> str:
    return get_settings().db_url


def _normalise(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _on_sqlite_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    """A new engine for `url` (default: settings.db_url). Prefer `get_engine()`, which caches."""
    url = _normalise(url or default_url())
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _on_sqlite_connect)
    elif make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url)
        event.listen(engine, "connect", _on_sqlite_connect)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL and process (engines are not shared across fork)."""
    url = _normalise(url or default_url())
    key = (url, os.getpid())
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(url)
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


def alembic_config(url: str | None = None, connection=None):
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", _normalise(url or default_url()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _migration_lock(engine: Engine):
    """Only one process migrates at a time (file lock for SQLite, advisory lock for PostgreSQL)."""
    path = _sqlite_path(engine.url.render_as_string(hide_password=False))
    if path is not None:
        with open(str(path) + ".migrate.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield None
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(7150001)"))
            conn.commit()
            try:
                yield None
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(7150001)"))
                conn.commit()
    else:
        yield None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic `upgrade <revision>` on `engine` (e.g. "0001" to build the first schema)."""
    with _migration_lock(engine):
        with engine.begin() as conn:
            command.upgrade(alembic_config(engine.url.render_as_string(hide_password=False), conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _migration_lock(engine):
        with engine.begin() as conn:
            command.downgrade(alembic_config(engine.url.render_as_string(hide_password=False), conn), revision)


def init_db(url: str | None = None) -> Engine:
    """The engine for `url`, with the schema upgraded to head (once per process and URL)."""
    engine = get_engine(url)
    key = (engine.url.render_as_string(hide_password=False), os.getpid())
    if key in _migrated:
        return engine
    if current_revision(engine) != head_revision():
        upgrade(engine, "head")
    _migrated.add(key)
    return engine
