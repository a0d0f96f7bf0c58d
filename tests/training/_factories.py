"""Tiny generated training data for the training tests (no real data needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

CENTRES = [(14, 14), (34, 14), (24, 34)]


def blob_image(cls: int, rng: np.random.Generator, side: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    c = side / 2
    img = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (side * 6)) * 100 + rng.normal(0, 4, (side, side)) + 30
    cy, cx = (np.array(CENTRES[cls]) * side / 48).astype(int)
    img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20)
    return np.clip(img, 0, 255).astype(np.uint8)


def image_folder(
    root: Path,
    classes=("glioma", "meningioma", "pituitary"),
    per_class: int = 12,
    per_patient: int = 3,
    seed: int = 0,
    patients_csv: bool = True,
) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(blob_image(c, rng)).save(root / name / f"{i:03d}.png")
            rows.append({"image": f"{name}/{i:03d}.png", "patient": f"{name}-p{i // per_patient}"})
    if patients_csv:
        with open(root / "patients.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["image", "patient"])
            w.writeheader()
            w.writerows(rows)
    return root


def figshare_like(root: Path, n_per_class: int = 4) -> Path:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    rows, k = [], 0
    for c, name in enumerate(["glioma", "meningioma", "pituitary"]):
        for i in range(n_per_class):
            k += 1
            Image.fromarray(blob_image(c, rng, 64)).save(root / "images" / f"{k}.jpg")
            fam = f"{name[:2]}{i // 2}"
            rows.append(
                {
                    "image": f"images/{k}.jpg",
                    "label": name,
                    "pid": fam + "B",
                    "pid_family": fam,
                    "figshare_index": k,
                    "bbox_cx": 0.5,
                    "bbox_cy": 0.5,
                    "bbox_w": 0.1,
                    "bbox_h": 0.1,
                    "fold": 1 + (i // 2) % 2,
                }
            )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def tcga_like(root: Path) -> Path:
    """3 patients x 4 slices; RGB channels = (t1pre, flair, t1post) with distinct constant levels."""
    rows = []
    grades = {"TCGA_AA_0001": "G2", "TCGA_AA_0002": "G3", "TCGA_AA_0003": "unknown"}
    for p, grade in grades.items():
        case = f"{p}_20000101"
        (root / case).mkdir(parents=True)
        for s in range(1, 5):
            img = np.zeros((32, 32, 3), np.uint8)
            img[8:24, 8:24] = (60, 120, 200)
            img[12:16, 12:16] = (70, 140 + 20 * s, 210)
            mask = np.zeros((32, 32), np.uint8)
            tumour = s in (2, 3)
            if tumour:
                mask[12:16, 12:16] = 255
            Image.fromarray(img).save(root / case / f"{s:03d}.jpg", quality=100)
            Image.fromarray(mask).save(root / case / f"{s:03d}_mask.png")
            rows.append(
                {
                    "image": f"{case}/{s:03d}.jpg",
                    "mask": f"{case}/{s:03d}_mask.png",
                    "patient": p,
                    "case": case,
                    "slice": s,
                    "tumor_pixels": int(tumour) * 16,
                    "grade": grade,
                    "histological_type": 1,
                    "age": 50,
                    "gender": 1,
                }
            )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def nifti(path: Path, array_xyz: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array_xyz, np.eye(4)), str(path))
    return path


def brats_like(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for grade in ("LGG", "HGG"):
        for i in range(2):
            case = root / grade / f"{grade}_{i}"
            base = np.zeros((24, 24, 6), np.float32)
            base[4:20, 4:20, :] = 100 + rng.normal(0, 5, (16, 16, 6))
            seg = np.zeros((24, 24, 6), np.int16)
            seg[10:14, 10:14, 2:4] = 1
            for s, level in (("t1", 1.0), ("flair", 1.5), ("t1ce", 2.0)):
                nifti(case / f"{case.name}_{s}.nii.gz", (base * level).astype(np.float32))
            nifti(case / f"{case.name}_seg.nii.gz", seg)
    return root


NORMAL_FIELDS = [
    "image",
    "source",
    "subject",
    "sequence",
    "slice",
    "n_slices",
    "orig_shape",
    "orig_spacing",
    "licence",
    "skull_stripped",
    "set",
]


def normal_like(
    root: Path,
    volumes=(
        ("srcA", "ann", "T1"),
        ("srcB", "ann", "PD"),
        ("srcA", "bob", "T2"),
        ("srcC", "cid", "T1"),
        ("srcC", "dan", "T1"),
    ),
    n_slices: int = 3,
) -> Path:
    """normal/-style folder: images/<source>/<subject>_<sequence>/NNN.png (one volume per folder,
    slice k brighter than slice k-1: per-volume normalisation keeps them apart) + one templates/
    volume + manifest.csv. The same subject may appear under several sources."""
    rows = []
    for kind, vols in (("images", volumes), ("templates", [("tpl", "avg27", "T1-average")])):
        for source, subject, seq in vols:
            folder = f"{kind}/{source}/{subject}_{seq}"
            (root / folder).mkdir(parents=True)
            for k in range(n_slices):
                img = np.zeros((24, 20), np.uint8)
                img[4:20, 4:16] = 40 * (k + 1)
                img[8:12, 8:12] = 40 * (k + 1) + 100
                Image.fromarray(img).save(root / folder / f"{2 * k:03d}.png")
                rows.append(
                    {
                        "image": f"{folder}/{2 * k:03d}.png",
                        "source": source,
                        "subject": subject,
                        "sequence": seq,
                        "slice": 2 * k,
                        "n_slices": 2 * n_slices,
                        "orig_shape": f"20x24x{2 * n_slices}",
                        "orig_spacing": "1x1x1",
                        "licence": "BSD, as stated",
                        "skull_stripped": "no",
                        "set": kind,
                    }
                )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, NORMAL_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return root


def br35h_like(root: Path, n_tumor: int = 3, n_none: int = 2) -> Path:
    """br35h/-style: images/{yes,no}/NNNN.jpg + manifest.csv (image, label, source_file, width, height, sha256)."""
    import hashlib

    rng = np.random.default_rng(1)
    rows = []
    for label, sub, n in (("tumor", "yes", n_tumor), ("no_tumor", "no", n_none)):
        (root / "images" / sub).mkdir(parents=True)
        for i in range(n):
            img = blob_image(1 if label == "tumor" else 0, rng, side=30)
            path = root / "images" / sub / f"{i:04d}.jpg"
            Image.fromarray(img).save(path, quality=95)
            rows.append(
                {
                    "image": f"images/{sub}/{i:04d}.jpg",
                    "label": label,
                    "source_file": f"x/{sub}{i}.jpg",
                    "width": 30,
                    "height": 30,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                }
            )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root
