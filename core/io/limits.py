"""Bounds on what one load may cost, checked before the data is read or decoded.

- `read_regular_file`: only regular files are opened (a FIFO, /dev/zero, a device or a socket is
  refused from its `fstat`, without blocking), and never more than the byte budget is read.
- `inflate`: zlib/gzip/deflate decompression in bounded steps (`decompressobj` with `max_length`),
  refused as soon as the output passes the cap; concatenated gzip members cost linear time.
- `FATAL`: the BaseExceptions that must keep their meaning; every other BaseException a decoder
  raises (e.g. `pyo3_runtime.PanicException` from a Rust decoder) is bad input.
"""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

from core.io.volume import VolumeLoadError

FATAL = (KeyboardInterrupt, SystemExit)
MAX_STUDY_SERIES = 8  # series combined into one multi-sequence study (core.io.study)
_IN_CHUNK = 1 << 16  # compressed bytes fed per step
_OUT_STEP = 1 << 20  # most decompressed bytes produced per step

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a pipe (FIFO)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: Path, max_bytes: int, label: str, check_size=None) -> bytes:
    """The bytes of the regular file `path`: `check_size(size)` (e.g. the upload budget) runs on
    its size before a byte is read, and at most `max_bytes` + 1 bytes are read (a file that grows,
    or a /proc file that says 0). Opened non-blocking and checked with fstat, so a FIFO never
    blocks and a device is never read. `label` names the file in messages ("the file", "file 2
    of 5"): never the file name, which can identify the patient."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise VolumeLoadError(
            f"{label[:1].upper()}{label[1:]} cannot be read ({exc.strerror or type(exc).__name__})."
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VolumeLoadError(
                f"{label[:1].upper()}{label[1:]} is {kind_of(st.st_mode)}, not a regular file; it was not read."
            )
        if check_size is not None:
            check_size(st.st_size)
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise VolumeLoadError(
            f"{label[:1].upper()}{label[1:]} cannot be read ({exc.strerror or type(exc).__name__})."
        ) from None
    finally:
        os.close(fd)


def inflate(data, *, wbits: int, max_bytes: int, what: str) -> bytes:
    """Decompress all of `data` (wbits as in zlib: 16 + 15 gzip with concatenated members, -15 raw
    deflate); VolumeLoadError as soon as the output passes `max_bytes`, or on damaged data."""
    stream = Inflater(data, wbits=wbits)
    if stream.fill(max_bytes + 1) and len(stream.out) > max_bytes:
        raise VolumeLoadError(
            f"{what} unpacks to more than {max_bytes / 2**20:.0f} MB, the most accepted for one file "
            "(NEUROGRADE_MAX_DECODED_MB); it was not read."
        )
    return bytes(stream.out)


class Inflater:
    """Incremental, bounded decompression. Input goes in 64 KB steps, so leftover input is never
    copied more than once per step (concatenated gzip members, even millions of empty ones, cost
    linear time) and output never runs far past what was asked for."""

    def __init__(self, data, *, wbits: int = 16 + zlib.MAX_WBITS):
        self._data = memoryview(data)
        self._pos = 0
        self._wbits = wbits
        self._gzip = wbits > 15
        self._obj = zlib.decompressobj(wbits)
        self.out = bytearray()

    def _next(self) -> bytes:
        chunk = bytes(self._data[self._pos : self._pos + _IN_CHUNK])
        self._pos += len(chunk)
        return chunk

    def fill(self, n: int) -> bool:
        """Decompress until `out` holds >= n bytes; False if the data ended first (cut short, or
        trailing bytes that are not another gzip member)."""
        try:
            while len(self.out) < n:
                if self._obj.eof:
                    if not self._gzip:
                        return False
                    tail = self._obj.unused_data
                    while len(tail) < 2 and self._pos < len(self._data):
                        tail += self._next()
                    if tail[:2] != b"\x1f\x8b":
                        return False
                    self._obj = zlib.decompressobj(self._wbits)
                    src = tail
                elif self._obj.unconsumed_tail:
                    src = self._obj.unconsumed_tail
                elif self._pos < len(self._data):
                    src = self._next()
                else:
                    return False
                self.out += self._obj.decompress(src, min(max(n - len(self.out), 1), _OUT_STEP))
        except zlib.error:
            raise VolumeLoadError(
                "The compressed data is damaged: it cannot be decompressed. The file may have been "
                "cut short during copying or upload."
            ) from None
        return True


# A progressive JPEG repeats scans over the whole image: 2000 scans in 125 KB take 20 s to decode.
# Real pictures have at most ~20 (3 components x progressive passes).
MAX_JPEG_SCANS = 100
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def jpeg_frame(data) -> tuple[int, int] | None:
    """(width, height) of a JPEG / JPEG-LS codestream from its frame header (SOF), or None."""
    data = bytes(data[: 1 << 16])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF and i + 9 <= len(data):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:
            return None
        i += 2 + length
    return None


def j2k_frame(data) -> tuple[int, int] | None:
    """(width, height) of a JPEG 2000 codestream (or JP2 file) from its SIZ marker, or None."""
    head = bytes(data[: 1 << 16])
    at = head.find(b"\xff\x4f\xff\x51")
    if at < 0 or at + 24 > len(head):
        return None
    xsiz, ysiz, xo, yo = (int.from_bytes(head[at + 8 + 4 * k : at + 12 + 4 * k], "big") for k in range(4))
    return max(xsiz - xo, 0), max(ysiz - yo, 0)


def check_jpeg_scans(data, what: str = "The JPEG image") -> None:
    """Refuse a JPEG with more scans than any real picture has (each costs a pass over the image);
    0xFFDA cannot occur inside entropy-coded data (0xFF is stuffed there), so counting is exact."""
    scans = bytes(data).count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise VolumeLoadError(
            f"{what} is made of {scans:,} scans; real pictures have at most a few "
            f"dozen (at most {MAX_JPEG_SCANS} are accepted). It was not decoded."
        )
