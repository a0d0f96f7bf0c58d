"""Voxel data + affine -> RAS-canonical (z, y, x) arrays, with spacing and orientation facts.
Shared by the NIfTI and DICOM readers; reorientation is nibabel's (no resampling)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np

from core.io.volume import VolumeLoadError

# Refuse when more than this fraction of voxels is NaN/Inf; below it they are set to 0 with a warning.
MAX_NONFINITE_FRACTION = 0.01


def axcodes(affine: np.ndarray) -> str:
    try:
        return "".join(c or "?" for c in nib.aff2axcodes(affine))
    except Exception:  # noqa: BLE001
        return "???"


def obliquity_degrees(affine: np.ndarray) -> float:
    """Largest angle (degrees) between a voxel axis and the nearest world axis."""
    rzs = affine[:3, :3]
    norms = np.linalg.norm(rzs, axis=0)
    cosines = np.abs(rzs / norms).max(axis=0)
    return float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))


def check_affine(affine: np.ndarray) -> None:
    rzs = np.asarray(affine, dtype=float)[:3, :3]
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(rzs)) < 1e-9:
        raise VolumeLoadError(
            "The file's geometry (voxel size / orientation) is invalid: zero, infinite or "
            "degenerate voxel axes. The file is damaged or was written incorrectly."
        )


def canonical(data_ijk: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple, list[str]]:
    """Reorient voxel data indexed (i, j, k[, c]) to closest RAS canonical.

    Returns (array indexed (z, y, x[, c]) float32, canonical affine, spacing (z, y, x), warnings).
    """
    check_affine(affine)
    img = nib.Nifti1Image(data_ijk, affine)
    can = nib.as_closest_canonical(img)
    data = np.asanyarray(can.dataobj)
    order = (2, 1, 0) + tuple(range(3, data.ndim))
    array = np.ascontiguousarray(np.transpose(data, order), dtype=np.float32)
    can_affine = can.affine
    zooms = np.linalg.norm(can_affine[:3, :3], axis=0)
    spacing = tuple(float(z) for z in zooms[::-1])
    warnings = []
    angle = obliquity_degrees(affine)
    if angle > 1.0:
        warnings.append(
            f"The scan is oblique ({angle:.0f}\u00b0 from the nearest standard plane); it is shown in "
            "the closest standard orientation without resampling, so planes are slightly tilted."
        )
    return array, can_affine, spacing, warnings


def finite(array: np.ndarray, what: str = "The image") -> tuple[np.ndarray, list[str]]:
    """Zero NaN/Inf voxels (with a warning) or refuse when there are too many."""
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if not n_bad:
        return array, []
    fraction = n_bad / array.size
    if fraction > MAX_NONFINITE_FRACTION:
        raise VolumeLoadError(
            f"{what} has {fraction:.0%} invalid voxel values (NaN or infinity); more than "
            f"{MAX_NONFINITE_FRACTION:.0%} is refused. The file is likely damaged or a derived map."
        )
    array = np.where(bad, np.float32(0), array).astype(np.float32, copy=False)
    return array, [f"{n_bad} voxel(s) with invalid values (NaN or infinity) were set to 0."]


def fmt_mm(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)
