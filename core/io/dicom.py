"""DICOM files (one file, a series, several series, enhanced multi-frame, compressed) -> Volume."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings as _warnings

import numpy as np
import pydicom
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from core.io import deid, orient
from core.io.acquisition import acquisition
from core.io.dicom_stack import Slice, stack
from core.io.limits import FATAL, MAX_JPEG_SCANS, Inflater, j2k_frame, jpeg_frame
from core.io.volume import Volume, VolumeLoadError

MODALITY_NAMES = {
    "MR": "MR",
    "CT": "CT (computed tomography)",
    "PT": "PET",
    "NM": "nuclear medicine",
    "US": "ultrasound",
    "CR": "radiograph",
    "DX": "radiograph",
    "XA": "angiography",
    "MG": "mammography",
    "SEG": "segmentation",
    "SR": "structured report",
    "RTSTRUCT": "radiotherapy structure set",
    "RTDOSE": "radiotherapy dose",
    "RTPLAN": "radiotherapy plan",
    "OT": "OT ('other')",
    "SC": "secondary capture",
    "PR": "presentation state",
    "KO": "key object selection",
    "DOC": "document",
}


@contextlib.contextmanager
def _quiet():
    """pydicom warns and logs about odd values, quoting them: keep header values out of logs."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _read(blob, max_bytes: int | None = None):
    force = blob.data[128:132] != b"DICM"
    with _quiet():
        if max_bytes is not None and b"1.2.840.10008.1.2.1.99" in blob.data:  # cheap pre-filter
            _check_deflated(blob.data, force, max_bytes)
        ds = pydicom.dcmread(io.BytesIO(blob.data), force=force)
        ds.get("PixelData")  # element parsing is lazy: force the main element to be read
        for keyword in (
            "Modality",
            "SeriesInstanceUID",
            "Rows",
            "Columns",
            "SOPClassUID",
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "NumberOfFrames",
        ):
            ds.get(keyword)
    return ds


def _check_deflated(data: bytes, force: bool, max_bytes: int) -> None:
    """A Deflated Explicit VR Little Endian data set is inflated whole by pydicom: measure what it
    inflates to first, in bounded steps, and refuse it past the cap (3 MB can inflate to 3 GB)."""
    fp = DicomBytesIO(data)
    try:
        read_preamble(fp, force)
        meta = _read_file_meta_info(fp)
    except Exception:  # noqa: BLE001 - no readable file meta: pydicom will not inflate either
        return
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        stream = Inflater(memoryview(data)[fp.tell() :], wbits=-15)
        if stream.fill(max_bytes + 1) and len(stream.out) > max_bytes:
            raise _PixelError(
                f"its deflated data unpacks to more than {max_bytes / 2**20:.0f} MB, "
                "the most accepted for one file (NEUROGRADE_MAX_DECODED_MB)"
            )


def _geometry(ds) -> tuple[int, int, int, int, int]:
    """(rows, columns, frames, samples per pixel, bits allocated) of an image object, checked."""
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise _PixelError("its image size attributes are not numbers") from None
    if rows < 1 or cols < 1 or frames < 1 or samples not in (1, 3, 4) or bits not in (1, 8, 16, 32, 64):
        raise _PixelError(
            "its image size attributes are missing or impossible (rows, columns, frames, samples or bits)"
        )
    return rows, cols, frames, samples, bits


def _check_pixels(ds, limits) -> None:
    """Frames x rows x columns x samples x bits, checked against the caps and against the bytes
    present, before anything is decoded."""
    if not _is_image(ds) or limits is None:
        return
    rows, cols, frames, samples, bits = _geometry(ds)
    if frames > limits.max_frames:
        raise _PixelError(
            f"it holds {frames:,} frames; at most {limits.max_frames:,} are accepted (NEUROGRADE_MAX_FRAMES)"
        )
    if rows * cols * frames > limits.max_voxels:
        raise _PixelError(
            f"it holds {rows * cols * frames:,} voxels; at most {limits.max_voxels:,} "
            "are accepted (NEUROGRADE_MAX_VOXELS)"
        )
    decoded = (rows * cols * frames * samples * bits + 7) // 8
    if decoded > limits.max_decoded_bytes:
        raise _PixelError(
            f"its pixels would take {decoded / 2**20:,.0f} MB decoded; at most "
            f"{limits.max_decoded_bytes / 2**20:,.0f} MB are accepted for one file "
            "(NEUROGRADE_MAX_DECODED_MB)"
        )
    if "PixelData" not in ds:
        return
    try:
        syntax = ds.file_meta.TransferSyntaxUID
        compressed = syntax.is_compressed
    except Exception:  # noqa: BLE001 - no file meta: read as uncompressed
        compressed = False
    value = ds.PixelData
    if value is None:
        raise _PixelError("image data missing or shorter than the header says")
    if not compressed:
        if len(value) < decoded:
            raise _PixelError("image data missing or shorter than the header says")
        return
    # encapsulated: a fragment never holds more than one frame (PS3.5 A.4)
    try:
        buf = io.BytesIO(value)
        parse_basic_offsets(buf)
        n_fragments, offsets = parse_fragments(buf)
    except Exception:  # noqa: BLE001
        raise _PixelError("its compressed image data is damaged") from None
    if n_fragments < frames:
        raise _PixelError(f"its compressed image data holds {n_fragments:,} fragment(s) for {frames:,} frames")
    # a decoder sizes its output from the codestream's own header, not from Rows/Columns: a
    # 1 KB JPEG claiming 20000 x 20000 inside an 8 x 8 DICOM would decode to 400 MB
    view = memoryview(value)
    for at in offsets:
        frag = view[at + 8 : at + 8 + (1 << 16)]
        size = jpeg_frame(frag) or j2k_frame(frag)
        if size is not None and (size[0] > cols or size[1] > rows):
            raise _PixelError(f"its compressed image is {size[0]} x {size[1]} pixels inside a {cols} x {rows} image")
    is_jpeg = bool(offsets) and bytes(view[offsets[0] + 8 : offsets[0] + 10]) == b"\xff\xd8"
    if is_jpeg and bytes(view).count(b"\xff\xda") > MAX_JPEG_SCANS * frames:
        raise _PixelError("its JPEG data holds more scans than any real image")


def _is_directory(ds) -> bool:
    try:
        return ds.file_meta.get("MediaStorageSOPClassUID") == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds
    except Exception:  # noqa: BLE001
        return False


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _PixelError) else type(exc).__name__


def _complete(ds) -> bool:
    """False for an image object whose pixel data is missing or cut short."""
    if _is_image(ds):
        try:
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                return True
            expected = (
                int(ds.Rows)
                * int(ds.Columns)
                * _n_frames(ds)
                * int(ds.get("SamplesPerPixel") or 1)
                * int(ds.BitsAllocated)
            ) // 8
            return len(ds.PixelData) >= expected
        except Exception:  # noqa: BLE001 - missing attributes: let the decoder report it
            return True
    return "Image Storage" not in _kind(ds) or "PixelData" in ds


def _n_frames(ds) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _floats(value, n: int):
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _kind(ds) -> str:
    """The SOP class by its registered name; "unknown" for anything else (a file-supplied UID
    string is free text)."""
    try:
        uid = ds.SOPClassUID
        return uid.name if uid.is_valid and uid.name != str(uid) else "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def _is_image(ds) -> bool:
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


def read_dicom(blobs, *, series=None, allow_ct=False, max_voxels: int, sequences=None, limits=None) -> Volume:
    """limits: the settings (max_voxels, max_frames, max_decoded_bytes) checked per file and per
    series before any pixel data is decoded; None: only max_voxels, for the series."""
    with _quiet():
        return _read_dicom(
            blobs, series=series, allow_ct=allow_ct, max_voxels=max_voxels, sequences=sequences, limits=limits
        )


def parse_dicom(blobs, limits=None) -> DicomUpload:
    """The upload's headers, parsed once and grouped by series; pixels are decoded only when a
    series' volume is asked for."""
    with _quiet():
        return _parse(blobs, limits)


class DicomUpload:
    """The readable datasets of an upload, grouped by series (key: `series_key`)."""

    def __init__(self, datasets, position, warnings, tokens, n_files):
        self.position, self.warnings, self.tokens, self.n_files = position, warnings, tokens, n_files
        self.by_uid: dict[str, list] = {}
        for ds in datasets:
            self.by_uid.setdefault(series_key(ds.get("SeriesInstanceUID")), []).append(ds)
        self.summary = _summaries(self.by_uid, tokens)

    def identity(self, uid: str) -> tuple[str, str]:
        """(StudyInstanceUID, PatientID) of a series as found: only to check that series belong
        together, never stored nor shown."""
        first = self.by_uid[uid][0]
        with _quiet():
            return str(first.get("StudyInstanceUID") or ""), str(first.get("PatientID") or "")

    def acquisition(self, uid: str) -> dict:
        """The series' de-identified acquisition attributes (header only, nothing decoded)."""
        with _quiet():
            return _acquisition([ds for ds in self.by_uid[uid] if _is_image(ds)], self.tokens)

    def volume(self, uid: str, *, allow_ct=False, max_voxels: int, limits=None) -> Volume:
        """One series as a Volume, as `read_dicom(series=uid)` reads it, without the upload's warnings."""
        with _quiet():
            _check_modality(next(s for s in self.summary if s["uid"] == uid), allow_ct)
            return _series_volume(self, uid, [], max_voxels=max_voxels, sequences=None, limits=limits)


def _read_dicom(blobs, *, series, allow_ct, max_voxels: int, sequences, limits=None) -> Volume:
    return read_series(
        _parse(blobs, limits),
        series=series,
        allow_ct=allow_ct,
        max_voxels=max_voxels,
        sequences=sequences,
        limits=limits,
    )


def read_series(
    upload: DicomUpload,
    *,
    series=None,
    allow_ct=False,
    max_voxels: int,
    sequences=None,
    limits=None,
    warnings: list[str] | None = None,
) -> Volume:
    """The series `series` of a parsed upload (default: the largest MR series), saying that the
    upload holds others."""
    with _quiet():
        uid = _choose(upload.summary, series, allow_ct)
        warnings = list(upload.warnings) + list(warnings or [])
        if len(upload.summary) > 1:
            warnings.append(
                f"The upload holds {len(upload.summary)} DICOM series; series "
                f"#{summary_index(upload.summary, uid)} was loaded (choose another with "
                "the series option)."
            )
        return _series_volume(upload, uid, warnings, max_voxels=max_voxels, sequences=sequences, limits=limits)


def _parse(blobs, limits) -> DicomUpload:
    datasets, unreadable, first_error = [], 0, ""
    position: dict[int, int] = {}  # id(ds) -> its file number, for messages
    for n, blob in enumerate(blobs):
        try:
            ds = _read(blob, limits.max_decoded_bytes if limits is not None else None)
            if _is_directory(ds):
                continue  # a DICOMDIR index: its images are read from their own files
            if not _complete(ds):
                raise _PixelError("image data missing or shorter than the header says")
            _check_pixels(ds, limits)
            datasets.append(ds)
            position[id(ds)] = n
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - pydicom raises many types on broken files
            unreadable += 1
            # files are named by position only: uploaded file names can identify the patient
            first_error = first_error or f"file {n + 1} of {len(blobs)}: {_reason(exc)}"
    if not datasets:
        if not unreadable:
            raise VolumeLoadError(
                "The upload holds only a DICOMDIR index, without the image files "
                "it lists. Upload the whole folder or zip."
            )
        raise VolumeLoadError(
            f"The DICOM file could not be read ({first_error}). It is damaged or cut short (incomplete)."
            if len(blobs) == 1
            else f"None of the {len(blobs)} DICOM files could be read (e.g. {first_error})."
        )
    warnings: list[str] = []
    if unreadable:
        warnings.append(f"{unreadable} damaged DICOM file(s) could not be read and were skipped (e.g. {first_error}).")
    tokens: set[str] = set()
    for ds in datasets:
        tokens |= deid.identifying_tokens(ds)
    return DicomUpload(datasets, position, warnings, tokens, len(blobs))


def _series_volume(parsed: DicomUpload, uid: str, warnings: list[str], *, max_voxels: int, sequences, limits) -> Volume:
    """The series `uid` of a parsed upload as a Volume; `warnings` (the caller's) are added to."""
    summary, tokens, position = parsed.summary, parsed.tokens, parsed.position
    chosen = parsed.by_uid[uid]
    images = [ds for ds in chosen if _is_image(ds)]
    skipped = len(chosen) - len(images)
    if skipped:
        warnings.append(f"{skipped} object(s) without image data in this series were ignored.")
    modality = deid.modality(images[0].get("Modality"))
    if modality == "CT":
        warnings.append(
            "This is a CT scan. The models were trained on MRI only: their outputs on CT are not meaningful."
        )
    n_vox = sum(int(ds.get("Rows") or 0) * int(ds.get("Columns") or 0) * _n_frames(ds) for ds in images)
    if n_vox > max_voxels:
        raise VolumeLoadError(
            f"The series has {n_vox:,} voxels; at most {max_voxels:,} are accepted "
            "(NEUROGRADE_MAX_VOXELS). It was not read."
        )
    if limits is not None:
        n_frames = sum(_n_frames(ds) for ds in images)
        if n_frames > limits.max_frames:
            raise VolumeLoadError(
                f"The series has {n_frames:,} images (frames); at most "
                f"{limits.max_frames:,} are accepted (NEUROGRADE_MAX_FRAMES). "
                "It was not read."
            )
        n_bytes = sum((lambda g: (g[0] * g[1] * g[2] * g[3] * g[4] + 7) // 8)(_geometry(ds)) for ds in images)
        if n_bytes > limits.max_decoded_bytes:
            raise VolumeLoadError(
                f"The series would take {n_bytes / 2**20:,.0f} MB decoded; at most "
                f"{limits.max_decoded_bytes / 2**20:,.0f} MB are accepted "
                "(NEUROGRADE_MAX_DECODED_MB). It was not read."
            )
    images, decoded, decode_warnings = _decode_all(images, position, parsed.n_files)
    warnings += decode_warnings
    enhanced = any("PerFrameFunctionalGroupsSequence" in ds for ds in images)
    slices: list[Slice] = []
    for ds in images:
        slices.extend(_frames(ds, decoded) if enhanced else _classic(ds, decoded))
    try:
        data, affine, names, stack_warnings = stack(slices, sequences)
    except VolumeLoadError:
        raise
    except _PixelError as exc:
        raise VolumeLoadError(str(exc)) from None
    warnings += stack_warnings
    data, bad = orient.finite(data)
    warnings += bad
    source_codes = orient.axcodes(affine)
    array, can_affine, spacing, orient_warnings = orient.canonical(data, affine)
    warnings += orient_warnings
    if array.ndim == 4:
        channels = {n: np.ascontiguousarray(array[..., i]) for i, n in enumerate(names)}
    else:
        channels = {names[0]: array}
    active = channels[names[0]]
    meta = deid.dicom_meta(images[0], tokens)
    meta.update(
        {
            "source_orientation": source_codes,
            "n_images": len(images),
            "transfer_syntax": _syntax_name(images[0]),
            # evidence for the input gate; every string in it checked like the fields above
            "acquisition": _acquisition(images, tokens),
        }
    )
    if any(deid.burned_in(ds) for ds in images[:16]):
        warnings.append(
            "The header says the image may show text burned into the pixels (a screen "
            "capture or BurnedInAnnotation YES): identity may be visible in the images."
        )
    summary = [dict(s, selected=s["uid"] == uid) for s in summary]
    return Volume(
        array=active,
        spacing=spacing,
        affine=can_affine,
        modality=modality,
        source_format="dicom-enhanced" if enhanced else "dicom",
        channels=channels,
        meta=meta,
        warnings=warnings,
        series=summary,
    )


def _acquisition(images, tokens: set[str]) -> dict:
    """The gate's evidence (core.io.acquisition) with every string in it de-identified."""
    acq = deid.scrub(acquisition(images, tokens), tokens)
    if "Modality" in acq:
        acq["Modality"] = deid.modality(acq["Modality"])
    return acq


def series_key(series_uid) -> str:
    """A pseudonym for a SeriesInstanceUID: UIDs can be traced back to a patient (PS3.15), so the
    summaries, the UI and the store only ever see this key. The raw UID is accepted as input too."""
    uid = str(series_uid or "").strip()
    return "series-" + hashlib.sha256(uid.encode()).hexdigest()[:12] if uid else "series-unknown"


def summary_index(summary, uid) -> int:
    return next(s["index"] for s in summary if s["uid"] == uid)


def _syntax_name(ds) -> str:
    try:
        uid = ds.file_meta.TransferSyntaxUID
        return uid.name if uid.is_valid and uid.name != str(uid) else "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def _summaries(by_uid: dict, tokens: set[str]) -> list[dict]:
    rows = []
    for uid, items in by_uid.items():
        first = next((ds for ds in items if _is_image(ds)), items[0])
        images = [ds for ds in items if _is_image(ds)]
        try:
            number = int(first.get("SeriesNumber")) if first.get("SeriesNumber") is not None else None
        except (TypeError, ValueError):
            number = None
        description = str(first.get("SeriesDescription", "") or "")
        rows.append(
            {
                "uid": uid,
                "number": number,
                "description": deid.redact(description, tokens) if description else "",
                "modality": deid.modality(first.get("Modality")),
                "kind": _kind(first),
                "n_images": len(images),
                "n_slices": sum(_n_frames(ds) for ds in images),
                "rows": int(first.get("Rows") or 0) if images else 0,
                "columns": int(first.get("Columns") or 0) if images else 0,
                "selected": False,
            }
        )
    rows.sort(key=lambda r: (r["number"] is None, r["number"] or 0, r["uid"]))
    for i, row in enumerate(rows):
        row["index"] = i
    return rows


def _describe(s: dict) -> str:
    what = MODALITY_NAMES.get(s["modality"], s["modality"])
    if s["modality"] in ("", "UNKNOWN"):
        what = "unknown-modality"
    article = "an" if what[:1].lower() in "aeiou" else "a"
    if not s["n_slices"]:
        return f"{article} {what} object without images ({s['kind']})"
    return f"{article} {what} series of {s['n_slices']} image(s)"


def _choose(summary: list[dict], series, allow_ct: bool) -> str:
    if series is not None and str(series) != "":
        for s in summary:
            if (
                s["uid"] in (str(series), series_key(series))
                or (isinstance(series, int) or str(series).isdigit())
                and int(series) == s["index"]
            ):
                return _check_modality(s, allow_ct)
        raise VolumeLoadError(
            f"Series {series!s} is not in this upload; it holds "
            f"{len(summary)} series: " + ", ".join(f"#{s['index']} {s['uid']}" for s in summary)
        )
    images = [s for s in summary if s["n_slices"]]
    if not images:
        found = "; ".join(_describe(s) for s in summary[:3])
        raise VolumeLoadError(f"This DICOM upload holds no images, only {found}. Upload the MR image series itself.")
    mr = [s for s in images if s["modality"] == "MR"]
    ct = [s for s in images if s["modality"] == "CT"] if allow_ct else []
    pool = mr or ct
    if not pool:
        return _check_modality(max(images, key=lambda s: s["n_slices"]), allow_ct)
    return max(pool, key=lambda s: s["n_slices"])["uid"]


def _check_modality(s: dict, allow_ct: bool) -> str:
    if not s["n_slices"]:
        raise VolumeLoadError(f"The selected DICOM series is {_describe(s)}; it holds no image to show.")
    if s["modality"] == "MR" or (s["modality"] == "CT" and allow_ct):
        return s["uid"]
    hint = " To view a CT scan anyway, allow CT (allow_ct / --allow-ct)." if s["modality"] == "CT" else ""
    raise VolumeLoadError(f"This is {_describe(s)}, not an MR scan. NeuroGrade reads brain MRI only.{hint}")


class _PixelError(Exception):
    pass


def _decode_all(images, position: dict, n_files: int):
    """Decode every image object of the chosen series now: one that fails (damaged data, a
    decoder that gives up or panics) is reported as "file k of N" and left out, never aborting
    the others. Returns (images kept, {id(ds): pixels}, warnings)."""
    kept, decoded, failed, first = [], {}, 0, None
    for ds in images:
        try:
            arr = _decode(ds)
            frames = _n_frames(ds)
            if frames > 1 and (arr.ndim != 3 or arr.shape[0] != frames):
                raise _PixelError("A DICOM image could not be decoded: it holds fewer frames than its header says.")
        except _PixelError as exc:
            failed += 1
            first = first or (exc, position.get(id(ds), 0) + 1)
            continue
        kept.append(ds)
        decoded[id(ds)] = arr
    if not kept:
        raise VolumeLoadError(
            str(first[0])
            if len(images) == 1
            else f"None of the {len(images)} DICOM images could be decoded (e.g. file "
            f"{first[1]} of {n_files}: {str(first[0]).rstrip('.')})."
        )
    warnings = []
    if failed:
        warnings.append(
            f"{failed} DICOM image(s) could not be decoded and were skipped (e.g. file "
            f"{first[1]} of {n_files}: {str(first[0]).rstrip('.')})."
        )
    return kept, decoded, warnings


def _decode(ds) -> np.ndarray:
    try:
        with _quiet():
            arr = ds.pixel_array
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - incl. pyo3_runtime.PanicException (pylibjpeg-rle)
        syntax = _syntax_name(ds)
        if "missing required element" in str(exc).lower() or isinstance(exc, AttributeError):
            reason = "required image attributes are missing"
        elif (
            "unable to decode" in str(exc).lower()
            or "no pixel data decoders" in str(exc).lower()
            or "plugin" in str(exc).lower()
        ):
            reason = f"its compression ({syntax}) cannot be decoded here"
        else:
            reason = "the pixel data is incomplete or damaged (the file may be cut short)"
        raise _PixelError(f"A DICOM image could not be decoded: {reason}.") from None
    arr = np.asarray(arr)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3:
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    arr = arr.astype(np.float32)
    if photometric == "MONOCHROME1":  # 0 = white: invert over the stored range, same for all slices
        arr = float(2 ** int(ds.get("BitsStored") or 16) - 1) - arr
    return arr


def _rescale(arr: np.ndarray, slope, intercept) -> np.ndarray:
    try:
        slope = float(slope) if slope not in (None, "") else 1.0
        intercept = float(intercept) if intercept not in (None, "") else 0.0
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    if slope != 1.0 or intercept != 0.0:
        arr = arr * np.float32(slope) + np.float32(intercept)
    return arr


def _pixel_spacing(value) -> tuple[float, float]:
    sp = _floats(value, 2) if value is not None else None
    return (float(sp[0]), float(sp[1])) if sp is not None and (sp > 0).all() else (1.0, 1.0)


def _thickness(item) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(item.get(keyword))
        except (TypeError, ValueError):
            continue
        if np.isfinite(v) and v > 0:
            return abs(v)
    return None


def _classic(ds, decoded: dict | None = None) -> list[Slice]:
    cache: dict = {}

    def frame(idx):
        def get():
            if "arr" not in cache:
                raw = decoded.pop(id(ds)) if decoded and id(ds) in decoded else _decode(ds)
                cache["arr"] = _rescale(raw, ds.get("RescaleSlope"), ds.get("RescaleIntercept"))
            arr = cache["arr"]
            return arr[idx] if arr.ndim == 3 else arr

        return get

    n = _n_frames(ds)
    ipp = _floats(ds.get("ImagePositionPatient"), 3) if "ImagePositionPatient" in ds else None
    iop = _floats(ds.get("ImageOrientationPatient"), 6) if "ImageOrientationPatient" in ds else None
    spacing = _pixel_spacing(ds.get("PixelSpacing"))
    thick = _thickness(ds)
    shape = (int(ds.get("Rows") or 0), int(ds.get("Columns") or 0))
    inst = int(ds.get("InstanceNumber") or 0) if str(ds.get("InstanceNumber") or "0").lstrip("-").isdigit() else 0
    out = []
    for f in range(n):
        pos = None
        if ipp is not None and iop is not None:
            normal = np.cross(iop[:3], iop[3:])
            pos = ipp + normal * f * (thick or 1.0)
        out.append(Slice(frame(f), pos, iop, spacing, thick, shape, (inst, f)))
    return out


def _group_item(ds, frame_group, seq: str):
    for groups in (frame_group, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if groups is not None and seq in groups and len(groups[seq].value):
            yield groups[seq].value[0]


def _first(ds, frame_group, seq: str, keyword: str):
    for item in _group_item(ds, frame_group, seq):
        if keyword in item:
            return item.get(keyword)
    return None


def _frames(ds, decoded: dict | None = None) -> list[Slice]:
    """Enhanced multi-frame: geometry per frame from the functional groups."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    cache: dict = {}
    out = []
    shape = (int(ds.get("Rows") or 0), int(ds.get("Columns") or 0))
    for f in range(_n_frames(ds)):
        fg = per_frame[f] if f < len(per_frame) else None
        ipp = _first(ds, fg, "PlanePositionSequence", "ImagePositionPatient")
        iop = _first(ds, fg, "PlaneOrientationSequence", "ImageOrientationPatient")
        pixel_spacing = _first(ds, fg, "PixelMeasuresSequence", "PixelSpacing")
        thick = None
        for item in _group_item(ds, fg, "PixelMeasuresSequence"):
            thick = _thickness(item)
            if thick:
                break
        slope = _first(ds, fg, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _first(ds, fg, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None:
            slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")

        def get(f=f, slope=slope, intercept=intercept):
            if "arr" not in cache:
                cache["arr"] = decoded.pop(id(ds)) if decoded and id(ds) in decoded else _decode(ds)
            arr = cache["arr"]
            return _rescale(arr[f] if arr.ndim == 3 else arr, slope, intercept)

        out.append(
            Slice(
                get,
                _floats(ipp, 3) if ipp is not None else None,
                _floats(iop, 6) if iop is not None else None,
                _pixel_spacing(pixel_spacing),
                thick,
                shape,
                (f,),
            )
        )
    return out
