"""NIfTI-1 / NIfTI-2 (.nii, .nii.gz) -> Volume. The header is checked (dimensions, voxel count)
before any voxel data is decompressed or read."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from core.io import deid, orient, sniff
from core.io.limits import FATAL, Inflater
from core.io.volume import Volume, VolumeLoadError

_HEADER_BYTES = 540


def _header(head: bytes):
    """The fixed-size header only. Extensions (between it and vox_offset: AFNI, CIFTI, DICOM, comments;
    IXI files carry 2.5 KB) are never parsed nor kept: nothing downstream reads them, and they are
    free text or DICOM that may identify the patient. Without the 4 bytes that flag them, nibabel
    stops at the fixed header instead of reading up to vox_offset."""
    first = int.from_bytes(head[:4], "little")
    if first not in (348, 540):
        first = int.from_bytes(head[:4], "big")
    klass = nib.Nifti2Header if first == 540 else nib.Nifti1Header
    try:
        return klass.from_fileobj(io.BytesIO(head[:first]), check=False)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on bad headers
        raise VolumeLoadError(f"The NIfTI header is damaged ({type(exc).__name__}).") from None


def _check_dims(header, max_voxels: int) -> tuple[int, ...]:
    dim = [int(d) for d in header["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1 : ndim + 1]):
        raise VolumeLoadError(
            f"The NIfTI header gives impossible image dimensions ({dim[: max(1, min(ndim, 7)) + 1]}); "
            "the file is damaged or not a valid NIfTI image."
        )
    shape = tuple(dim[1 : ndim + 1])
    n_vox = int(np.prod(shape, dtype=np.float64))
    if n_vox > max_voxels:
        raise VolumeLoadError(
            f"The image has {n_vox:,} voxels (dimensions {' x '.join(map(str, shape))}); at most "
            f"{max_voxels:,} are accepted (NEUROGRADE_MAX_VOXELS). It was not read."
        )
    if len(shape) > 4 and any(d > 1 for d in shape[4:]):
        raise VolumeLoadError(
            f"{len(shape)}-dimensional NIfTI images (e.g. vector or tensor fields) "
            "are not supported; upload a 3D or 4D scan."
        )
    return shape


def read_nifti(data: bytes, *, max_voxels: int, sequences=None, max_bytes: int | None = None) -> Volume:
    """max_bytes: the most bytes the header may make us decompress or read (vox_offset + data)."""
    gz = data[:2] == b"\x1f\x8b"
    if gz:
        stream = Inflater(data)
        stream.fill(_HEADER_BYTES)
        head = bytes(stream.out[:_HEADER_BYTES])
    else:
        head = data[:_HEADER_BYTES]
    if sniff.sniff(head) != sniff.NIFTI:
        inner = sniff.sniff(head)
        if gz and inner is not None:
            raise VolumeLoadError(
                f"The .gz file contains {sniff.LABELS[inner]}, not a NIfTI image; unpack it and upload the file inside."
            )
        raise VolumeLoadError(
            "The compressed (.gz) file does not contain a NIfTI image."
            if gz
            else "The file is not a valid NIfTI image."
        )
    header = _header(head)
    if bytes(header["magic"])[:3] in (b"ni1", b"ni2"):
        raise VolumeLoadError(
            "This is a two-file NIfTI/Analyze header (.hdr + .img); convert it to a single .nii or .nii.gz file."
        )
    shape = _check_dims(header, max_voxels)
    try:
        itemsize = header.get_data_dtype().itemsize
    except Exception:  # noqa: BLE001
        raise VolumeLoadError("The NIfTI header names an unknown data type; the file is damaged.") from None
    offset = float(header["vox_offset"])
    if not 0 <= offset < 2**62:
        raise VolumeLoadError("The NIfTI header gives an impossible data offset (vox_offset); the file is damaged.")
    n_data = int(np.prod(shape, dtype=np.float64)) * itemsize
    expected = int(offset) + n_data
    if max_bytes is not None and n_data > max_bytes:
        raise VolumeLoadError(
            f"The image data would take {n_data / 2**20:,.0f} MB ({' x '.join(map(str, shape))} "
            f"voxels of {itemsize} bytes); at most {max_bytes / 2**20:,.0f} MB are accepted for one "
            "file (NEUROGRADE_MAX_DECODED_MB). It was not read."
        )
    if not gz and expected > len(data):
        raise VolumeLoadError(
            f"The NIfTI file is incomplete: the header promises {expected:,} bytes but only "
            f"{len(data):,} are there. It was probably cut short during copying or upload."
        )
    if gz and max_bytes is not None and expected > max_bytes + _HEADER_BYTES + 2**20:
        raise VolumeLoadError(
            f"The NIfTI header puts the image data {int(offset):,} bytes into the file (vox_offset); "
            "the file is damaged or not a real scan. It was not read."
        )
    if gz:
        complete = stream.fill(expected)
        del stream.out[expected:]
        body, stream.out = bytes(stream.out), bytearray()
    else:
        complete = True
        body = data[:expected] if len(data) > expected else data
    if not complete:
        raise VolumeLoadError(
            f"The NIfTI file is incomplete: the header promises {expected:,} bytes but only "
            f"{len(body):,} are there. It was probably cut short during copying or upload."
        )
    klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    try:  # the image from the checked header (extensions left out) and the data at vox_offset
        img = klass(ArrayProxy(io.BytesIO(body), header), header.get_best_affine(), header)
        values = np.asarray(img.get_fdata(dtype=np.float32))
        affine = img.affine
    except VolumeLoadError:
        raise
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise VolumeLoadError(f"The NIfTI file cannot be read ({type(exc).__name__}); it is damaged.") from None
    del body
    return _to_volume(img, values, affine, sequences)


def _to_volume(img, values: np.ndarray, affine: np.ndarray, sequences) -> Volume:
    header = img.header
    warnings: list[str] = []
    values = values.reshape(values.shape[:4] if values.ndim > 4 else values.shape)
    while values.ndim < 3:
        values = values[..., np.newaxis]
    if values.ndim == 4 and values.shape[3] == 1:
        values = values[..., 0]
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        warnings.append(
            "The NIfTI header does not say how the scan is oriented (qform and sform "
            "codes are 0); left/right may be wrong."
        )
    values, bad = orient.finite(values)
    warnings += bad
    source_codes = orient.axcodes(affine)
    array, can_affine, spacing, orient_warnings = orient.canonical(values, affine)
    warnings += orient_warnings
    channels: dict[str, np.ndarray] = {}
    if array.ndim == 4:
        n = array.shape[3]
        names = _names(sequences, n, "t")
        for idx, name in enumerate(names):
            channels[name] = np.ascontiguousarray(array[..., idx])
        active = channels[names[0]]
    else:
        names = _names(sequences, 1, "image") if sequences else ["image"]
        active = array
        channels[names[0]] = active
    slope = float(getattr(img.dataobj, "slope", 1.0))  # nibabel moves scl_* into the proxy
    inter = float(getattr(img.dataobj, "inter", 0.0))
    meta = deid.nifti_meta(header)
    meta.update(
        {
            "format": "NIfTI-2" if isinstance(header, nib.Nifti2Header) else "NIfTI-1",
            "source_orientation": source_codes,
            "scaled": slope != 1.0 or inter != 0.0,
            "dtype": str(header.get_data_dtype()),
        }
    )
    if array.ndim == 4:
        meta["n_volumes"] = array.shape[3]
    return Volume(
        array=active,
        spacing=spacing,
        affine=can_affine,
        modality="MR",
        source_format="nifti",
        channels=channels,
        meta=meta,
        warnings=warnings,
    )


def _names(sequences, n: int, prefix: str) -> list[str]:
    if sequences:
        names = [str(s) for s in sequences]
        if len(names) != n:
            raise VolumeLoadError(
                f"The scan has {n} channel(s) but {len(names)} sequence name(s) were given ({', '.join(names)})."
            )
        return names
    if n == 1:
        return [prefix]
    return [f"{prefix}{i}" for i in range(n)]
