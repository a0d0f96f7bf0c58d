"""Turn what the caller hands us (paths, folders, bytes, uploaded-file objects, zips, or a list
of those) into a flat list of in-memory files, within the configured size limits."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.io import sniff
from core.io.archive import read_zip
from core.io.volume import VolumeLoadError


@dataclass
class Blob:
    name: str          # base name, only for messages (may be "")
    data: bytes
    kind: str | None   # sniffed kind (see core.io.sniff)


class _Budget:
    def __init__(self, settings):
        self.max_bytes = settings.max_upload_mb * 2**20
        self.max_files = settings.max_zip_members
        self.settings = settings
        self.bytes = 0
        self.files = 0

    def take(self, n_bytes: int) -> None:
        self.bytes += n_bytes
        self.files += 1
        if self.bytes > self.max_bytes:
            raise VolumeLoadError(f"The upload is larger than {self.settings.max_upload_mb} MB, "
                                  "the largest accepted (NEUROGRADE_MAX_UPLOAD_MB).")
        if self.files > self.max_files:
            raise VolumeLoadError(f"The upload holds more than {self.max_files} files; "
                                  "upload one series at a time.")


def _read_path(path: Path, budget: _Budget) -> list[tuple[str, bytes]]:
    if path.is_dir():
        out = []
        for root, dirs, files in os.walk(path, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                full = Path(root) / name
                if name.startswith(".") or full.is_symlink() or not full.is_file():
                    continue
                size = full.stat().st_size
                budget.take(size)
                out.append((name, full.read_bytes()))
        if not out:
            raise VolumeLoadError("The folder is empty: no files were found in it.")
        return out
    if not path.exists():
        raise VolumeLoadError(f"File not found: {path.name!r}.")
    try:
        size = path.stat().st_size
        budget.take(size)
        return [(path.name, path.read_bytes())]
    except OSError as exc:
        raise VolumeLoadError(f"The file {path.name!r} cannot be read ({exc.strerror or exc}).") from None


def _read_one(item, filename: str | None, budget: _Budget) -> list[tuple[str, bytes]]:
    if isinstance(item, (str, os.PathLike)):
        return _read_path(Path(item), budget)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        budget.take(len(data))
        return [(filename or "", data)]
    name = getattr(item, "name", None) or filename or ""
    if hasattr(item, "getvalue"):
        data = item.getvalue()
    elif hasattr(item, "read"):
        data = item.read(budget.max_bytes - budget.bytes + 1)
    else:
        raise VolumeLoadError(f"Cannot read a scan from a {type(item).__name__} object.")
    if isinstance(data, str):
        raise VolumeLoadError("The upload is text, not an image file.")
    data = bytes(data)
    budget.take(len(data))
    return [(os.path.basename(str(name)), data)]


def collect(source, filename: str | None, settings) -> tuple[list[Blob], list[str]]:
    """Flat list of files (zips expanded in memory) and warnings."""
    budget = _Budget(settings)
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise VolumeLoadError("Nothing was uploaded.")
    raw: list[tuple[str, bytes]] = []
    for item in items:
        raw.extend(_read_one(item, filename if len(items) == 1 else None, budget))
    blobs: list[Blob] = []
    warnings: list[str] = []
    nested = 0
    for name, data in raw:
        kind = sniff.sniff(data[:1024])
        if kind != sniff.ZIP:
            blobs.append(Blob(name, data, kind))
            continue
        members, zip_warnings = read_zip(data, max_members=settings.max_zip_members,
                                         max_bytes=settings.max_zip_bytes)
        warnings.extend(zip_warnings)
        for member_name, member_data in members:
            member_kind = sniff.sniff(member_data[:1024])
            if member_kind == sniff.ZIP:
                nested += 1
                continue
            blobs.append(Blob(os.path.basename(member_name), member_data, member_kind))
    if nested:
        warnings.append(f"{nested} zip file(s) inside the zip were not opened; upload them separately.")
    return blobs, warnings
