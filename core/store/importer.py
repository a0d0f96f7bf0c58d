"""Bulk import of image folders and volumes into the review queue (`python -m core queue import`).

Each image file, NIfTI file, or folder of DICOM files becomes one de-identified case; its slices
become items queued for the given tasks. An optional CSV gives patient ids and known labels,
stored hidden (simulation, per-patient cap, audit) and never shown to reviewers. The shared data
manifests work as they are: figshare-cemri/manifest.csv (image, label, pid_family) and
tcga-lgg/manifest.csv (image, patient, grade).

The case's `source` is a neutral description ("import 3/120: image"): file names can carry patient
identity (e.g. TCGA ids with scan dates), so only a SHA-1 of the path goes into the case meta, and
progress lines and `ImportResult.errors` (which reach `jobs.log_tail` and `--json`) name a source
by its position ("source 3 of 120"). `ImportResult.error_paths` keeps the paths for the person who
typed them (the CLI's text on their terminal); it is never stored or exported.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import home_problem
from core.io import VolumeLoadError, load_volume
from core.preprocess import slices

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_EXT = (".nii", ".nii.gz", ".zip")
PATH_COLUMNS = ("path", "image", "file", "filename", "id")
PATIENT_COLUMNS = ("pid_family", "patient", "patient_id", "pid", "subject")
LABEL_COLUMNS = ("label", "known_label", "grade", "class")
BLANK_MAX = 0.02  # a slice whose brightest pixel is below this (of [0, 1]) is not queued


@dataclass
class ImportResult:
    cases: int = 0
    items: int = 0
    case_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    matched_csv_rows: int = 0
    error_paths: list[str] = field(default_factory=list)  # for the terminal only; not in to_dict
    skipped: int = 0  # sources that could not be read (bad input, blank): nothing stored
    failed: int = 0  # sources whose case could not be stored (disk full, database error)
    stopped: str | None = None  # why the import stopped early (the home folder is full/read-only)

    def to_dict(self) -> dict:
        return {
            "cases": self.cases,
            "items": self.items,
            "case_ids": self.case_ids,
            "errors": self.errors,
            "matched_csv_rows": self.matched_csv_rows,
            "imported": self.cases,
            "skipped": self.skipped,
            "failed": self.failed,
            "stopped": self.stopped,
        }

    def summary(self) -> str:
        return (
            f"{self.cases} imported, {self.skipped} skipped (could not be read), {self.failed} "
            "failed (not stored)" + (f"; stopped: {self.stopped}" if self.stopped else "")
        )


def _is(path: Path, exts: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(exts))


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    if path.suffix == "" and path.is_file():
        try:
            with open(path, "rb") as fh:
                return fh.read(132)[128:132] == b"DICM"
        except OSError:
            return False
    return False


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """The import sources under `paths`: image/NIfTI/zip files, and folders holding DICOM files."""
    out: list[Path] = []
    paths = list(paths)
    for k, raw in enumerate(paths, start=1):
        p = Path(raw)
        if p.is_file():
            out.append(p)
            continue
        if not p.is_dir():  # by position: the message may be stored (job log), the path may identify
            raise FileNotFoundError(f"import path {k} of {len(paths)} does not exist")
        for d in sorted([p, *[q for q in p.rglob("*") if q.is_dir()]]):
            files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
            if any(_is_dicom(f) for f in files):
                out.append(d)
            out.extend(f for f in files if _is(f, IMAGE_EXT + VOLUME_EXT))
    return out


def read_csv(path: str | Path) -> tuple[dict[str, dict], Path]:
    """Rows keyed by every way a source may name them: the resolved path, the path as written,
    parent/name, name and stem; a short key that several rows share (e.g. "019.jpg" in every
    TCGA patient folder) is dropped rather than guessed."""
    path = Path(path)
    rows: dict[str, dict] = {}
    ambiguous: set[str] = set()
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.lower().strip(): c for c in (reader.fieldnames or [])}
        pcol = next((cols[c] for c in PATH_COLUMNS if c in cols), None)
        if pcol is None:
            raise ValueError(f"{path}: needs a column naming the file ({', '.join(PATH_COLUMNS)})")
        kcol = next((cols[c] for c in PATIENT_COLUMNS if c in cols), None)
        lcol = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
        for r in reader:
            ref = (r.get(pcol) or "").strip()
            if not ref:
                continue
            rec = {
                "patient": (r.get(kcol) or "").strip() or None if kcol else None,
                "label": (r.get(lcol) or "").strip() or None if lcol else None,
            }
            full = str((path.parent / ref).resolve())
            rows[full] = rows[ref] = rec
            r = Path(ref)
            for key in {f"{r.parent.name}/{r.name}", r.name, r.stem}:
                if key in rows and rows[key] is not rec:
                    ambiguous.add(key)
                rows[key] = rec
    for key in ambiguous:
        rows.pop(key, None)
    return rows, path.parent


def _lookup(rows: dict[str, dict], source: Path) -> dict | None:
    for key in (
        str(source.resolve()),
        str(source),
        f"{source.parent.name}/{source.name}",
        source.name,
        source.stem,
        source.name.split(".")[0],
    ):
        if key in rows:
            return rows[key]
    return None


def _display_slices(volume, plane: str) -> np.ndarray:
    """(N, H, W) grey, or (N, H, W, 3) for three named sequences / distinct RGB channels."""
    names = list(volume.channels)
    if {"red", "green", "blue"} <= set(names):
        return np.stack([slices(volume, plane, c) for c in ("red", "green", "blue")], axis=-1)
    if len(names) == 3:
        return np.stack([slices(volume, plane, c) for c in names], axis=-1)
    return slices(volume, plane)


def import_paths(
    repo,
    paths: Iterable[str | Path],
    *,
    csv_path: str | Path | None = None,
    tasks: Sequence[str] = ("presence", "tumor_type", "grade"),
    plane: str = "axial",
    sequences: Sequence[str] | None = None,  # names of RGB image channels
    keep_blank: bool = False,
    actor: str = "import",
    progress: Callable[[float, str], None] | None = None,
) -> ImportResult:
    rows = read_csv(csv_path)[0] if csv_path else {}
    sources = discover(paths)
    result = ImportResult()
    for n, src in enumerate(sources, start=1):
        if result.stopped:  # the store cannot take more: the rest fail, nothing half-stored
            result.failed += 1
            result.errors.append(f"source {n} of {len(sources)}: not imported ({result.stopped})")
            result.error_paths.append(str(src))
            continue
        try:
            seqs = list(sequences) if sequences and _is(src, IMAGE_EXT) else None
            volume = load_volume(str(src), sequences=seqs)
            images = _display_slices(volume, plane)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - one bad source never aborts the others
            what = exc if isinstance(exc, VolumeLoadError) else type(exc).__name__  # OSError quotes the path
            result.errors.append(f"source {n} of {len(sources)}: {what}")
            result.error_paths.append(str(src))
            result.skipped += 1
            continue
        peak = images.reshape(len(images), -1).max(axis=1)
        keep = [i for i in range(len(images)) if keep_blank or peak[i] >= BLANK_MAX]
        if not keep:
            result.errors.append(f"source {n} of {len(sources)}: every slice is blank")
            result.error_paths.append(str(src))
            result.skipped += 1
            continue
        rec = _lookup(rows, src) if rows else None
        if rec is not None:
            result.matched_csv_rows += 1
        label = rec["label"] if rec else None
        single = volume.shape[0] == 1 and len(keep) == 1
        meta = {k: v for k, v in dict(volume.meta).items() if isinstance(v, (str, int, float, bool)) or v is None}
        meta["source_sha1"] = hashlib.sha1(str(src.resolve()).encode()).hexdigest()
        summary = {
            "modality": volume.modality,
            "shape": volume.shape,
            "meta": meta,
            "source_format": volume.source_format,
        }
        try:  # one transaction per case (cases.save): a case is stored whole or not at all
            case_id = repo.cases.save(
                summary,
                [images[i] for i in keep],
                source=f"import {n}/{len(sources)}: {volume.source_format}",
                plane=plane,
                slice_indices=keep,
                tasks=tasks,
                patient_key=rec["patient"] if rec else None,
                known_label=label,
                item_known_labels=[label] * len(keep) if (single and label) else None,
                actor=actor,
            )
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - disk full, read-only, database errors
            why = home_problem(exc)
            result.failed += 1
            result.errors.append(f"source {n} of {len(sources)}: not stored ({why or type(exc).__name__})")
            result.error_paths.append(str(src))
            if why is not None:
                result.stopped = why
            continue
        result.cases += 1
        result.items += len(keep)
        result.case_ids.append(case_id)
        if progress:
            try:
                progress(n / len(sources), f"source {n} of {len(sources)}: {len(keep)} items")
            except Exception as exc:  # noqa: BLE001 - a full disk can refuse the progress row too
                if home_problem(exc) is None:
                    raise
                progress = None
    return result
