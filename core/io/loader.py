"""`load_volume`: collect the input, recognise each file by its content, hand it to the right
reader, and make sure only `VolumeLoadError` escapes for bad input."""
from __future__ import annotations

import numpy as np

from core.config import get_settings
from core.io import sniff
from core.io.limits import FATAL
from core.io.sources import Blob, collect
from core.io.volume import Volume, VolumeLoadError

SUPPORTED = "NIfTI (.nii, .nii.gz), DICOM, PNG, JPEG or TIFF, or a zip or folder of DICOM files"


def load_volume(source, filename: str | None = None, *, series=None, sequences=None,
                allow_ct: bool = False) -> Volume:
    """Read a scan from a path (file or folder), bytes, an uploaded-file object, or a list of those.

    series: the series key shown in `Volume.series` (a pseudonym of the SeriesInstanceUID; the raw UID works too) or its index when the upload holds several series;
    default: the largest MR series. sequences: names for the channels of multi-channel input.
    allow_ct: let CT series through (with a warning) instead of refusing them.
    """
    try:
        return _load(source, filename, series=series, sequences=sequences, allow_ct=allow_ct)
    except VolumeLoadError:
        raise
    except MemoryError:
        raise VolumeLoadError("The scan is too large to load in the memory available.") from None
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - decoder errors on bad input, including panics of
        # Rust decoders (pyo3_runtime.PanicException is a BaseException), become VolumeLoadError
        raise VolumeLoadError(f"The file could not be read ({type(exc).__name__}); it may be damaged "
                              f"or in an unsupported format. Supported: {SUPPORTED}.") from None


def _load(source, filename, *, series, sequences, allow_ct) -> Volume:
    settings = get_settings()
    blobs, warnings = collect(source, filename, settings)
    blobs = [b for b in blobs if b.data] or _empty(blobs)
    dicoms = [b for b in blobs if b.kind == sniff.DICOM]
    if dicoms:
        from core.io.dicom import read_dicom

        other = len(blobs) - len(dicoms)
        if other:
            warnings.append(f"{other} file(s) that are not DICOM were ignored.")
        volume = read_dicom(dicoms, series=series, allow_ct=allow_ct,
                            max_voxels=settings.max_voxels, sequences=sequences, limits=settings)
    else:
        known = [b for b in blobs if b.kind is not None]
        if not known:
            raise VolumeLoadError(_unknown_message(blobs[0]) if len(blobs) == 1 else
                                  f"None of the {len(blobs)} files is a recognised scan format. "
                                  f"Supported: {SUPPORTED}.")
        if len(known) > 1:
            raise VolumeLoadError(f"{len(known)} separate files were given. Upload one NIfTI file or "
                                  "image at a time, or the files of one DICOM series.")
        blob = known[0]
        if len(blobs) > 1:
            warnings.append(f"{len(blobs) - 1} unrecognised file(s) were ignored.")
        volume = _read_single(blob, settings, sequences)
    volume.warnings[:0] = warnings
    if sequences and len(volume.channels) > 1:
        _flag_copied_sequences(volume)
    return volume


def _flag_copied_sequences(volume: Volume) -> None:
    """Named sequences with the same pixels (up to lossy-compression noise): a source that filled
    missing sequences with a copy of one. Loaded, with a warning and `meta["identical_channels"]`."""
    arrays = list(volume.channels.values())
    peak = max(float(np.abs(a).max(initial=0.0)) for a in arrays)
    tolerance = 3.0 / 255.0 * peak                 # a few grey levels of an 8-bit JPEG
    if any(float(np.abs(a - arrays[0]).max(initial=0.0)) > tolerance for a in arrays[1:]):
        return
    names = list(volume.channels)
    count = {2: "two", 3: "three"}.get(len(names), str(len(names)))
    volume.warnings.append(f"The {count} sequences look identical (one sequence copied into all "
                           f"channels?): {', '.join(names[:-1])} and {names[-1]} hold the same image.")
    volume.meta["identical_channels"] = names


def _empty(blobs):
    raise VolumeLoadError("The file is empty (0 bytes)." if len(blobs) <= 1 else
                          "All the uploaded files are empty (0 bytes).")


def _unknown_message(blob: Blob) -> str:
    claimed = sniff.claimed_kind(blob.name)
    said = f" Its name ends like {sniff.LABELS[claimed]}, but its content is not one." if claimed else ""
    return f"The file is not a recognised scan format.{said} Supported: {SUPPORTED}."


def _read_single(blob: Blob, settings, sequences) -> Volume:
    kind = blob.kind
    if kind in (sniff.NIFTI, sniff.GZIP):
        from core.io.nifti import read_nifti

        volume = read_nifti(blob.data, max_voxels=settings.max_voxels, sequences=sequences,
                            max_bytes=settings.max_decoded_bytes)
    elif kind in sniff.IMAGE_KINDS:
        from core.io.images import read_image

        volume = read_image(blob.data, max_voxels=min(settings.max_voxels, settings.max_image_pixels),
                            sequences=sequences, kind=kind)
    else:  # pragma: no cover - sniff kinds are exhaustive here
        raise VolumeLoadError(f"Unsupported file. Supported: {SUPPORTED}.")
    claimed = sniff.claimed_kind(blob.name)
    actual = sniff.NIFTI if kind == sniff.GZIP else kind
    if claimed and claimed not in (actual, sniff.GZIP):
        volume.warnings.append(f"The file name ends like {sniff.LABELS[claimed]}, but the content is "
                               f"{sniff.LABELS[actual]}; it was read as such.")
    return volume
