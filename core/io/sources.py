"""Turn what the caller hands us (paths, folders, bytes, uploaded-file objects, zips, or a list
of those) into a flat list of in-memory files, within the configured size limits."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from core.io import sniff
from core.io.archive import read_zip
from core.io.limits import Inflater, read_regular_file
from core.io.volume import VolumeLoadError

_DICOM_SNIFF_BYTES = 1024  # enough for the 128-byte preamble + "DICM", or an implicit-VR first tag


@dataclass
class Blob:
    name: str  # base name, only for messages (may be "")
    data: bytes
    kind: str | None  # sniffed kind (see core.io.sniff)


class _Budget:
    def __init__(self, settings):
        self.max_bytes = settings.max_upload_mb * 2**20
        self.max_files = settings.max_zip_members
        self.settings = settings
        self.bytes = 0
        self.files = 0

    def check(self, n_bytes: int) -> None:
        """Refuse a file of `n_bytes` before it is read when it would not fit."""
        if self.bytes + n_bytes > self.max_bytes:
            raise VolumeLoadError(
                f"The upload is larger than {self.settings.max_upload_mb} MB, "
                "the largest accepted (NEUROGRADE_MAX_UPLOAD_MB)."
            )

    def take(self, n_bytes: int) -> None:
        self.check(n_bytes)
        self.bytes += n_bytes
        self.files += 1
        if self.files > self.max_files:
            raise VolumeLoadError(f"The upload holds more than {self.max_files} files; upload one series at a time.")


def _read_file(path: Path, budget: _Budget, label: str) -> bytes:
    data = read_regular_file(path, budget.max_bytes - budget.bytes, label, check_size=budget.check)
    budget.take(len(data))
    return data


def _read_path(path: Path, budget: _Budget) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Files are named in messages by position only ("file 2 of 5"): names can identify patients."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VolumeLoadError("File not found: the path given does not exist.") from None
    except OSError as exc:
        raise VolumeLoadError(f"The file cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if not stat.S_ISDIR(st.st_mode):
        return [(path.name, _read_file(path, budget, "the file"))], []
    found: list[Path] = []
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(files) if not name.startswith("."))
    if len(found) > budget.max_files:
        raise VolumeLoadError(
            f"The folder holds {len(found)} files; at most {budget.max_files} are "
            "accepted (NEUROGRADE_MAX_ZIP_MEMBERS). Upload one series at a time."
        )
    out, skipped, unreadable = [], 0, ""
    for k, full in enumerate(found, start=1):
        label = f"file {k} of {len(found)}"
        try:
            mode = full.lstat().st_mode
        except OSError:
            mode = 0
        if not stat.S_ISREG(mode):  # links, pipes, devices, sockets: never opened
            skipped += 1
            continue
        try:
            out.append((full.name, _read_file(full, budget, label)))
        except VolumeLoadError as exc:
            if "NEUROGRADE_MAX" in str(exc):
                raise
            unreadable = unreadable or str(exc)
    warnings = []
    if skipped:
        warnings.append(
            f"{skipped} entr{'y' if skipped == 1 else 'ies'} of the folder that "
            f"{'is' if skipped == 1 else 'are'} not a regular file (links, pipes, "
            "devices) were not read."
        )
    if unreadable:
        warnings.append(f"Some files of the folder could not be read and were skipped ({unreadable.rstrip('.')}).")
    if not out:
        raise VolumeLoadError(
            "The folder is empty: no files were found in it."
            if not found
            else "None of the files in the folder could be read"
            + (f" ({unreadable.rstrip('.')})." if unreadable else ": they are not regular files.")
        )
    return out, warnings


def _read_one(item, filename: str | None, budget: _Budget) -> tuple[list[tuple[str, bytes]], list[str]]:
    if isinstance(item, (str, os.PathLike)):
        return _read_path(Path(item), budget)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        budget.take(len(data))
        return [(filename or "", data)], []
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
    return [(os.path.basename(str(name)), data)], []


def collect(source, filename: str | None, settings) -> tuple[list[Blob], list[str]]:
    """Flat list of files (zips expanded in memory) and warnings."""
    budget = _Budget(settings)
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise VolumeLoadError("Nothing was uploaded.")
    raw: list[tuple[str, bytes]] = []
    warnings: list[str] = []
    for item in items:
        files, read_warnings = _read_one(item, filename if len(items) == 1 else None, budget)
        raw.extend(files)
        warnings.extend(read_warnings)
    blobs: list[Blob] = []
    nested = 0
    for name, data in raw:
        kind = sniff.sniff(data[:1024])
        if kind == sniff.GZIP:
            name, data, kind = _gunzipped_dicom(name, data, settings.max_decoded_bytes)
        if kind != sniff.ZIP:
            blobs.append(Blob(name, data, kind))
            continue
        members, zip_warnings = read_zip(data, max_members=settings.max_zip_members, max_bytes=settings.max_zip_bytes)
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


def _gunzipped_dicom(name: str, data: bytes, max_bytes: int) -> tuple[str, bytes, str]:
    """A gzip-compressed DICOM file (e.g. `*.dcm.gz`, as some archives keep them) unpacked, within
    NEUROGRADE_MAX_DECODED_MB; any other .gz (a NIfTI .nii.gz) is left to its reader."""
    head = Inflater(data)
    head.fill(_DICOM_SNIFF_BYTES)
    if sniff.sniff(bytes(head.out[:_DICOM_SNIFF_BYTES])) != sniff.DICOM:
        return name, data, sniff.GZIP
    stream = Inflater(data)
    if stream.fill(max_bytes + 1):
        raise VolumeLoadError(
            f"The compressed DICOM file unpacks to more than {max_bytes // 2**20} MB "
            "(NEUROGRADE_MAX_DECODED_MB); it was not read."
        )
    return name.removesuffix(".gz"), bytes(stream.out), sniff.DICOM
