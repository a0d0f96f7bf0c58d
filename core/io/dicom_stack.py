"""DICOM geometry: frames/slices -> one voxel stack with an RAS affine.

Slice order comes from ImagePositionPatient projected on the slice normal (the cross product of
the ImageOrientationPatient rows), never from file names or InstanceNumber.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.io.volume import VolumeLoadError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Slice:
    pixels: Callable[[], np.ndarray]  # () -> (rows, cols) float32, rescaled
    ipp: np.ndarray | None  # ImagePositionPatient (LPS mm)
    iop: np.ndarray | None  # ImageOrientationPatient (row cosine, column cosine)
    spacing: tuple[float, float]  # PixelSpacing (between rows, between columns)
    thickness: float | None  # SpacingBetweenSlices or SliceThickness
    shape: tuple[int, int]  # (rows, cols)
    order: tuple  # tie-break only (instance / frame number)


def _mode_group(items: list, key) -> tuple[list, int]:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    best = max(groups.values(), key=len)
    return best, len(items) - len(best)


def stack(slices: list[Slice], sequences=None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(data (i, j, k[, c]) float32, RAS affine, channel names, warnings)."""
    warnings: list[str] = []
    missing_geometry = any(s.ipp is None or s.iop is None for s in slices)
    if missing_geometry:
        if len(slices) > 1:
            warnings.append(
                "The images do not record their position in the scanner; they were "
                "stacked in instance-number order with nominal geometry."
            )
        else:
            warnings.append("The image does not record its orientation in the scanner; axial orientation was assumed.")
        for n, s in enumerate(sorted(slices, key=lambda s: s.order)):
            s.iop = np.array([1.0, 0, 0, 0, 1.0, 0])
            s.ipp = np.array([0.0, 0.0, float(n) * (s.thickness or 1.0)])
    slices, n_other = _mode_group(slices, lambda s: (s.shape, tuple(np.round(s.iop, 3))))
    if n_other:
        warnings.append(
            f"{n_other} image(s) of this series have a different orientation or size "
            "(e.g. localizers) and were left out."
        )
    iop = slices[0].iop
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row, col)
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        raise VolumeLoadError(
            "The DICOM ImageOrientationPatient is invalid (the row and column "
            "directions are not perpendicular); the file is damaged."
        )
    positions = np.array([float(np.dot(s.ipp, normal)) for s in slices])
    order = sorted(range(len(slices)), key=lambda i: (round(positions[i], 2), slices[i].order))
    slices = [slices[i] for i in order]
    positions = positions[order]
    # group slices that share a position: several echoes / time points -> channels
    groups: list[list[int]] = []
    for i, p in enumerate(positions):
        if groups and abs(p - positions[groups[-1][0]]) < 1e-2:
            groups[-1].append(i)
        else:
            groups.append([i])
    sizes = {len(g) for g in groups}
    n_channels = 1
    if sizes != {1}:
        if len(sizes) == 1 and len(groups) > 1:
            n_channels = sizes.pop()
        else:
            dup = sum(len(g) - 1 for g in groups)
            warnings.append(
                f"{dup} image(s) repeat a slice position already present; only the first "
                "image at each position was kept."
            )
            groups = [g[:1] for g in groups]
    pos = np.array([positions[g[0]] for g in groups])
    step, gap_warnings = _spacing(pos, slices[0].thickness)
    warnings += gap_warnings
    first = slices[groups[0][0]]
    row_sp, col_sp = first.spacing
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row * col_sp
    affine_lps[:3, 1] = col * row_sp
    affine_lps[:3, 2] = normal * step
    affine_lps[:3, 3] = first.ipp
    planes = []
    for c in range(n_channels):
        planes.append(np.stack([slices[g[c]].pixels() for g in groups]))  # (k, rows, cols)
    data = np.stack(planes, axis=-1)  # (k, j, i, c)
    data = np.transpose(data, (2, 1, 0, 3))  # (i, j, k, c)
    if n_channels == 1:
        data = data[..., 0]
        names = [str(sequences[0])] if sequences and len(sequences) == 1 else ["image"]
    else:
        names = _channel_names(sequences, n_channels)
        warnings.append(
            f"Each slice position has {n_channels} images (echoes or time points); "
            f"they are loaded as {n_channels} channels."
        )
    return data.astype(np.float32, copy=False), LPS_TO_RAS @ affine_lps, names, warnings


def _channel_names(sequences, n: int) -> list[str]:
    if sequences:
        if len(sequences) != n:
            raise VolumeLoadError(
                f"The series has {n} images per slice position but {len(sequences)} sequence name(s) were given."
            )
        return [str(s) for s in sequences]
    return [f"t{i}" for i in range(n)]


def _spacing(pos: np.ndarray, thickness: float | None) -> tuple[float, list[str]]:
    """Slice step (mm) and warnings about gaps / irregular spacing."""
    if len(pos) < 2:
        return float(thickness or 1.0), (
            [] if thickness else ["The slice thickness is not recorded; 1 mm was assumed."]
        )
    diffs = np.diff(pos)
    step = float(np.median(diffs))
    warnings = []
    gaps = [(i, d) for i, d in enumerate(diffs) if d > 1.5 * step]
    for i, d in gaps[:5]:
        missing = int(round(d / step)) - 1
        warnings.append(
            f"Missing slice(s): a gap of {d:.1f} mm between slice positions {pos[i]:.1f} mm and "
            f"{pos[i + 1]:.1f} mm where {step:.1f} mm is expected (about {max(missing, 1)} slice(s) "
            "missing). The volume was loaded without them, so distances across the gap are shortened."
        )
    if len(gaps) > 5:
        warnings.append(f"... and {len(gaps) - 5} more gaps between slices.")
    others = [d for d in diffs if d <= 1.5 * step]
    if not gaps and others and (max(others) - min(others)) > max(0.1 * step, 0.05):
        warnings.append(
            f"The spacing between slices is inconsistent ({min(others):.2f} to "
            f"{max(others):.2f} mm); a uniform {step:.2f} mm was assumed."
        )
    return step, warnings
