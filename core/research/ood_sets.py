"""Out-of-distribution images from files at hand, to validate the input gate's feature check.

Every item is a 2D picture as the models would see it after upload (normalised to [0, 1]):
- the DICOM test files shipped in pydicom's wheel, any modality but MR (CT, ultrasound, RT dose,
  secondary captures, segmentations: other body parts and non-anatomical images), read pixel by
  pixel so that the loader's own modality refusal does not hide what the features would say;
- the echo-planar (functional) NIfTI files shipped in nibabel's wheel: brain, but not anatomical;
- the two photographs shipped in scikit-learn's wheel (natural images);
- generated pictures: noise, smooth noise, gradients, a checkerboard, a uniform disc (a phantom),
  stripes.
Nothing here is downloaded; a file that is missing or cannot be decoded is skipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from core.preprocess import normalize_intensity


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def _grey(a: np.ndarray) -> np.ndarray | None:
    a = np.asarray(a, dtype=np.float32)
    while a.ndim > 2:  # frames / colour: the first frame, channel mean
        a = a.mean(-1) if a.shape[-1] in (3, 4) else a[a.shape[0] // 2]
    if a.ndim != 2 or min(a.shape) < 16 or not np.isfinite(a).all() or a.max() <= a.min():
        return None
    return normalize_intensity(a)


def dicom_test_images() -> list[tuple[str, np.ndarray]]:
    import pydicom  # heavy: pydicom, loaded on first use

    root = _package_dir("pydicom")
    out = []
    for f in sorted((root / "data" / "test_files").glob("*.dcm")) if root else []:
        try:
            ds = pydicom.dcmread(f)
            if str(getattr(ds, "Modality", "")).upper() == "MR":
                continue
            img = _grey(ds.pixel_array)
        except Exception:  # noqa: BLE001 - not every test file holds a decodable image
            continue
        if img is not None:
            out.append((f"dicom:{ds.get('Modality', '?')}:{f.name}", img))
    return out


def epi_images() -> list[tuple[str, np.ndarray]]:
    import nibabel as nib  # heavy: nibabel, loaded on first use

    root = _package_dir("nibabel")
    out = []
    for name in ("example4d.nii.gz", "functional.nii"):
        f = root / "tests" / "data" / name if root else None
        if f is None or not f.is_file():
            continue
        data = np.asarray(nib.load(f).dataobj, dtype=np.float32)
        data = data[..., 0] if data.ndim == 4 else data
        img = _grey(np.rot90(data[:, :, data.shape[2] // 2]))
        if img is not None:
            out.append((f"epi:{name}", img))
    return out


def photographs() -> list[tuple[str, np.ndarray]]:
    root = _package_dir("sklearn")
    out = []
    for f in sorted((root / "datasets" / "images").glob("*.jpg")) if root else []:
        with Image.open(f) as im:
            out.append((f"photo:{f.name}", _grey(np.asarray(im.convert("L")))))
    return out


def generated(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    from scipy.ndimage import gaussian_filter  # heavy: scipy, loaded on first use

    rng = np.random.default_rng(seed)
    s = 256
    yy, xx = np.mgrid[0:s, 0:s] / s
    disc = (((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.4) ** 2 < 1).astype(np.float32)
    items = {
        "noise": rng.random((s, s)),
        "smooth-noise": gaussian_filter(rng.random((s, s)), 8),
        "gradient": xx + 0.5 * yy,
        "checkerboard": ((np.floor(yy * 8) + np.floor(xx * 8)) % 2),
        "disc-phantom": disc * (0.8 + 0.02 * rng.standard_normal((s, s))),
        "stripes": 0.5 + 0.5 * np.sin(xx * 40),
        "disc-noise": disc * rng.random((s, s)),
    }
    return [(f"generated:{k}", _grey(v)) for k, v in items.items()]


def all_ood_images() -> list[tuple[str, np.ndarray]]:
    """(name, picture in [0, 1]) for every out-of-distribution item available here."""
    return dicom_test_images() + epi_images() + photographs() + generated()
