"""Pixels for eyes and for models: intensity normalisation, display slicing, model input tensors.

Orientation. A `Volume.array` is (z, y, x) RAS-canonical: z inferior->superior, y posterior->
anterior, x patient left->right. Slices come out *display-oriented*, in the radiological
convention used by the public slice data sets and by most PACS viewers:

    plane     slice axis (index)   rows (top -> bottom)     columns (left -> right)
    axial     z  (inf -> sup)      anterior -> posterior    patient right -> patient left
    coronal   y  (post -> ant)     superior -> inferior     patient right -> patient left
    sagittal  x  (left -> right)   superior -> inferior     anterior -> posterior

The slice index along the slice axis is the voxel index itself (not flipped), so index 0 of the
axial stack is the most inferior slice. `crosshair()` maps a voxel position to (row, col) in a
displayed slice, so linked views can draw where the other planes cut.

Nothing here imports streamlit; torch is imported only by `model_input`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from core.io.volume import Volume

PLANES = ("axial", "coronal", "sagittal")

# (center, width) over normalised [0, 1] intensities.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "full": (0.5, 1.0),  # the whole normalised range (0.5-99.5th percentile)
    "brain": (0.45, 0.7),  # a little more contrast between grey and white matter
    "contrast": (0.6, 0.45),  # bright lesions and enhancement stand out
    "soft": (0.5, 1.4),  # flatter, nothing clipped
}

_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}


def _check_plane(plane: str) -> str:
    if plane not in _AXIS:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
    return plane


_PERCENTILE_SAMPLE = 1_000_000


def normalize_intensity(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale to float32 [0, 1] between the `low` and `high` percentiles of the nonzero voxels.

    Zero is background (skull-stripped scans, padding) and is kept out of the percentiles. NaN and
    inf become 0. A constant image cannot be stretched: its nonzero voxels become 1, zeros stay 0.
    """
    a = np.asarray(array, dtype=np.float32)
    if not np.isfinite(a).all():  # loaders already refuse or zero them: rarely copies
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    # Percentiles of a regular subsample of a big volume are as good as of every voxel and ~5x
    # cheaper (this runs on every scan before inference).
    sample = a.ravel()[:: max(1, a.size // _PERCENTILE_SAMPLE)]
    fg = sample[sample != 0]
    if fg.size == 0:
        fg = a[a != 0]
    if fg.size == 0:
        return np.zeros(a.shape, dtype=np.float32)
    lo, hi = np.percentile(fg, [low, high])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-12 * max(1.0, abs(float(hi))):
        return (a != 0).astype(np.float32)
    out = (a - np.float32(lo)) / np.float32(hi - lo)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def orient(array: np.ndarray, plane: str) -> np.ndarray:
    """A (z, y, x) array as a display-oriented stack (N, H, W) for `plane` (a view, no copy)."""
    _check_plane(plane)
    if array.ndim != 3:
        raise ValueError(f"expected a (z, y, x) array, got shape {array.shape}")
    if plane == "axial":  # (z, y, x) -> rows: y flipped (anterior top); cols: x flipped
        return array[:, ::-1, ::-1]
    if plane == "coronal":  # (y, z, x) -> rows: z flipped (superior top); cols: x flipped
        return array.transpose(1, 0, 2)[:, ::-1, ::-1]
    # sagittal: (x, z, y) -> rows: z flipped (superior top); cols: y flipped (anterior left)
    return array.transpose(2, 0, 1)[:, ::-1, ::-1]


def display_slice(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One display-oriented slice of a (z, y, x) array, as a contiguous float32 (H, W) copy."""
    stack = orient(array, plane)
    index = int(np.clip(index, 0, stack.shape[0] - 1))
    return np.ascontiguousarray(stack[index], dtype=np.float32)


def _channel_array(volume: Volume, channel: str | None) -> np.ndarray:
    if channel is None:
        return volume.array
    if channel not in volume.channels:
        raise KeyError(f"no channel {channel!r}; this scan has {list(volume.channels)}")
    return volume.channels[channel]


def slices(volume: Volume, plane: str = "axial", channel: str | None = None, normalize: bool = True) -> np.ndarray:
    """All slices of `volume` in `plane`, display-oriented, float32 (N, H, W).

    `channel`: a name from `volume.channels` (default: the active one). With `normalize` the whole
    volume is scaled by `normalize_intensity` (one scale for all slices, so slices stay comparable).
    """
    array = _channel_array(volume, channel)
    if normalize:
        array = normalize_intensity(array)
    else:
        array = np.nan_to_num(np.asarray(array, dtype=np.float32))
    return np.ascontiguousarray(orient(array, plane), dtype=np.float32)


def num_slices(shape: tuple[int, int, int], plane: str) -> int:
    return int(shape[_AXIS[_check_plane(plane)]])


def plane_title(volume: Volume, plane: str) -> str:
    """How a plane is named for people. A 2D picture records no orientation: its one plane is shown
    as given, never called axial."""
    _check_plane(plane)
    if getattr(volume, "source_format", "") == "image":
        return "Image as given (plane unknown)"
    return plane.capitalize()


def plane_aspect(volume: Volume, plane: str) -> float:
    """Physical height / width of one displayed pixel of `plane` (1.0 for isotropic voxels)."""
    sz, sy, sx = (float(s) for s in volume.spacing)
    _check_plane(plane)
    row, col = {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]
    if not (row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col)):
        return 1.0
    return row / col


def crosshair(shape: tuple[int, int, int], plane: str, position: tuple[int, int, int]) -> tuple[int, int]:
    """(row, col) in a displayed `plane` slice where the other two planes cut, for a voxel
    `position` (z, y, x) of a volume of `shape` (z, y, x)."""
    nz, ny, nx = shape
    z, y, x = position
    _check_plane(plane)
    if plane == "axial":
        return ny - 1 - y, nx - 1 - x
    if plane == "coronal":
        return nz - 1 - z, nx - 1 - x
    return nz - 1 - z, ny - 1 - y


def apply_window(img: np.ndarray, center: float, width: float) -> np.ndarray:
    """Window/level: map [center - width/2, center + width/2] to [0, 1], clipping outside."""
    width = max(float(width), 1e-6)
    lo = float(center) - width / 2.0
    out = (np.nan_to_num(np.asarray(img, dtype=np.float32)) - np.float32(lo)) / np.float32(width)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _per_channel(values: Any, channels: int, name: str) -> list[float]:
    vals = [float(v) for v in (values if np.ndim(values) else [values])]
    if len(vals) == channels:
        return vals
    if len(vals) == 1:
        return vals * channels
    if len(vals) > channels:  # e.g. an RGB mean for a one-channel model: use the leading entries
        return vals[:channels]
    raise ValueError(f"spec.{name} has {len(vals)} values for {channels} input channels")


def model_input(slices: Any, spec: Any) -> torch.Tensor:
    """Slices in [0, 1] -> the float32 tensor (N, C, S, S) that `spec`'s model expects.

    slices: (N, H, W) or (N, C, H, W) numpy array or tensor, or a single (H, W) slice.
    Steps: pad to a centred square with zeros (background) so anatomy keeps its shape; resize to
    `spec.input_size` (bilinear, antialiased); replicate grey to `spec.in_channels` (or average
    several channels for a one-channel model); subtract `spec.mean` and divide by `spec.std`.
    This is the one function that turns pixels into model input, for training and inference.
    """
    import torch  # heavy: torch, loaded on first use
    import torch.nn.functional as F  # heavy: torch, loaded on first use

    x = torch.as_tensor(np.asarray(slices, dtype=np.float32) if not torch.is_tensor(slices) else slices)
    x = x.detach().to(torch.float32)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise ValueError(f"expected slices (N, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    n, c, h, w = x.shape
    side = max(h, w)
    if h != w:
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top), value=0.0)
    size = int(spec.input_size)
    if side != size and n > 0:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        x = x.clamp(0.0, 1.0)

    want = int(getattr(spec, "in_channels", 3))
    if c != want:
        if c == 1:
            x = x.expand(-1, want, -1, -1)
        elif want == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"slices have {c} channels but the model expects {want}")
    mean = torch.tensor(_per_channel(spec.mean, want, "mean"), dtype=torch.float32).view(1, want, 1, 1)
    std = torch.tensor(_per_channel(spec.std, want, "std"), dtype=torch.float32).view(1, want, 1, 1)
    if torch.any(std <= 0):
        raise ValueError("spec.std must be positive")
    return ((x - mean) / std).contiguous()
