"""Settings from environment variables, with embedded defaults.

Nothing here touches the disk or a device at import time: call `get_settings()` when a value is
needed, so tests can change the environment and get fresh settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(float(raw))
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    home: Path                 # NEUROGRADE_HOME: database, user-trained models, job logs
    db_url: str                # NEUROGRADE_DB_URL: SQLAlchemy URL; default SQLite under home
    device: str                # NEUROGRADE_DEVICE: auto | cpu | cuda | cuda:N | mps
    max_upload_mb: int         # NEUROGRADE_MAX_UPLOAD_MB: largest upload accepted
    max_voxels: int            # NEUROGRADE_MAX_VOXELS: larger volumes are refused before reading
    max_zip_members: int       # NEUROGRADE_MAX_ZIP_MEMBERS
    max_zip_bytes: int         # NEUROGRADE_MAX_ZIP_MB, uncompressed total, in bytes
    data_dir: Path             # NEUROGRADE_DATA_DIR: the shared real data (absent on a user's machine)

    @property
    def models_dir(self) -> Path:
        """Versions trained by users live here; shipped versions live in model_zoo/checkpoints."""
        return self.home / "models"


def get_settings() -> Settings:
    home = Path(os.environ.get("NEUROGRADE_HOME", "~/.neurograde")).expanduser()
    db_url = os.environ.get("NEUROGRADE_DB_URL") or f"sqlite:///{home / 'neurograde.db'}"
    return Settings(
        home=home,
        db_url=db_url,
        device=os.environ.get("NEUROGRADE_DEVICE", "auto").strip().lower() or "auto",
        max_upload_mb=_int_env("NEUROGRADE_MAX_UPLOAD_MB", 1024),
        max_voxels=_int_env("NEUROGRADE_MAX_VOXELS", 512 * 512 * 1024),
        max_zip_members=_int_env("NEUROGRADE_MAX_ZIP_MEMBERS", 5000),
        max_zip_bytes=_int_env("NEUROGRADE_MAX_ZIP_MB", 2048) * 1024 * 1024,
        data_dir=Path(os.environ.get("NEUROGRADE_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).expanduser(),
    )
