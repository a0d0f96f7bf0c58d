"""DICOM files (one file, a series, several series, enhanced multi-frame, compressed) -> Volume."""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings as _warnings

import numpy as np

from core.io import deid, orient
from core.io.acquisition import acquisition
from core.io.dicom_stack import Slice, stack
from core.io.volume import Volume, VolumeLoadError

MODALITY_NAMES = {
    "MR": "MR", "CT": "CT (computed tomography)", "PT": "PET", "NM": "nuclear medicine",
    "US": "ultrasound", "CR": "radiograph", "DX": "radiograph", "XA": "angiography",
    "MG": "mammography", "SEG": "segmentation", "SR": "structured report",
    "RTSTRUCT": "radiotherapy structure set", "RTDOSE": "radiotherapy dose",
    "RTPLAN": "radiotherapy plan", "OT": "OT ('other')", "SC": "secondary capture",
    "PR": "presentation state", "KO": "key object selection", "DOC": "document",
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


def _read(blob):
    import pydicom

    force = blob.data[128:132] != b"DICM"
    with _quiet():
        ds = pydicom.dcmread(io.BytesIO(blob.data), force=force)
        ds.get("PixelData")  # element parsing is lazy: force the main element to be read
        for keyword in ("Modality", "SeriesInstanceUID", "Rows", "Columns", "SOPClassUID",
                        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                        "NumberOfFrames"):
            ds.get(keyword)
    return ds


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
            expected = (int(ds.Rows) * int(ds.Columns) * _n_frames(ds) * int(ds.get("SamplesPerPixel") or 1)
                        * int(ds.BitsAllocated)) // 8
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
    try:
        return ds.SOPClassUID.name
    except Exception:  # noqa: BLE001
        return "unknown"


def _is_image(ds) -> bool:
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


def read_dicom(blobs, *, series=None, allow_ct=False, max_voxels: int, sequences=None) -> Volume:
    with _quiet():
        return _read_dicom(blobs, series=series, allow_ct=allow_ct, max_voxels=max_voxels,
                           sequences=sequences)


def _read_dicom(blobs, *, series, allow_ct, max_voxels: int, sequences) -> Volume:
    datasets, unreadable, first_error = [], 0, ""
    for n, blob in enumerate(blobs):
        try:
            ds = _read(blob)
            if _is_directory(ds):
                continue          # a DICOMDIR index: its images are read from their own files
            if not _complete(ds):
                raise _PixelError("image data missing or shorter than the header says")
            datasets.append(ds)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken files
            unreadable += 1
            # files are named by position only: uploaded file names can identify the patient
            first_error = first_error or f"file {n + 1} of {len(blobs)}: {_reason(exc)}"
    if not datasets:
        if not unreadable:
            raise VolumeLoadError("The upload holds only a DICOMDIR index, without the image files "
                                  "it lists. Upload the whole folder or zip.")
        raise VolumeLoadError(f"The DICOM file could not be read ({first_error}). It is damaged or cut "
                              "short (incomplete)." if len(blobs) == 1 else
                              f"None of the {len(blobs)} DICOM files could be read (e.g. {first_error}).")
    warnings: list[str] = []
    if unreadable:
        warnings.append(f"{unreadable} damaged DICOM file(s) could not be read and were skipped.")
    tokens: set[str] = set()
    for ds in datasets:
        tokens |= deid.identifying_tokens(ds)
    by_uid: dict[str, list] = {}
    for ds in datasets:
        by_uid.setdefault(series_key(ds.get("SeriesInstanceUID")), []).append(ds)
    summary = _summaries(by_uid, tokens)
    uid = _choose(summary, series, allow_ct)
    chosen = by_uid[uid]
    images = [ds for ds in chosen if _is_image(ds)]
    skipped = len(chosen) - len(images)
    if skipped:
        warnings.append(f"{skipped} object(s) without image data in this series were ignored.")
    other = sum(1 for s in summary if s["uid"] != uid)
    if other:
        warnings.append(f"The upload holds {len(summary)} DICOM series; series #{summary_index(summary, uid)} "
                        "was loaded (choose another with the series option).")
    modality = str(images[0].get("Modality", "") or "unknown").upper()
    if modality == "CT":
        warnings.append("This is a CT scan. The models were trained on MRI only: their outputs on CT "
                        "are not meaningful.")
    n_vox = sum(int(ds.get("Rows") or 0) * int(ds.get("Columns") or 0) * _n_frames(ds) for ds in images)
    if n_vox > max_voxels:
        raise VolumeLoadError(f"The series has {n_vox:,} voxels; at most {max_voxels:,} are accepted "
                              "(NEUROGRADE_MAX_VOXELS). It was not read.")
    enhanced = any("PerFrameFunctionalGroupsSequence" in ds for ds in images)
    slices: list[Slice] = []
    for ds in images:
        slices.extend(_frames(ds) if enhanced else _classic(ds))
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
    meta.update({"source_orientation": source_codes, "n_images": len(images),
                 "transfer_syntax": _syntax_name(images[0]),
                 "acquisition": acquisition(images, tokens)})   # evidence for the input gate
    for s in summary:
        s["selected"] = s["uid"] == uid
    return Volume(array=active, spacing=spacing, affine=can_affine, modality=modality,
                  source_format="dicom-enhanced" if enhanced else "dicom", channels=channels,
                  meta=meta, warnings=warnings, series=summary)


def series_key(series_uid) -> str:
    """A pseudonym for a SeriesInstanceUID: UIDs can be traced back to a patient (PS3.15), so the
    summaries, the UI and the store only ever see this key. The raw UID is accepted as input too."""
    uid = str(series_uid or "").strip()
    return "series-" + hashlib.sha256(uid.encode()).hexdigest()[:12] if uid else "series-unknown"


def summary_index(summary, uid) -> int:
    return next(s["index"] for s in summary if s["uid"] == uid)


def _syntax_name(ds) -> str:
    try:
        return ds.file_meta.TransferSyntaxUID.name
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
        rows.append({
            "uid": uid,
            "number": number,
            "description": deid.redact(description, tokens) if description else "",
            "modality": str(first.get("Modality", "") or "unknown").upper(),
            "kind": _kind(first),
            "n_images": len(images),
            "n_slices": sum(_n_frames(ds) for ds in images),
            "rows": int(first.get("Rows") or 0) if images else 0,
            "columns": int(first.get("Columns") or 0) if images else 0,
            "selected": False,
        })
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
            if s["uid"] in (str(series), series_key(series)) or (isinstance(series, int) or str(series).isdigit()) and int(series) == s["index"]:
                return _check_modality(s, allow_ct)
        raise VolumeLoadError(f"Series {series!s} is not in this upload; it holds "
                              f"{len(summary)} series: " + ", ".join(f"#{s['index']} {s['uid']}" for s in summary))
    images = [s for s in summary if s["n_slices"]]
    if not images:
        found = "; ".join(_describe(s) for s in summary[:3])
        raise VolumeLoadError(f"This DICOM upload holds no images, only {found}. "
                              "Upload the MR image series itself.")
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
    raise VolumeLoadError(f"This is {_describe(s)}, not an MR scan. NeuroGrade reads brain MRI "
                          f"only.{hint}")


class _PixelError(Exception):
    pass


def _decode(ds) -> np.ndarray:
    try:
        with _quiet():
            arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        syntax = _syntax_name(ds)
        if "missing required element" in str(exc).lower() or isinstance(exc, AttributeError):
            reason = "required image attributes are missing"
        elif "unable to decode" in str(exc).lower() or "no pixel data decoders" in str(exc).lower() or "plugin" in str(exc).lower():
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
    if photometric == "MONOCHROME1":   # 0 = white: invert over the stored range, same for all slices
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


def _classic(ds) -> list[Slice]:
    cache: dict = {}

    def frame(idx):
        def get():
            if "arr" not in cache:
                cache["arr"] = _rescale(_decode(ds), ds.get("RescaleSlope"), ds.get("RescaleIntercept"))
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


def _frames(ds) -> list[Slice]:
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
                cache["arr"] = _decode(ds)
            arr = cache["arr"]
            return _rescale(arr[f] if arr.ndim == 3 else arr, slope, intercept)

        out.append(Slice(get, _floats(ipp, 3) if ipp is not None else None,
                         _floats(iop, 6) if iop is not None else None,
                         _pixel_spacing(pixel_spacing), thick, shape, (f,)))
    return out
