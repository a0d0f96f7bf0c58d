"""Recognise a file's format from its first bytes, never from its name."""

from __future__ import annotations

import struct

NIFTI = "nifti"
GZIP = "gzip"
DICOM = "dicom"
PNG = "png"
JPEG = "jpeg"
TIFF = "tiff"
BMP = "bmp"
ZIP = "zip"
IMAGE_KINDS = (PNG, JPEG, TIFF, BMP)

LABELS = {
    NIFTI: "a NIfTI image",
    GZIP: "a gzip-compressed file",
    DICOM: "a DICOM file",
    PNG: "a PNG image",
    JPEG: "a JPEG image",
    TIFF: "a TIFF image",
    BMP: "a BMP image",
    ZIP: "a zip archive",
}


def _is_nifti(head: bytes) -> bool:
    if len(head) < 348:
        return False
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348 and head[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def _is_headerless_dicom(head: bytes) -> bool:
    # No 128-byte preamble: the data set starts with a group 0x0002 or 0x0008 tag (little endian),
    # then either an explicit VR (two upper-case letters) or an implicit 4-byte length.
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    return head[3] == 0 or (head[4:6].isalpha() and head[4:6].isupper())


def sniff(head: bytes) -> str | None:
    """The kind of file whose first bytes (>= 540 of them where available) are `head`."""
    if head[128:132] == b"DICM":  # first: the 128-byte preamble may itself look like TIFF
        return DICOM
    if head[:2] == b"\x1f\x8b":
        return GZIP
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return PNG
    if head[:3] == b"\xff\xd8\xff":
        return JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[:2] == b"BM" and len(head) > 26:
        return BMP
    if _is_nifti(head):
        return NIFTI
    if _is_headerless_dicom(head):
        return DICOM
    return None


def claimed_kind(name: str | None) -> str | None:
    """The kind a file name's extension suggests (only used to warn when content disagrees)."""
    if not name:
        return None
    low = name.lower()
    for ext, kind in (
        (".nii.gz", NIFTI),
        (".nii", NIFTI),
        (".dcm", DICOM),
        (".png", PNG),
        (".jpg", JPEG),
        (".jpeg", JPEG),
        (".tif", TIFF),
        (".tiff", TIFF),
        (".zip", ZIP),
        (".gz", GZIP),
        (".bmp", BMP),
    ):
        if low.endswith(ext):
            return kind
    return None
