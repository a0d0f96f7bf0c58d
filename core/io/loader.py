"""`load_volume`: collect the input, recognise each file by its content, hand it to the right
reader, and make sure only `VolumeLoadError` escapes for bad input."""

from __future__ import annotations

import numpy as np

from core.config import get_settings
from core.io import sniff, study
from core.io.dicom import parse_dicom, read_series
from core.io.images import read_image
from core.io.limits import FATAL
from core.io.nifti import read_nifti
from core.io.sources import Blob, collect
from core.io.volume import Volume, VolumeLoadError

SUPPORTED = "NIfTI (.nii, .nii.gz), DICOM, PNG, JPEG or TIFF, or a zip or folder of DICOM files"


def load_volume(source, filename: str | None = None, *, series=None, sequences=None, allow_ct: bool = False) -> Volume:
    """Read a scan from a path (file or folder), bytes, an uploaded-file object, or a list of those.

    series: the series key shown in `Volume.series` (a pseudonym of the SeriesInstanceUID; the raw UID works too) or its index when the upload holds several series;
    default: the largest MR series. sequences: names for the channels of multi-channel input.
    allow_ct: let CT series through (with a warning) instead of refusing them.
    """
    return guarded(_load, source, filename, series=series, sequences=sequences, allow_ct=allow_ct)


def guarded(read, *args, **kwargs):
    """`read(*args, **kwargs)` with only VolumeLoadError escaping for bad input."""
    try:
        return read(*args, **kwargs)
    except VolumeLoadError:
        raise
    except MemoryError:
        raise VolumeLoadError("The scan is too large to load in the memory available.") from None
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - decoder errors on bad input, including panics of
        # Rust decoders (pyo3_runtime.PanicException is a BaseException), become VolumeLoadError
        raise VolumeLoadError(
            f"The file could not be read ({type(exc).__name__}); it may be damaged "
            f"or in an unsupported format. Supported: {SUPPORTED}."
        ) from None


def _load(source, filename, *, series, sequences, allow_ct) -> Volume:
    settings = get_settings()
    blobs, warnings = collect(source, filename, settings)
    blobs = [b for b in blobs if b.data] or _empty(blobs)
    dicoms = [b for b in blobs if b.kind == sniff.DICOM]
    if dicoms:
        other = len(blobs) - len(dicoms)
        if other:
            warnings.append(f"{other} file(s) that are not DICOM were ignored.")
        upload = parse_dicom(dicoms, limits=settings)
        volume, why = _dicom_study(upload, settings, sequences) if series in (None, "") else (None, "")
        if volume is None:
            volume = read_series(
                upload,
                series=series,
                allow_ct=allow_ct,
                max_voxels=settings.max_voxels,
                sequences=sequences,
                limits=settings,
                warnings=[why] if why else [],
            )
    elif len([b for b in blobs if study.is_nifti(b)]) > 1:
        niftis = [b for b in blobs if study.is_nifti(b)]
        if len(niftis) < len(blobs):
            warnings.append(f"{len(blobs) - len(niftis)} file(s) that are not NIfTI were ignored.")
        parts, left_out, part_warnings = study.nifti_parts(niftis, settings=settings)
        volume = study.assemble(parts, left_out, part_warnings, sequences=sequences, max_voxels=settings.max_voxels)
    else:
        known = [b for b in blobs if b.kind is not None]
        if not known:
            raise VolumeLoadError(
                _unknown_message(blobs[0])
                if len(blobs) == 1
                else f"None of the {len(blobs)} files is a recognised scan format. Supported: {SUPPORTED}."
            )
        if len(known) > 1:
            raise VolumeLoadError(
                f"{len(known)} separate files were given. Upload one NIfTI file or "
                "image at a time, or the files of one DICOM series."
            )
        blob = known[0]
        if len(blobs) > 1:
            warnings.append(f"{len(blobs) - 1} unrecognised file(s) were ignored.")
        volume = _read_single(blob, settings, sequences)
    volume.warnings[:0] = warnings
    if sequences and len(volume.channels) > 1:
        _flag_copied_sequences(volume)
    return volume


def load_study(source, filename: str | None = None, *, sequences=None, allow_ct: bool = False) -> Volume:
    """A study given as several series (a DICOM folder or zip, a list of DICOM files) or several
    NIfTI files (one sequence each) as ONE Volume: channels named by sequence (t1pre, t1post, t2,
    flair, ... or "unknown", see core.io.recognise) on the grid of the finest complete series, and
    `Volume.series` saying where each channel came from. `sequences`: the channel names, as a list
    in series order or a mapping {recognised name or series key: name} that corrects some (see
    also `core.io.study.rename_channels`). VolumeLoadError when the series do not overlap or belong
    to different studies or patients."""
    return guarded(_load_study, source, filename, sequences=sequences, allow_ct=allow_ct)


def _load_study(source, filename, *, sequences, allow_ct) -> Volume:
    settings = get_settings()
    blobs, warnings = collect(source, filename, settings)
    blobs = [b for b in blobs if b.data] or _empty(blobs)
    dicoms = [b for b in blobs if b.kind == sniff.DICOM]
    niftis = [b for b in blobs if study.is_nifti(b)]
    if not dicoms and not niftis:
        raise VolumeLoadError(
            f"A study is made of DICOM series or NIfTI files; none was found. Supported: {SUPPORTED}."
        )
    parts, left_out = [], []
    if dicoms:
        dicom_parts, dicom_left, dicom_warnings = study.dicom_parts(
            parse_dicom(dicoms, limits=settings), settings=settings, allow_ct=allow_ct
        )
        parts, left_out = parts + dicom_parts, left_out + dicom_left
        warnings += dicom_warnings
    if niftis:
        nifti_parts, nifti_left, _ = study.nifti_parts(niftis, settings=settings)
        parts, left_out = parts + nifti_parts, left_out + nifti_left
    ignored = len(blobs) - len(dicoms) - len(niftis)
    if ignored:
        warnings.append(f"{ignored} file(s) that are neither DICOM nor NIfTI were ignored.")
    return study.assemble(parts, left_out, warnings, sequences=sequences, max_voxels=settings.max_voxels)


def _dicom_study(upload, settings, sequences) -> tuple[Volume | None, str]:
    """(several anatomical MR series of one study combined, "") or (None, why not): then the
    largest series is loaded as before. Not a study (one series; several studies or patients) is
    no news; series of one study that cannot be combined are."""
    candidates = [s for s in upload.summary if s["n_slices"] > 1 and s["modality"] == "MR"]
    if len(candidates) < 2:
        return None, ""
    try:
        parts, left_out, warnings = study.dicom_parts(upload, settings=settings, allow_ct=False)
        if len(parts) < 2:
            return None, ""
        return study.assemble(parts, left_out, warnings, sequences=sequences, max_voxels=settings.max_voxels), ""
    except VolumeLoadError as exc:
        if str(exc).startswith("The series belong to"):
            return None, ""
        return None, f"The series were not combined into one multi-sequence study: {exc}"


def _flag_copied_sequences(volume: Volume) -> None:
    """Named sequences with the same pixels (up to lossy-compression noise): a source that filled
    missing sequences with a copy of one. Loaded, with a warning and `meta["identical_channels"]`."""
    arrays = list(volume.channels.values())
    peak = max(float(np.abs(a).max(initial=0.0)) for a in arrays)
    tolerance = 3.0 / 255.0 * peak  # a few grey levels of an 8-bit JPEG
    if any(float(np.abs(a - arrays[0]).max(initial=0.0)) > tolerance for a in arrays[1:]):
        return
    names = list(volume.channels)
    count = {2: "two", 3: "three"}.get(len(names), str(len(names)))
    volume.warnings.append(
        f"The {count} sequences look identical (one sequence copied into all "
        f"channels?): {', '.join(names[:-1])} and {names[-1]} hold the same image."
    )
    volume.meta["identical_channels"] = names


def _empty(blobs):
    raise VolumeLoadError(
        "The file is empty (0 bytes)." if len(blobs) <= 1 else "All the uploaded files are empty (0 bytes)."
    )


def _unknown_message(blob: Blob) -> str:
    claimed = sniff.claimed_kind(blob.name)
    said = f" Its name ends like {sniff.LABELS[claimed]}, but its content is not one." if claimed else ""
    return f"The file is not a recognised scan format.{said} Supported: {SUPPORTED}."


def _read_single(blob: Blob, settings, sequences) -> Volume:
    kind = blob.kind
    if kind in (sniff.NIFTI, sniff.GZIP):
        volume = read_nifti(
            blob.data, max_voxels=settings.max_voxels, sequences=sequences, max_bytes=settings.max_decoded_bytes
        )
    elif kind in sniff.IMAGE_KINDS:
        volume = read_image(
            blob.data, max_voxels=min(settings.max_voxels, settings.max_image_pixels), sequences=sequences, kind=kind
        )
    else:  # pragma: no cover - sniff kinds are exhaustive here
        raise VolumeLoadError(f"Unsupported file. Supported: {SUPPORTED}.")
    claimed = sniff.claimed_kind(blob.name)
    actual = sniff.NIFTI if kind == sniff.GZIP else kind
    if claimed and claimed not in (actual, sniff.GZIP):
        volume.warnings.append(
            f"The file name ends like {sniff.LABELS[claimed]}, but the content is "
            f"{sniff.LABELS[actual]}; it was read as such."
        )
    return volume
