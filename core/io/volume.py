"""The `Volume`: what every loader returns and everything downstream consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


class VolumeLoadError(ValueError):
    """Bad or unsupported input, with a message a clinician can act on.

    The only exception type `load_volume` lets escape for bad input.
    """


@dataclass
class Volume:
    """A scan in RAS-canonical orientation.

    array:    float32 (z, y, x): z runs inferior->superior, y posterior->anterior, x left->right
              (voxel axes of nibabel's canonical RAS+ image, transposed to (k, j, i)). For data with
              several channels this is the active channel (see `channels`).
    spacing:  voxel size in mm, same (z, y, x) order. Nominal 1.0 where the file does not say.
    affine:   4x4 voxel (i, j, k) -> RAS world mm of the canonical image (nibabel convention:
              index order x, y, z, i.e. the reverse of `array`'s axes).
    channels: name -> (z, y, x) float32 array, one per sequence or time point; the active one is
              `array`. A single-channel volume has one entry.
    modality: "MR", "CT", ... or "unknown" (2D images).
    source_format: "nifti", "dicom", "dicom-enhanced", "image".
    meta:     de-identified header fields only (never patient identity).
    warnings: things the user should know (missing slices, nominal spacing, ...).
    series:   for DICOM uploads with several series, a summary of each one found.

    A 2D image is a Volume with one axial slice, stored so that `preprocess.slices(v, "axial")`
    gives back the picture as it was displayed (radiological convention: patient's right on the
    viewer's left, anterior at the top), which is how the public slice data sets are shared.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    modality: str = "MR"
    source_format: str = "nifti"
    channels: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    series: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.channels:
            self.channels = {"image": self.array}

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def active_channel(self) -> str:
        for name, data in self.channels.items():
            if data is self.array:
                return name
        return next(iter(self.channels))

    def with_channel(self, name: str) -> Volume:
        """The same scan with another channel active (no copy of the voxel data)."""
        if name not in self.channels:
            raise KeyError(f"no channel {name!r}; this scan has {list(self.channels)}")
        return replace(self, array=self.channels[name])

    def stacked(self, names: list[str] | None = None) -> np.ndarray:
        """Channels stacked as (C, z, y, x), e.g. for a multi-sequence model input."""
        names = names or list(self.channels)
        return np.stack([self.channels[n] for n in names])
