"""One 2D picture (PNG, JPEG, TIFF, BMP; 8/16-bit; grey, RGB, RGBA, palette) -> a one-slice Volume.

Stored so that axial display gives back the picture as shown: array[0] = img[::-1, ::-1].
"""

from __future__ import annotations

import io
import warnings as _warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.io.limits import FATAL, check_jpeg_scans
from core.io.volume import Volume, VolumeLoadError

NOMINAL_SPACING_WARNING = (
    "A 2D image does not record its pixel size: 1 mm spacing is assumed "
    "(nominal); distances and areas are not physical."
)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"


def _pixels(img: Image.Image) -> tuple[np.ndarray, float]:
    """(H, W) or (H, W, 3) float32 pixel values, and the full-scale value of the type."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("L" if mode == "1" else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    mode = img.mode
    arr = np.asarray(img)
    if mode in ("LA", "RGBA", "La", "RGBa"):
        arr = arr[..., :-1]
        if mode in ("LA", "La"):
            arr = arr[..., 0]
    if arr.dtype == np.uint8:
        full = 255.0
    elif arr.dtype.kind in "ui" or mode.startswith("I"):
        full = 65535.0
    else:
        full = max(float(np.nanmax(arr, initial=0)), 1.0)
    return arr.astype(np.float32), full


def read_image(data: bytes, *, max_voxels: int, sequences=None, kind: str = "") -> Volume:
    """max_voxels: the most pixels accepted (NEUROGRADE_MAX_IMAGE_PIXELS / NEUROGRADE_MAX_VOXELS),
    also given to Pillow as its decompression-bomb limit, whose warning is an error here."""
    Image.MAX_IMAGE_PIXELS = max(int(max_voxels), 1)  # Pillow's own check, made an error below
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not the user's concern
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VolumeLoadError(
            f"The image is larger than {max_voxels:,} pixels, the most accepted "
            "(NEUROGRADE_MAX_IMAGE_PIXELS); it was not read."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise VolumeLoadError(f"The image file is damaged or not a supported picture ({type(exc).__name__}).") from None
    if width * height > max_voxels or width < 1 or height < 1:
        raise VolumeLoadError(
            f"The image is {width} x {height} pixels; at most {max_voxels:,} pixels "
            "are accepted (NEUROGRADE_MAX_IMAGE_PIXELS). It was not read."
        )
    warnings: list[str] = []
    if (img.format or "").upper() in ("JPEG", "MPO"):
        check_jpeg_scans(data)
    n_frames = _count_frames(img)
    if n_frames > 1:
        many = f"more than {_MAX_COUNTED_FRAMES}" if n_frames > _MAX_COUNTED_FRAMES else str(n_frames)
        warnings.append(f"The image file holds {many} pages or frames; only the first was read.")
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        arr, full = _pixels(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VolumeLoadError(
            f"The image is larger than {max_voxels:,} pixels, the most accepted "
            "(NEUROGRADE_MAX_IMAGE_PIXELS); it was not read."
        ) from None
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - any decoder failure is a damaged file
        raise VolumeLoadError(
            "The image file is incomplete or damaged and cannot be decoded "
            f"({type(exc).__name__}); it may have been cut short."
        ) from None
    channels = _channels(arr, full, sequences)
    flipped = {name: np.ascontiguousarray(c[::-1, ::-1][np.newaxis]) for name, c in channels.items()}
    active = next(iter(flipped.values()))
    warnings.insert(0, NOMINAL_SPACING_WARNING)
    meta = {
        "format": (img.format or kind).upper(),
        "mode": img.mode,
        "width": width,
        "height": height,
        "bits": 8 if full == 255.0 else 16 if full == 65535.0 else 32,
        "n_channels_source": 1 if arr.ndim == 2 else arr.shape[2],
        "source_orientation": "unknown (2D image)",
    }
    return Volume(
        array=active,
        spacing=(1.0, 1.0, 1.0),
        affine=np.eye(4),
        modality="unknown",
        source_format="image",
        channels=flipped,
        meta=meta,
        warnings=warnings,
    )


_MAX_COUNTED_FRAMES = 64


def _count_frames(img: Image.Image) -> int:
    """Pages/frames up to _MAX_COUNTED_FRAMES + 1 (`n_frames` would walk every page of a hostile
    TIFF or GIF); the first frame is selected again afterwards."""
    if not getattr(img, "is_animated", False):
        return 1
    n = 1
    try:
        while n <= _MAX_COUNTED_FRAMES:
            img.seek(n)
            n += 1
    except EOFError:
        pass
    except FATAL:
        raise
    except BaseException:  # noqa: BLE001 - a damaged later page: the first is still read
        pass
    try:
        img.seek(0)
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise VolumeLoadError(f"The image file is damaged ({type(exc).__name__}).") from None
    return n


def _channels(arr: np.ndarray, full: float, sequences) -> dict[str, np.ndarray]:
    names = [str(s) for s in sequences] if sequences else None
    # three names for an RGB picture whose channels are equal: kept as named (the loader warns that
    # one sequence was copied into all channels, as TCGA-LGG did for patients with FLAIR only)
    named_colour = arr.ndim == 3 and names is not None and len(names) == 3
    if arr.ndim == 2 or (_same(arr, full) and not named_colour):
        grey = arr if arr.ndim == 2 else arr.mean(axis=2, dtype=np.float32)
        if names and len(names) not in (1,):
            raise VolumeLoadError(
                f"The image is grey (one channel) but {len(names)} sequence names were given ({', '.join(names)})."
            )
        return {(names[0] if names else "grey"): grey.astype(np.float32)}
    rgb = [arr[..., i].astype(np.float32) for i in range(3)]
    if names:
        if len(names) != 3:
            raise VolumeLoadError(
                f"The image has 3 colour channels but {len(names)} sequence name(s) were given ({', '.join(names)})."
            )
        return dict(zip(names, rgb))
    luminance = (arr[..., :3] @ _LUMA).astype(np.float32)
    return {"grey": luminance, "red": rgb[0], "green": rgb[1], "blue": rgb[2]}


def _same(arr: np.ndarray, full: float) -> bool:
    """Colour channels equal up to lossy-compression noise (grey saved as RGB JPEG)."""
    tol = 3.0 * full / 255.0
    return bool(np.abs(arr[..., 0] - arr[..., 1]).max() <= tol and np.abs(arr[..., 0] - arr[..., 2]).max() <= tol)
