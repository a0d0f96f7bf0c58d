"""Seeded hostile inputs for `load_volume`: bombs of every kind, truncated and corrupted NIfTI,
DICOM, PNG, JPEG, TIFF and zip files, wrong magic, huge headers, pipes and devices.

Used by the fuzz tests (tests/io/test_io_fuzz.py) and by `python -m core fuzz-io`, which loads
each input in its own process and reports tracebacks, time and peak memory. Nothing here runs at
import time; the big payloads (a 600 MB deflate bomb) are built once per process and cached.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Hostile:
    family: str
    data: bytes | None = None  # bytes handed to load_volume ...
    make: Callable[[Path], object] | None = None  # ... or a source built in a scratch folder

    def source(self, scratch: Path):
        return self.data if self.make is None else self.make(scratch)


# ---------------------------------------------------------------- building blocks
def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, progressive: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


def _tiff(pages: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    imgs = [Image.fromarray(p) for p in pages]
    imgs[0].save(buf, format="TIFF", save_all=True, append_images=imgs[1:])
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, rows_of_zeros: int | None = None) -> bytes:
    """A grey PNG declaring width x height whose IDAT is zeros (tiny when compressed)."""
    rows = height if rows_of_zeros is None else rows_of_zeros
    comp = zlib.compressobj(9)
    line = b"\0" * (width + 1)
    idat = b"".join(comp.compress(line) for _ in range(rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header (SOF) is patched to claim width x height."""
    data = bytearray(_jpeg(np.zeros((8, 8), np.uint8)))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@functools.lru_cache(maxsize=1)
def jpeg_scan_bomb(side: int = 4000, repeats: int = 2000) -> bytes:
    """A progressive JPEG whose last scan is repeated `repeats` times: ~125 KB, each scan a pass
    over side x side pixels (2000 scans took 20 s to decode)."""
    data = _jpeg(np.zeros((side, side), np.uint8), progressive=True)
    last = data.rfind(b"\xff\xda")
    end = data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + b"\xff\xd9"


def dicom_jpeg_size_lie(side: int = 20000) -> bytes:
    """An 8 x 8 JPEG Baseline DICOM whose embedded JPEG claims side x side (decoders size their
    output from the JPEG, not from Rows/Columns)."""
    from pydicom.encaps import encapsulate  # heavy: pydicom, loaded on first use
    from pydicom.uid import JPEGBaseline8Bit  # heavy: pydicom, loaded on first use

    ds = _dicom_dataset(8, 8, 1, bits=8, pixel_bytes=b"", syntax=JPEGBaseline8Bit)
    ds.PixelData = encapsulate([jpeg_with_size(side, side)])
    ds["PixelData"].VR = "OB"
    return _dcm_bytes(ds)


def _nifti(shape, dtype=np.int16, *, fill=0, vox_offset=None, gz=True, header_only=False) -> bytes:
    import nibabel as nib  # heavy: nibabel, loaded on first use

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(np.eye(4), 1)
    head = bytearray(hdr.binaryblock) + b"\0" * 4
    offset = 352 if vox_offset is None else vox_offset
    head[108:112] = struct.pack("<f", float(offset))
    if header_only:
        body_iter = iter(())
    else:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        chunk = bytes([fill]) * min(n, 1 << 20)
        body_iter = (chunk[: min(len(chunk), n - i)] for i in range(0, n, len(chunk)))
    if not gz:
        return bytes(head) + b"".join(body_iter)
    comp = zlib.compressobj(1, zlib.DEFLATED, 16 + 15)
    out = [comp.compress(bytes(head))]
    out += [comp.compress(c) for c in body_iter]
    out.append(comp.flush())
    return b"".join(out)


@functools.lru_cache(maxsize=1)
def _nifti_float64_zeros() -> bytes:
    return _nifti((256, 256, 256), np.float64)


def _dicom_dataset(rows=8, cols=8, frames=1, bits=16, pixel_bytes: bytes | None = None, syntax=None):
    from pydicom.dataset import Dataset, FileMetaDataset  # heavy: pydicom, loaded on first use
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage  # heavy: pydicom, loaded on first use

    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.SeriesInstanceUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.Modality = "MR"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames != 1:
        ds.NumberOfFrames = frames
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelSpacing = [1, 1]
    if pixel_bytes is None:
        pixel_bytes = b"\0" * ((rows * cols * frames * bits + 7) // 8)
    ds.PixelData = pixel_bytes
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    return ds


def _dcm_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_frames_bomb(frames: int = 2_000_000) -> bytes:
    """1 x 1 pixels, 1 bit, `frames` frames: 250 KB of data for 2 million frames."""
    return _dcm_bytes(_dicom_dataset(1, 1, frames, bits=1))


@functools.lru_cache(maxsize=2)
def dicom_deflate_bomb(inflated_mb: int = 600) -> bytes:
    """Deflated Explicit VR Little Endian: a ~0.6 MB file whose data set inflates to ~600 MB."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian  # heavy: pydicom, loaded on first use

    ds = _dicom_dataset(8, 8, syntax=DeflatedExplicitVRLittleEndian)
    saved = _dcm_bytes(ds)  # preamble, "DICM", file meta (group length at 140), data set
    head = saved[: 144 + struct.unpack("<I", saved[140:144])[0]]
    comp = zlib.compressobj(1, zlib.DEFLATED, -15)
    n = inflated_mb << 20
    parts = [comp.compress(b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<I", n))]
    zeros = b"\0" * (1 << 20)
    parts += [comp.compress(zeros) for _ in range(inflated_mb)]
    parts.append(comp.flush())
    return head + b"".join(parts)


@functools.lru_cache(maxsize=1)
def _testdata(name: str) -> bytes | None:
    try:
        from pydicom.data import get_testdata_file  # heavy: pydicom, loaded on first use

        path = get_testdata_file(name)
        return Path(path).read_bytes() if path else None
    except Exception:  # noqa: BLE001 - pydicom's test files may be absent
        return None


def _good_nifti(rng) -> bytes:
    shape = tuple(int(v) for v in rng.integers(4, 12, 3))
    import nibabel as nib  # heavy: nibabel, loaded on first use

    img = nib.Nifti1Image(rng.integers(0, 1000, shape).astype(np.int16), np.eye(4))
    return gzip.compress(img.to_bytes(), mtime=0) if rng.random() < 0.5 else img.to_bytes()


def _good_dicom(rng) -> bytes:
    rows, cols = (int(v) for v in rng.integers(4, 16, 2))
    pix = rng.integers(0, 4000, (rows, cols)).astype(np.uint16).tobytes()
    return _dcm_bytes(_dicom_dataset(rows, cols, pixel_bytes=pix))


def _good_png(rng) -> bytes:
    return _png(rng.integers(0, 256, tuple(int(v) for v in rng.integers(4, 40, 2))).astype(np.uint8))


def _good_jpeg(rng) -> bytes:
    shape = tuple(int(v) for v in rng.integers(8, 48, 2))
    return _jpeg(rng.integers(0, 256, shape).astype(np.uint8), progressive=bool(rng.random() < 0.5))


def _good_zip(rng) -> bytes:
    return _zip({f"s{i}.dcm": _good_dicom(rng) for i in range(int(rng.integers(1, 4)))})


def _zip(members: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


GOOD = {"nifti": _good_nifti, "dicom": _good_dicom, "png": _good_png, "jpeg": _good_jpeg, "zip": _good_zip}


# ---------------------------------------------------------------- mutations
def _truncate(data: bytes, rng) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def _corrupt(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 40))):
        if out:
            out[int(rng.integers(0, len(out)))] = int(rng.integers(0, 256))
    return bytes(out)


def _splice_ints(data: bytes, rng) -> bytes:
    """Overwrite a few 16/32-bit words with extreme values (sizes, lengths, offsets)."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        if len(out) < 8:
            break
        at = int(rng.integers(0, len(out) - 4))
        value = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 0, 1, 0x10000][int(rng.integers(0, 7))]
        out[at : at + 4] = struct.pack("<I", value)
    return bytes(out)


# ---------------------------------------------------------------- families
def _f_truncated(rng):
    kind = list(GOOD)[int(rng.integers(0, len(GOOD)))]
    return Hostile(f"truncated-{kind}", _truncate(GOOD[kind](rng), rng))


def _f_corrupted(rng):
    kind = list(GOOD)[int(rng.integers(0, len(GOOD)))]
    mutate = _corrupt if rng.random() < 0.6 else _splice_ints
    return Hostile(f"corrupted-{kind}", mutate(GOOD[kind](rng), rng))


def _f_wrong_magic(rng):
    kind = list(GOOD)[int(rng.integers(0, len(GOOD)))]
    data = bytearray(GOOD[kind](rng))
    at = {"nifti": 344, "dicom": 128, "png": 1, "jpeg": 2, "zip": 2}[kind]
    if kind == "nifti" and data[:2] == b"\x1f\x8b":
        at = 3
    if len(data) > at + 2:
        data[at : at + 3] = bytes(int(v) for v in rng.integers(0, 256, 3))
    return Hostile(f"wrong-magic-{kind}", bytes(data))


def _f_image_bomb(rng):
    pick = int(rng.integers(0, 6))
    if pick == 5:
        return Hostile("jpeg-scan-bomb", jpeg_scan_bomb())
    if pick == 0:
        return Hostile("png-bomb-declared", png_bomb(60000, 60000, rows_of_zeros=4))
    if pick == 1:
        side = int(rng.integers(4900, 5000))
        return Hostile("png-bomb-within-cap", png_bomb(side, side))
    if pick == 2:
        return Hostile("jpeg-bomb-declared", jpeg_with_size(65000, 65000))
    if pick == 3:
        return Hostile("jpeg-bomb-within-cap", jpeg_with_size(4900, 5000))
    return Hostile("tiff-many-pages", _tiff([np.zeros((2, 2), np.uint8)] * int(rng.integers(100, 400))))


def _f_nifti_bomb(rng):
    pick = int(rng.integers(0, 6))
    if pick == 0:  # within the voxel cap, zeros: gzip ratio ~1000
        return Hostile("nifti-gz-zeros-big", _nifti((64, 64, 64, 200), np.int8))
    if pick == 1:  # bytes bomb: float64 within the voxel cap, zeros
        return Hostile("nifti-gz-float64", _nifti_float64_zeros())
    if pick == 2:
        return Hostile("nifti-vox-offset-huge", _nifti((8, 8, 8), vox_offset=6e9, gz=bool(rng.random() < 0.5)))
    if pick == 3:  # many empty gzip members, then a NIfTI member
        empty = gzip.compress(b"", mtime=0)
        return Hostile("nifti-gz-concatenated", empty * int(rng.integers(50_000, 300_000)) + _nifti((8, 8, 8)))
    if pick == 4:
        return Hostile(
            "nifti-dims-huge", _nifti((4000, 4000, 4000), np.float32, header_only=True, gz=bool(rng.random() < 0.5))
        )
    return Hostile("nifti-64cubed-x1000", _nifti((64, 64, 64, 1000), np.uint8, header_only=True))


def _f_dicom_bomb(rng):
    pick = int(rng.integers(0, 7))
    if pick == 6:
        return Hostile("dicom-jpeg-size-lie", dicom_jpeg_size_lie())
    if pick == 0:
        return Hostile("dicom-frames-bomb", dicom_frames_bomb())
    if pick == 1:
        return Hostile("dicom-frames-bomb-x4", make=lambda d: _write_many(d, [dicom_frames_bomb()] * 4))
    if pick == 2:
        return Hostile("dicom-deflate-bomb", dicom_deflate_bomb())
    if pick == 3:  # huge rows/columns, tiny data
        return Hostile("dicom-huge-dims", _dcm_bytes(_dicom_dataset(65535, 65535, 1, pixel_bytes=b"\0" * 64)))
    if pick == 4:
        if rng.random() < 0.3:  # this damage makes pylibjpeg-rle panic (pyo3_runtime.PanicException)
            return Hostile("dicom-rle-panic", rle_panic())
        return Hostile("dicom-rle-corrupt", _rle_corrupt(rng))
    return Hostile("dicom-fragments-fewer-than-frames", _encapsulated_lie(rng))


def rle_panic() -> bytes:
    """MR_small_RLE.dcm with the damage (seed 275) that makes pylibjpeg-rle 2.x panic: "index out
    of bounds: the len is 8192 but the index is 8192"."""
    return _rle_corrupt(np.random.default_rng(275))


def _rle_corrupt(rng) -> bytes:
    data = _testdata("MR_small_RLE.dcm")
    if data is None:
        return _corrupt(_good_dicom(rng), rng)
    out = bytearray(data)
    at = data.find(b"\xfe\xff\x00\xe0", data.find(b"\xe0\x7f\x10\x00") + 12)  # first fragment
    start = at + 8 if at > 0 else len(out) // 2
    for _ in range(int(rng.integers(1, 12))):  # damage the RLE header / segments
        pos = start + int(rng.integers(0, 64 if rng.random() < 0.7 else max(len(out) - start, 1)))
        if pos < len(out):
            out[pos] = int(rng.integers(0, 256))
    return bytes(out)


def _encapsulated_lie(rng) -> bytes:
    from pydicom.encaps import encapsulate  # heavy: pydicom, loaded on first use
    from pydicom.uid import RLELossless  # heavy: pydicom, loaded on first use

    ds = _dicom_dataset(64, 64, int(rng.integers(1000, 20000)), bits=8, pixel_bytes=b"", syntax=RLELossless)
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    return _dcm_bytes(ds)


def _write_many(folder: Path, blobs: list[bytes]) -> Path:
    folder = folder / "series"
    folder.mkdir(exist_ok=True)
    for i, b in enumerate(blobs):
        (folder / f"{i}.dcm").write_bytes(b)
    return folder


def _f_zip(rng):
    pick = int(rng.integers(0, 4))
    if pick == 0:  # a zip bomb: 3 GB of zeros declared in the directory
        data = bytearray(_zip({"a.dcm": b"\0" * (4 << 20)}))
        cd = data.rfind(b"PK\x01\x02")
        data[cd + 24 : cd + 28] = struct.pack("<I", 3 << 30)
        return Hostile("zip-bomb-declared", bytes(data))
    if pick == 1:  # one damaged member among good ones: the rest must load or fail cleanly
        members = {f"{i}.dcm": _good_dicom(rng) for i in range(3)}
        data = bytearray(_zip(members))
        lh = data.find(b"PK\x03\x04", 10)
        data[lh + 40 : lh + 60] = bytes(20)
        return Hostile("zip-one-damaged-member", bytes(data))
    if pick == 2:
        return Hostile("zip-nested", _zip({"inner.zip": _good_zip(rng), "x.dcm": b"junk"}))
    return Hostile("zip-traversal", _zip({"../../etc/x.dcm": _good_dicom(rng)}))


def _f_special(rng):
    pick = int(rng.integers(0, 4))
    if pick == 0:

        def fifo(d: Path):
            p = d / "pipe.nii"
            os.mkfifo(p)
            return str(p)

        return Hostile("fifo", make=fifo)
    if pick == 1:
        return Hostile("dev-zero", make=lambda d: "/dev/zero")
    if pick == 2:

        def folder(d: Path):
            f = d / "mixed"
            f.mkdir()
            os.mkfifo(f / "pipe.dcm")
            (f / "ok.dcm").write_bytes(_good_dicom(rng))
            (f / "bad.dcm").write_bytes(_rle_corrupt(rng))
            return str(f)

        return Hostile("folder-fifo-and-bad-file", make=folder)
    return Hostile("random-bytes", bytes(rng.integers(0, 256, int(rng.integers(1, 5000))).astype(np.uint8)))


def _f_huge_header(rng):
    pick = int(rng.integers(0, 3))
    if pick == 0:  # a DICOM element claiming 4 GB
        data = bytearray(_good_dicom(rng))
        at = data.find(b"\xe0\x7f\x10\x00")
        data[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFFF0)
        return Hostile("dicom-element-length-huge", bytes(data))
    if pick == 1:  # a TIFF claiming 100000 x 100000
        data = bytearray(_tiff([np.zeros((4, 4), np.uint8)]))
        for tag in (256, 257):
            at = data.find(struct.pack("<HH", tag, 3))
            if at < 0:
                at = data.find(struct.pack("<HH", tag, 4))
                data[at + 8 : at + 12] = struct.pack("<I", 100000)
            else:
                data[at + 8 : at + 10] = struct.pack("<H", 60000)
        return Hostile("tiff-dims-huge", bytes(data))
    data = bytearray(b"BM" + bytes(52))  # a BMP header claiming 50000 x 50000, 24 bit
    data[2:6] = struct.pack("<I", 54)
    data[10:14] = struct.pack("<I", 54)
    data[14:18] = struct.pack("<I", 40)
    data[18:26] = struct.pack("<ii", 50000, 50000)
    data[26:30] = struct.pack("<HH", 1, 24)
    return Hostile("bmp-dims-huge", bytes(data))


FAMILIES = {
    "truncated": (_f_truncated, 6),
    "corrupted": (_f_corrupted, 8),
    "wrong_magic": (_f_wrong_magic, 2),
    "image_bomb": (_f_image_bomb, 2),
    "nifti_bomb": (_f_nifti_bomb, 2),
    "dicom_bomb": (_f_dicom_bomb, 2),
    "zip": (_f_zip, 2),
    "special": (_f_special, 1),
    "huge_header": (_f_huge_header, 1),
}


def generate(n: int, seed: int = 0) -> Iterator[Hostile]:
    """`n` hostile inputs, the same for the same seed. Every family appears once before any
    appears twice; the rest are drawn by weight."""
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    weights = np.array([FAMILIES[k][1] for k in names], float)
    for i in range(n):
        name = names[i] if i < len(names) else names[int(rng.choice(len(names), p=weights / weights.sum()))]
        yield FAMILIES[name][0](np.random.default_rng([seed, i]))
