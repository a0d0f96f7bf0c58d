"""Settings from environment variables, with embedded defaults.

Nothing here touches the disk or a device at import time: call `get_settings()` when a value is
needed, so tests can change the environment and get fresh settings.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
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
    home: Path  # NEUROGRADE_HOME: database, user-trained models, job logs
    db_url: str  # NEUROGRADE_DB_URL: SQLAlchemy URL; default SQLite under home
    device: str  # NEUROGRADE_DEVICE: auto | cpu | cuda | cuda:N | mps
    max_upload_mb: int  # NEUROGRADE_MAX_UPLOAD_MB: largest upload accepted
    max_voxels: int  # NEUROGRADE_MAX_VOXELS: larger volumes are refused before reading
    max_zip_members: int  # NEUROGRADE_MAX_ZIP_MEMBERS
    max_zip_bytes: int  # NEUROGRADE_MAX_ZIP_MB, uncompressed total, in bytes
    max_decoded_bytes: int  # NEUROGRADE_MAX_DECODED_MB: decompressed/decoded data of one file, in bytes
    max_frames: int  # NEUROGRADE_MAX_FRAMES: DICOM frames/slices of one series
    max_image_pixels: int  # NEUROGRADE_MAX_IMAGE_PIXELS: pixels of one 2D picture (Pillow's limit)
    data_dir: Path  # NEUROGRADE_DATA_DIR: the shared real data (absent on a user's machine)
    auth: str = "local"  # NEUROGRADE_AUTH: local (sign-in, user store) | oidc (st.login) | off
    warm_up: bool = True  # NEUROGRADE_WARM_UP: build the active models when the app starts (0: on first use)
    pacs_url: str = ""  # NEUROGRADE_PACS_URL: the PACS's DICOMweb root; empty: no PACS
    pacs_user: str = ""  # NEUROGRADE_PACS_USER: HTTP basic-auth user ("" for none)
    # NEUROGRADE_PACS_PASSWORD: kept out of repr so it never reaches a log, page or error message
    pacs_password: str = field(default="", repr=False)

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
        # 512 x 512 x 256: a float32 copy is 256 MB, so a load stays well under 2 GB
        max_voxels=_int_env("NEUROGRADE_MAX_VOXELS", 512 * 512 * 256),
        max_zip_members=_int_env("NEUROGRADE_MAX_ZIP_MEMBERS", 5000),
        max_zip_bytes=_int_env("NEUROGRADE_MAX_ZIP_MB", 2048) * 1024 * 1024,
        max_decoded_bytes=_int_env("NEUROGRADE_MAX_DECODED_MB", 256) * 1024 * 1024,
        max_frames=_int_env("NEUROGRADE_MAX_FRAMES", 20_000),
        max_image_pixels=_int_env("NEUROGRADE_MAX_IMAGE_PIXELS", 25_000_000),
        data_dir=Path(os.environ.get("NEUROGRADE_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).expanduser(),
        auth=_auth_env(),
        warm_up=os.environ.get("NEUROGRADE_WARM_UP", "1").strip().lower() not in ("0", "false", "no", "off"),
        pacs_url=os.environ.get("NEUROGRADE_PACS_URL", "").strip(),
        pacs_user=os.environ.get("NEUROGRADE_PACS_USER", ""),
        pacs_password=os.environ.get("NEUROGRADE_PACS_PASSWORD", ""),
    )


def _auth_env() -> str:
    """NEUROGRADE_AUTH: sign-in is on unless "off" is set explicitly; an unknown value is an error
    (a typo must never turn sign-in off)."""
    raw = (os.environ.get("NEUROGRADE_AUTH") or "local").strip().lower() or "local"
    if raw not in ("local", "oidc", "off"):
        raise ValueError(f"NEUROGRADE_AUTH must be local, oidc or off, got {raw!r}")
    return raw


class HomeError(RuntimeError):
    """NEUROGRADE_HOME (or the database in it) cannot be used; the message says why and what to do."""


_HOME_FIX = "free some space or set NEUROGRADE_HOME to a writable folder with room"


def home_problem(exc: BaseException, home: Path | None = None) -> str | None:
    """A one-line, actionable description of a disk or database error caused by the home folder
    (full, read-only, missing, a file), or None when `exc` is something else."""
    home = home or get_settings().home
    where = f"NEUROGRADE_HOME ({home})"
    text = str(getattr(exc, "orig", None) or exc).lower()
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text or "no space left" in text:
        return f"{where} is full (no space left on the device): {_HOME_FIX}."
    if (
        code in (errno.EROFS, errno.EACCES, errno.EPERM)
        or "readonly database" in text
        or "read-only file system" in text
    ):
        return f"{where} is read-only (cannot write there): set NEUROGRADE_HOME to a writable folder."
    if code in (errno.ENOTDIR, errno.EEXIST) or (home.exists() and not home.is_dir()):
        return f"{where} is a file, not a folder: set NEUROGRADE_HOME to a folder."
    if code == errno.ENOENT:
        if home.is_dir():  # a file missing inside a usable home: not the home's fault
            return None
        return f"{where} cannot be created (a folder above it is missing): create it or set NEUROGRADE_HOME."
    if "unable to open database file" in text or "disk i/o error" in text or "database disk image" in text:
        return (
            f"the database in {where} cannot be opened ({text.strip()[:80]}): the folder may be "
            f"read-only, full or on a broken disk; {_HOME_FIX}."
        )
    if isinstance(exc, OSError):
        return f"{where} cannot be used ({exc.strerror or exc}): {_HOME_FIX}."
    return None


def check_home(settings: Settings | None = None) -> Path:
    """Create NEUROGRADE_HOME if needed and make sure a file can be written there; HomeError (with
    `home_problem`'s message) otherwise. Touches the disk: call it where the home is about to be used."""
    home = (settings or get_settings()).home
    try:
        if home.exists() and not home.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(home))
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-probe-{os.getpid()}"
        try:
            with open(probe, "wb") as fh:
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise HomeError(home_problem(exc, home) or f"NEUROGRADE_HOME ({home}) cannot be used: {exc}") from None
    return home
