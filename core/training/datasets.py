"""Training data sets: every source becomes a `SliceSet` of 2D slices in [0, 1] with labels, patient
groups and the sha256 of what defines it (its manifest, or its file listing).

Sources (`load_dataset` picks one from what the folder holds):
- Figshare CE-MRI      manifest.csv with pid_family + fold   tumor_type | presence (all tumour)
- TCGA-LGG             manifest.csv with tumor_pixels        presence (FLAIR; ":sequences=all": every
                                                             sequence as its own grey slice) | grade (3 channels)
- TCIA volumes         <subject>/<tp>_t1post.nii.gz + mask    presence
- normal brains        manifest.csv with subject + sequence   presence (all tumour-free; grouped by subject)
- Br35H                manifest.csv with label + sha256       presence (tumor / no_tumor; each image a group)
- BraTS-style folder   <root>/{LGG,HGG}/<case>/*_{t1,flair,t1ce}.nii.gz + *_seg.nii.gz   grade | presence
- image folder         <root>/<class>/*.png|jpg (+ optional <root>/patients.csv: image,patient)
- StoreLabels          confirmed review-queue labels (arrives with the review queue)

Pixels go through the same functions as inference: `preprocess.normalize_intensity` (per volume
for volumes, per image for single images, as `preprocess.slices` does for an upload), then
`preprocess.model_input`'s resize (zero-pad to square, bilinear antialias). The resized slices are
cached as uint8 under NEUROGRADE_HOME/cache (or NEUROGRADE_CACHE_DIR), keyed by (source, task, size, channels, manifest hash).

A source in a data argument is `PATH[:key=value]...[:N]`: `:N` caps it at about N slices (whole
patients, seeded), `:sequences=all` (TCGA-LGG presence) takes every sequence instead of FLAIR only,
`:every=k` (TCGA-LGG) every k-th slice of each case, `:tumour_sequences=flair` (with sequences=all)
tumour slices from FLAIR only, tumour-free slices from every sequence.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from core.config import get_settings
from core.io import Volume, load_volume
from core.preprocess import model_input, normalize_intensity, slices

TASK_CLASSES = {
    "presence": ["no_tumor", "tumor"],
    "tumor_type": ["glioma", "meningioma", "pituitary"],
    "grade": ["G2", "G3"],
}
TCGA_SEQUENCES = ("t1pre", "flair", "t1post")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
CACHE_VERSION = 1


@dataclass
class SliceSet:
    """Slices of one or several sources. `images` is uint8 (N, H, W) or (N, C, H, W); `pixels()`
    gives float32 [0, 1]. `groups` are patient ids (prefixed by source when sets are combined)."""

    name: str
    path: str
    classes: list[str]
    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    manifest_sha256: str
    sequences: tuple[str, ...] = ("grey",)
    folds: np.ndarray | None = None  # predefined patient-grouped CV fold per slice (Figshare)
    source: np.ndarray | None = None  # source name per slice
    parts: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = np.full(len(self.labels), self.name, dtype=object)
        if not self.parts:
            self.parts = [self._summary()]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def pixels(self, idx=None) -> np.ndarray:
        data = self.images if idx is None else self.images[np.asarray(idx)]
        return data.astype(np.float32) / 255.0

    def subset(self, idx) -> SliceSet:
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            groups=self.groups[idx],
            folds=None if self.folds is None else self.folds[idx],
            source=self.source[idx],
            parts=self.parts,
        )

    def _summary(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.manifest_sha256,
            "n_images": len(self),
            "n_patients": int(len(set(self.groups.tolist()))),
        }

    def summary(self) -> list[dict]:
        """The card's `training_data` entries (one per source)."""
        return list(self.parts)


def concat(sets: list[SliceSet]) -> SliceSet:
    if len(sets) == 1:
        return sets[0]
    first = sets[0]
    for s in sets[1:]:
        if s.classes != first.classes or s.images.shape[1:] != first.images.shape[1:]:
            raise ValueError(f"cannot combine {first.name} and {s.name}: classes or slice shapes differ")
    sha = hashlib.sha256("".join(s.manifest_sha256 for s in sets).encode()).hexdigest()
    same = all(s.sequences == first.sequences for s in sets)
    sequences = first.sequences if same or first.images.ndim == 4 else ("grey",)  # grey: any one sequence
    return SliceSet(
        name="+".join(s.name for s in sets),
        path=";".join(s.path for s in sets),
        classes=first.classes,
        images=np.concatenate([s.images for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        groups=np.concatenate([np.array([f"{s.name}:{g}" for g in s.groups], dtype=object) for s in sets]),
        manifest_sha256=sha,
        sequences=sequences,
        folds=None,
        source=np.concatenate([s.source for s in sets]),
        parts=[p for s in sets for p in s.parts],
    )


# ------------------------------------------------------------------------------ pixels
def _resize(stack: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) float [0, 1] -> uint8 at size x size via model_input's resize."""
    c = 1 if stack.ndim == 3 else stack.shape[1]
    spec = SimpleNamespace(input_size=size, in_channels=c, mean=(0.0,) * c, std=(1.0,) * c)
    out = model_input(stack, spec).numpy()
    if stack.ndim == 3:
        out = out[:, 0]
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _normalize(array: np.ndarray) -> np.ndarray:
    return normalize_intensity(array)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def _read_grey(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32)


def _axial(path: Path, normalize: bool = True) -> np.ndarray:
    """Display-oriented axial slices of a NIfTI file, exactly as an upload of it is sliced."""
    return slices(load_volume(path), "axial", normalize=normalize)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing_sha256(root: Path, files: list[Path]) -> str:
    """sha256 of the sorted (relative path, size) listing: a folder's manifest."""
    lines = sorted(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}" for p in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ------------------------------------------------------------------------------ cache
def _cache_path(kind: str, task: str, size: int, channels: str, sha: str) -> Path:
    key = f"{kind}-{task}-{size}px-{channels}-{sha[:16]}-v{CACHE_VERSION}"
    root = Path(os.environ.get("NEUROGRADE_CACHE_DIR") or get_settings().home / "cache")
    return root / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.npz"


def _cached(kind: str, task: str, size: int, channels: str, sha: str, build) -> dict:
    path = _cache_path(kind, task, size, channels, sha)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # DDP ranks build the same cache at once
    np.savez(tmp, **{k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()})
    tmp.replace(path)
    return arrays


def _classes_for(task: str) -> list[str]:
    if task not in TASK_CLASSES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_CLASSES)}")
    return TASK_CLASSES[task]


# ------------------------------------------------------------------------------ sources
def load_figshare(root: Path, task: str, size: int) -> SliceSet:
    root = Path(root)
    manifest = root / "manifest.csv"
    rows = list(csv.DictReader(open(manifest, newline="")))
    classes = _classes_for(task)
    if task not in ("tumor_type", "presence"):
        raise ValueError(f"Figshare CE-MRI has no labels for task {task!r}")
    sha = file_sha256(manifest)

    def build():
        # each JPEG is one 2D image: normalised on its own, as a single-slice upload would be
        imgs = np.stack([_resize(_normalize(_read_grey(root / r["image"]))[None], size)[0] for r in rows])
        return {"images": imgs}

    images = _cached("figshare", "any", size, "grey", sha, build)["images"]
    if task == "tumor_type":
        labels = np.array([classes.index(r["label"]) for r in rows], dtype=np.int64)
    else:
        labels = np.ones(len(rows), dtype=np.int64)
    return SliceSet(
        "figshare-cemri",
        str(root),
        classes,
        images,
        labels,
        np.array([r["pid_family"] for r in rows], dtype=object),
        sha,
        folds=np.array([int(r["fold"]) for r in rows]),
    )


def load_tcga_lgg(
    root: Path,
    task: str,
    size: int,
    presence_channel: str = "flair",
    every: int = 1,
    tumour_sequences: tuple[str, ...] | None = None,
) -> SliceSet:
    """presence: one channel (FLAIR by default: the masks outline the FLAIR abnormality, and many
    lower-grade gliomas do not enhance, so they are invisible on T1 post-contrast), or "all": every
    sequence as its own grey slice (3 x the slices, labelled from the same mask, grouped by patient
    so that all of a patient's sequences fall on one side of every split); `every` = k keeps every
    k-th slice of each case (slice 1, 1 + k, ...: neighbouring slices are near-copies);
    `tumour_sequences` (with "all"): tumour slices only from these sequences, the others give their
    tumour-free slices only (the mask outlines the FLAIR abnormality: many lower-grade gliomas are
    invisible on T1, so a T1 slice labelled "tumour" teaches slice level, not tumour); grade: the
    three channels (t1pre, flair, t1post), tumour slices of patients with a known grade.
    Each case's slices are stacked and normalised together, as an uploaded volume is."""
    root = Path(root)
    manifest = root / "manifest.csv"
    rows = list(csv.DictReader(open(manifest, newline="")))
    classes = _classes_for(task)
    sha = file_sha256(manifest)

    def build():
        out = np.zeros((len(rows), 3, size, size), dtype=np.uint8)
        by_case: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by_case.setdefault(r["case"], []).append(i)
        for idx in by_case.values():
            vol = np.stack([_read_rgb(root / rows[i]["image"]) for i in idx])  # (n, H, W, 3)
            chans = [_normalize(vol[..., c]) for c in range(3)]
            out[idx] = _resize(np.stack(chans, axis=1), size)
        return {"images": out}

    images = _cached("tcga-lgg", "any", size, "t1pre-flair-t1post", sha, build)["images"]
    if every > 1:
        kept = [i for i, r in enumerate(rows) if (int(r["slice"]) - 1) % every == 0]
        images, rows = images[kept], [rows[i] for i in kept]
    tumour = np.array([int(r["tumor_pixels"]) > 0 for r in rows])
    groups = np.array([r["patient"] for r in rows], dtype=object)
    if task == "presence" and presence_channel == "all":
        out = _every_sequence(
            SliceSet(
                "tcga-lgg", str(root), classes, images, tumour.astype(np.int64), groups, sha, sequences=TCGA_SEQUENCES
            )
        )
    elif task == "presence":
        ch = TCGA_SEQUENCES.index(presence_channel)
        out = SliceSet(
            "tcga-lgg",
            str(root),
            classes,
            np.ascontiguousarray(images[:, ch]),
            tumour.astype(np.int64),
            groups,
            sha,
            sequences=(presence_channel,),
        )
    if task == "presence":
        notes = [f"every {every}th slice of each case (slice 1, {1 + every}, ...)"] if every > 1 else []
        if tumour_sequences and presence_channel == "all":
            allowed = {f"tcga-lgg/{q}" for q in tumour_sequences}
            keep = np.flatnonzero((out.labels == 0) | np.isin(out.source.astype(str), list(allowed)))
            part = out.parts[0]
            out = out.subset(keep)
            out.parts = [{**part, "n_images": int(len(keep))}]
            notes.append(
                f"tumour slices from {', '.join(tumour_sequences)} only; the other sequences give "
                "their tumour-free slices"
            )
        if notes:
            note = "; ".join(notes)
            out.parts = [
                {**out.parts[0], "note": f"{out.parts[0]['note']}; {note}" if "note" in out.parts[0] else note}
            ]
        return out
    if task == "grade":
        keep = np.flatnonzero(tumour & np.array([r["grade"] in classes for r in rows]))
        labels = np.array([classes.index(rows[i]["grade"]) for i in keep], dtype=np.int64)
        return SliceSet(
            "tcga-lgg", str(root), classes, images[keep], labels, groups[keep], sha, sequences=TCGA_SEQUENCES
        )
    raise ValueError(f"TCGA-LGG has no labels for task {task!r}")


def _every_sequence(s: SliceSet) -> SliceSet:
    """A multi-channel set (N, C, H, W) -> C*N grey slices, one per (sequence, slice), same label and
    patient; source "<name>/<sequence>" per slice so that scores come out per sequence."""
    n, c = s.images.shape[:2]
    images = np.ascontiguousarray(s.images.transpose(1, 0, 2, 3).reshape(c * n, *s.images.shape[2:]))
    source = np.concatenate([np.full(n, f"{s.name}/{q}", dtype=object) for q in s.sequences])
    part = {
        **s._summary(),
        "n_images": int(c * n),
        "sequences": list(s.sequences),
        "note": f"every sequence ({', '.join(s.sequences)}) as a separate grey slice, grouped by patient",
    }
    return SliceSet(
        s.name,
        s.path,
        s.classes,
        images,
        np.tile(s.labels, c),
        np.tile(s.groups, c),
        s.manifest_sha256,
        sequences=("grey",),
        source=source,
        parts=[part],
    )


def load_tcia_volumes(root: Path, task: str, size: int) -> SliceSet:
    """<subject>/<timepoint>_t1post.nii.gz with <timepoint>_mask.nii.gz: axial slices via
    core.io.load_volume + preprocess.slices (the inference path); presence from the mask; all-zero
    (padding) slices are dropped."""
    if task != "presence":
        raise ValueError(f"TCIA volumes are labelled for presence only, not {task!r}")
    root = Path(root)
    scans = sorted(root.glob("*/*_t1post.nii.gz"))
    if not scans:
        raise FileNotFoundError(f"{root}: no <subject>/<tp>_t1post.nii.gz files")
    sha = listing_sha256(root, sorted(root.glob("*/*.nii.gz")))

    def build():
        imgs, labels, groups = [], [], []
        for scan in scans:
            mask_path = scan.with_name(scan.name.replace("_t1post", "_mask"))
            pix = _axial(scan)
            mask = _axial(mask_path, normalize=False) > 0
            for k in range(pix.shape[0]):
                if pix[k].max() <= 0:
                    continue
                imgs.append(pix[k])
                labels.append(int(mask[k].any()))
                groups.append(scan.parent.name)
        return {
            "images": _resize(np.stack(imgs), size),
            "labels": np.array(labels, dtype=np.int64),
            "groups": np.array(groups),
        }

    z = _cached("tcia", task, size, "t1post", sha, build)
    return SliceSet(
        "tcia-btp",
        str(root),
        _classes_for(task),
        z["images"],
        z["labels"].astype(np.int64),
        z["groups"].astype(object),
        sha,
        sequences=("t1post",),
    )


def load_image_folder(root: Path, task: str | None, size: int) -> SliceSet:
    """<root>/<class>/*.png|jpg, grey. Classes are the sub-folder names (sorted), or the task's
    classes when every folder is one of them. Patients from <root>/patients.csv (columns image,
    patient; image relative to root) where present, else each image is its own patient."""
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    names = [d.name for d in class_dirs]
    classes = TASK_CLASSES.get(task or "", None)
    if not classes or not set(names) <= set(classes):
        classes = names
    files = [
        (p, classes.index(d.name))
        for d in class_dirs
        for p in sorted(d.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise FileNotFoundError(f"{root}: no <class>/*.png|jpg images")
    pcsv = root / "patients.csv"
    patients = {}
    if pcsv.is_file():
        patients = {r["image"]: r["patient"] for r in csv.DictReader(open(pcsv, newline=""))}
    listed = [p for p, _ in files] + ([pcsv] if pcsv.is_file() else [])
    sha = listing_sha256(root, listed)

    def build():
        return {"images": np.stack([_resize(_normalize(_read_grey(p))[None], size)[0] for p, _ in files])}

    images = _cached(f"folder-{root.name}", "any", size, "grey", sha, build)["images"]
    rel = [p.relative_to(root).as_posix() for p, _ in files]
    groups = np.array([patients.get(r, r) for r in rel], dtype=object)
    return SliceSet(root.name, str(root), classes, images, np.array([y for _, y in files], dtype=np.int64), groups, sha)


# ------------------------------------------------------------------------------ normal/ volumes
def image_plane(path: Path, channel: str | None = None) -> np.ndarray:
    """One 2D picture through core.io (as the product reads an upload): the stored (y, x) plane."""
    vol = load_volume(str(path))
    arr = vol.channels.get(channel, vol.array) if channel else vol.array  # grey-only: channels equal
    return np.asarray(arr[0], dtype=np.float32)


def stack_volume(planes: list[np.ndarray], spacing_z: float, source: str, channel: str = "image"):
    """Planes (each stored as core.io stores a 2D image) -> one Volume, slice 0 = most inferior."""
    arr = np.ascontiguousarray(np.stack(planes).astype(np.float32))
    affine = np.diag([1.0, 1.0, float(spacing_z), 1.0])
    return Volume(
        array=arr,
        spacing=(float(spacing_z), 1.0, 1.0),
        affine=affine,
        modality="MR",
        source_format="image-stack",
        channels={channel: arr},
        meta={"source": source},
    )


def _normal_rows(root: Path, sets: tuple[str, ...]) -> dict[str, list[dict]]:
    """normal/ manifest rows of `sets` by volume folder (images/<source>/<volume>), in `slice` order."""
    rows = list(csv.DictReader(open(Path(root) / "manifest.csv", newline="")))
    by_folder: dict[str, list[dict]] = {}
    for r in rows:
        if r["set"] in sets:
            by_folder.setdefault(r["image"].rsplit("/", 1)[0], []).append(r)
    for rs in by_folder.values():
        rs.sort(key=lambda r: int(r["slice"]))
    return by_folder


def normal_subjects(root: Path, sets: tuple[str, ...] = ("images",)) -> dict[str, str]:
    """{volume folder: subject} of normal/ (one person may have several folders)."""
    return {folder: rs[0]["subject"] for folder, rs in _normal_rows(Path(root), sets).items()}


def normal_volumes(root: Path, sets: tuple[str, ...] = ("images",)):
    """(name, Volume) for every volume folder of normal/ in `sets`. The PNGs are neurological view
    (patient's right on the image right); core.io stores a picture as shown, so x is flipped back
    to RAS. z spacing: the manifest's slice step times the voxel size along the slice axis."""
    root = Path(root)
    for folder, rs in _normal_rows(root, sets).items():
        planes = [image_plane(root / r["image"])[:, ::-1] for r in rs]
        shape = [int(v) for v in rs[0]["orig_shape"].split("x")]
        spacing = [float(v) for v in rs[0]["orig_spacing"].split("x")]
        n = int(rs[0]["n_slices"])
        axis_mm = spacing[shape.index(n)] if n in shape else 1.0
        step = float(np.median(np.diff([int(r["slice"]) for r in rs]))) if len(rs) > 1 else 1.0
        yield folder, stack_volume(planes, step * axis_mm, f"normal/{folder}")


def load_normal(root: Path, task: str, size: int) -> SliceSet:
    """normal/ (healthy volunteers, manifest with subject + sequence): every slice is tumour-free.
    Each volume folder of `images/` is stacked and sliced as an uploaded series is (`normal_volumes`
    -> `preprocess.slices`: one intensity scale per volume); `templates/` (averages of many people)
    are left out. Grouped by SUBJECT, across sources and sequences (the same person appears under
    several folders); all-zero slices are dropped; source per slice "normal/<volume folder>"."""
    if task != "presence":
        raise ValueError(f"normal/ brains are labelled for presence only, not {task!r}")
    root = Path(root)
    manifest = root / "manifest.csv"
    sha = file_sha256(manifest)
    subject = normal_subjects(root, ("images",))
    if not subject:
        raise FileNotFoundError(f"{root}: no `images` rows in manifest.csv")

    def build():
        imgs, groups, source = [], [], []
        for folder, vol in normal_volumes(root, ("images",)):
            pix = slices(vol, "axial", normalize=True)
            keep = [k for k in range(pix.shape[0]) if pix[k].max() > 0]
            imgs.append(_resize(pix[keep], size))
            groups += [subject[folder]] * len(keep)
            source += [f"normal/{folder.split('/', 1)[-1]}"] * len(keep)
        return {"images": np.concatenate(imgs), "groups": np.array(groups), "source": np.array(source)}

    z = _cached("normal", task, size, "grey", sha, build)
    n = len(z["groups"])
    return SliceSet(
        "normal",
        str(root),
        _classes_for(task),
        z["images"],
        np.zeros(n, dtype=np.int64),
        z["groups"].astype(object),
        sha,
        source=z["source"].astype(object),
    )


BR35H_LABELS = {"no_tumor": 0, "tumor": 1}


def load_br35h(root: Path, task: str, size: int) -> SliceSet:
    """Br35H (manifest: image, label tumor | no_tumor): each JPEG normalised on its own, as a
    single-image upload. No patient ids: every image is its own group, so splits inside Br35H are
    NOT patient-level (several slices may come from one patient)."""
    if task != "presence":
        raise ValueError(f"Br35H is labelled for presence only, not {task!r}")
    root = Path(root)
    manifest = root / "manifest.csv"
    rows = list(csv.DictReader(open(manifest, newline="")))
    sha = file_sha256(manifest)

    def build():
        return {"images": np.stack([_resize(_normalize(_read_grey(root / r["image"]))[None], size)[0] for r in rows])}

    images = _cached("br35h", "any", size, "grey", sha, build)["images"]
    labels = np.array([BR35H_LABELS[r["label"]] for r in rows], dtype=np.int64)
    s = SliceSet(
        "br35h", str(root), _classes_for(task), images, labels, np.array([r["image"] for r in rows], dtype=object), sha
    )
    s.parts = [
        {
            **s._summary(),
            "note": "no patient ids: each image is its own group (splits inside Br35H are not patient-level)",
        }
    ]
    return s


BRATS_SEQUENCES = ("t1", "flair", "t1ce")  # in the order of TCGA's (t1pre, flair, t1post)


def load_brats(root: Path, task: str, size: int) -> SliceSet:
    """<root>/{LGG,HGG}/<case>/<case>_{t1,flair,t1ce}.nii.gz + <case>_seg.nii.gz. grade: classes
    ["LGG", "HGG"], 3 channels (t1, flair, t1ce), tumour-bearing slices; presence: t1ce slices."""
    root = Path(root)
    cases = sorted(p for g in ("LGG", "HGG") for p in (root / g).glob("*") if p.is_dir())
    if not cases:
        raise FileNotFoundError(f"{root}: no LGG/<case> or HGG/<case> folders")
    sha = listing_sha256(root, sorted(root.glob("*/*/*.nii*")))

    def find(case: Path, suffix: str) -> Path:
        hits = sorted(case.glob(f"*_{suffix}.nii*"))
        if not hits:
            raise FileNotFoundError(f"{case}: no *_{suffix}.nii(.gz)")
        return hits[0]

    def build():
        imgs, labels, groups, tumour = [], [], [], []
        for case in cases:
            chans = np.stack([_axial(find(case, s)) for s in BRATS_SEQUENCES], axis=1)  # (N, 3, H, W)
            seg = _axial(find(case, "seg"), normalize=False) > 0
            for k in range(chans.shape[0]):
                if chans[k].max() <= 0:
                    continue
                imgs.append(chans[k])
                tumour.append(bool(seg[k].any()))
                labels.append(int(case.parent.name == "HGG"))
                groups.append(case.name)
        return {
            "images": _resize(np.stack(imgs), size),
            "labels": np.array(labels, dtype=np.int64),
            "groups": np.array(groups),
            "tumour": np.array(tumour),
        }

    z = _cached(f"brats-{root.name}", "any", size, "t1-flair-t1ce", sha, build)
    if task == "grade":
        keep = np.flatnonzero(z["tumour"])
        return SliceSet(
            root.name,
            str(root),
            ["LGG", "HGG"],
            z["images"][keep],
            z["labels"][keep].astype(np.int64),
            z["groups"][keep].astype(object),
            sha,
            sequences=BRATS_SEQUENCES,
        )
    if task == "presence":
        return SliceSet(
            root.name,
            str(root),
            _classes_for(task),
            np.ascontiguousarray(z["images"][:, 2]),
            z["tumour"].astype(np.int64),
            z["groups"].astype(object),
            sha,
            sequences=("t1ce",),
        )
    raise ValueError(f"a BraTS-style folder has no labels for task {task!r}")


class StoreLabels:
    """Slices with labels confirmed in the review queue (core.store). Same interface as the loaders
    (`load(task, size) -> SliceSet`); not implemented yet: it arrives with the review queue."""

    def __init__(self, db_url: str | None = None):
        self.db_url = db_url

    def load(self, task: str, size: int) -> SliceSet:
        raise NotImplementedError("training on confirmed review-queue labels arrives with the review queue")


# ------------------------------------------------------------------------------ dispatch
def detect_kind(root: Path) -> str:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"training data not found: {root}")
    manifest = root / "manifest.csv"
    if manifest.is_file():
        header = open(manifest, newline="").readline()
        if "pid_family" in header:
            return "figshare"
        if "tumor_pixels" in header:
            return "tcga"
        if "subject" in header and "sequence" in header:
            return "normal"
        if "label" in header and "sha256" in header:
            return "br35h"
    if (root / "LGG").is_dir() or (root / "HGG").is_dir():
        return "brats"
    if any(root.glob("*/*_t1post.nii.gz")):
        return "tcia"
    return "folder"


def _cap_patients(s: SliceSet, max_slices: int, seed: int) -> SliceSet:
    """At most about `max_slices` slices, keeping whole patients (a seeded pick of patients)."""
    if len(s) <= max_slices:
        return s
    rng = np.random.default_rng(seed)
    pats = np.array(sorted(set(s.groups.tolist())))
    keep, n = [], 0
    for p in pats[rng.permutation(len(pats))]:
        if n >= max_slices:
            break
        keep.append(p)
        n += int(np.sum(s.groups == p))
    out = s.subset(np.flatnonzero(np.isin(s.groups, keep)))
    note = f"capped at ~{max_slices} slices by whole patients (seed {seed})"
    before = s.parts[0] if len(s.parts) == 1 else {}
    out.parts = [{**before, **out._summary(), "note": f"{before['note']}; {note}" if before.get("note") else note}]
    return out


_SOURCE = re.compile(r"^(?P<path>.*?)(?P<options>(?::[A-Za-z_]+=[^:,]*)*)(?::(?P<cap>\d+))?$")


def parse_source(spec: str | Path) -> tuple[str, int | None, dict[str, str]]:
    """ "PATH[:key=value]...[:N]" -> (PATH, N or None, {key: value})."""
    m = _SOURCE.match(str(spec))
    options = dict(o.split("=", 1) for o in m.group("options").split(":") if o)
    return m.group("path"), (int(m.group("cap")) if m.group("cap") else None), options


def source_suffix(spec: str | Path) -> tuple[str, str]:
    """ "PATH:opts:N" -> ("PATH", ":opts:N"): the path and what follows it, verbatim."""
    m = _SOURCE.match(str(spec))
    return m.group("path"), str(spec)[len(m.group("path")) :]


def load_dataset(
    paths: str | Path | list, task: str, size: int, *, max_per_source: int | None = None, seed: int = 0
) -> SliceSet:
    """One or several sources (a list, or paths joined by commas) for `task` at `size` px.
    A path written "PATH:N" is capped at about N slices, whole patients, seeded; "PATH:key=value"
    passes an option to the source's loader (`parse_source`: TCGA-LGG `sequences=all|flair|t1pre|t1post`,
    `every=k`)."""
    if isinstance(paths, (str, Path)):
        paths = [p for p in str(paths).split(",") if p.strip()]
    sets = []
    for spec in paths:
        p, cap, options = parse_source(spec)
        cap = cap or max_per_source
        root = Path(p).expanduser()
        kind = detect_kind(root)
        unknown = set(options) - ({"sequences", "every", "tumour_sequences"} if kind == "tcga" else set())
        if unknown:
            raise ValueError(f"{spec}: option(s) {sorted(unknown)} do not apply to a {kind} source")
        if kind == "figshare":
            s = load_figshare(root, task, size)
        elif kind == "tcga":
            tumour_seq = options.get("tumour_sequences")
            s = load_tcga_lgg(
                root,
                task,
                size,
                presence_channel=options.get("sequences", "flair"),
                every=int(options.get("every", 1)),
                tumour_sequences=tuple(tumour_seq.split("+")) if tumour_seq else None,
            )
        elif kind == "tcia":
            s = load_tcia_volumes(root, task, size)
        elif kind == "brats":
            s = load_brats(root, task, size)
        elif kind == "normal":
            s = load_normal(root, task, size)
        elif kind == "br35h":
            s = load_br35h(root, task, size)
        else:
            s = load_image_folder(root, task, size)
        if cap:
            s = _cap_patients(s, cap, seed)
        sets.append(s)
    if len({s.images.ndim for s in sets}) > 1:
        raise ValueError("cannot mix grey and multi-channel sources in one training set")
    return concat(sets)
