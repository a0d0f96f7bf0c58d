"""Safe zip reading: members are read into memory (never extracted to disk by name), with the
member count and total uncompressed size bounded from the zip directory AND while reading,
because a zip's directory can lie about sizes."""

from __future__ import annotations

import io
import posixpath
import zipfile

from core.io.limits import FATAL
from core.io.volume import VolumeLoadError

_CHUNK = 1 << 20
_JUNK_PREFIXES = ("__MACOSX/",)
_JUNK_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


def _unsafe(name: str) -> bool:
    norm = name.replace("\\", "/")
    return norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/")


def _junk(name: str) -> bool:
    base = posixpath.basename(name.replace("\\", "/"))
    return name.startswith(_JUNK_PREFIXES) or base in _JUNK_NAMES or base.startswith("._")


def read_zip(data: bytes, *, max_members: int, max_bytes: int) -> tuple[list[tuple[str, bytes]], list[str]]:
    """[(member name, bytes)] of the regular files in the zip, and warnings."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise VolumeLoadError(
            "The zip archive is damaged or incomplete and cannot be opened "
            f"({type(exc).__name__}). Re-create the zip and upload it again."
        ) from None
    if len(infos) > max_members:
        raise VolumeLoadError(
            f"The zip archive holds {len(infos)} files; at most {max_members} are accepted. "
            "Upload one series at a time."
        )
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise VolumeLoadError(
            f"The zip archive would unpack to {declared / 2**20:.0f} MB; at most "
            f"{max_bytes / 2**20:.0f} MB are accepted. Upload one series at a time."
        )
    warnings: list[str] = []
    unsafe = [i for i in infos if _unsafe(i.filename)]
    if unsafe:
        warnings.append(
            f"{len(unsafe)} archive entr{'y' if len(unsafe) == 1 else 'ies'} with an "
            "unsafe path ('..' or absolute) were skipped."
        )
    members: list[tuple[str, bytes]] = []
    total = 0
    damaged, encrypted, first_damage = 0, 0, ""
    for k, info in enumerate(infos, start=1):
        if info in unsafe or _junk(info.filename):
            continue
        if info.flag_bits & 0x1:
            encrypted += 1
            continue
        buf = bytearray()
        try:
            with archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise VolumeLoadError(
                            "The zip archive unpacks to more than "
                            f"{max_bytes / 2**20:.0f} MB (more than its directory claims); refused."
                        )
                    buf += chunk
        except VolumeLoadError:
            raise
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - one damaged member is skipped, not the zip
            damaged += 1
            # members are named by position only: their names can identify the patient
            first_damage = first_damage or f"file {k} of {len(infos)}: {type(exc).__name__}"
            continue
        members.append((info.filename, bytes(buf)))
    if damaged:
        warnings.append(
            f"{damaged} file(s) in the zip archive are damaged or use an unsupported "
            f"compression method and were skipped (e.g. {first_damage})."
        )
    if encrypted:
        warnings.append(f"{encrypted} password-protected file(s) in the zip archive were skipped.")
    if not members:
        if encrypted and not damaged:
            raise VolumeLoadError("The zip archive is password-protected; upload an unencrypted zip.")
        if damaged:
            raise VolumeLoadError(
                "The zip archive is damaged or uses an unsupported compression method "
                f"({first_damage}); re-create it with standard zip compression."
            )
        if unsafe:
            raise VolumeLoadError(
                "The zip archive holds only entries with unsafe paths ('..' or absolute); nothing was read."
            )
    return members, warnings
