"""A study of several series (DICOM series, or one NIfTI file per sequence) -> ONE Volume whose
channels are named by sequence and lie on one voxel grid.

- Each series is read as a single-series upload is, and named by `core.io.recognise` (header or
  file name); "unknown" stays unknown and is reported. Series that are not anatomical (localizers,
  diffusion, maps: `core.io.acquisition`) and label files (`_seg`, `_mask`) are left out, listed.
- The series must belong to one study of one patient (DICOM StudyInstanceUID and PatientID; BIDS
  `sub-`/`ses-` or a BraTS case prefix in file names) and overlap in scanner (world) space.
- They are resampled (trilinear, nibabel.processing) onto the grid of the reference series: the
  finest of the "complete" series, those whose field of view is at least `COMPLETE_FRACTION` of
  the largest one. Finest, because resampling onto a coarser grid throws detail away; complete,
  because a fine thin slab (a coronal pituitary series) would crop every other channel to it.
- The grid is bounded: all channels together hold at most NEUROGRADE_MAX_VOXELS voxels (the
  reference grid is coarsened when they would not), at most `MAX_STUDY_SERIES` series.
"""

from __future__ import annotations

import dataclasses
import itertools

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from core.io import recognise, sniff
from core.io.acquisition import NOT_ANATOMICAL, assess_acquisition
from core.io.dicom import DicomUpload
from core.io.limits import MAX_STUDY_SERIES
from core.io.nifti import read_nifti
from core.io.volume import Volume, VolumeLoadError
from core.sequences import SEQUENCE_TITLES, canonical_sequence, sequence_title

COMPLETE_FRACTION = 0.8  # of the largest field of view: a series this big can be the reference
MIN_OVERLAP = 0.25  # of the smaller field of view: below it, the series do not overlap
PARTIAL_OVERLAP = 0.9  # of the reference field of view: below it, a warning
EXPECTED = ("t1pre", "t1post", "t2", "flair")  # a brain-tumour protocol: missing ones are reported


@dataclasses.dataclass
class Part:
    """One series of the study before alignment."""

    volume: Volume
    found: recognise.Recognition
    row: dict  # the de-identified series row shown in `Volume.series`
    case: str | None = None  # who / which session, when the source says (compared, never kept)


# ---------------------------------------------------------------------------- reading the parts
def dicom_parts(upload: DicomUpload, *, settings, allow_ct: bool) -> tuple[list[Part], list[dict], list[str]]:
    """The image series of a DICOM upload that can be channels, the rows of those left out (with
    why), and warnings. VolumeLoadError when the series belong to different studies or patients."""
    parts, left_out = [], []
    identities = set()
    for row in upload.summary:
        row = dict(row, selected=False)
        if not row["n_slices"]:
            left_out.append(dict(row, left_out="no image data"))
            continue
        if row["modality"] not in ("MR", *(("CT",) if allow_ct else ())):
            left_out.append(dict(row, left_out=f"modality {row['modality']}, not MR"))
            continue
        acq = upload.acquisition(row["uid"])
        check = assess_acquisition(acq)
        if check.verdict == NOT_ANATOMICAL:
            left_out.append(dict(row, left_out="; ".join(check.reasons)))
            continue
        identities.add(upload.identity(row["uid"]))
        parts.append((row, acq))
    _check_one_study(identities)
    out = []
    for row, acq in parts:
        volume = upload.volume(row["uid"], allow_ct=allow_ct, max_voxels=settings.max_voxels, limits=settings)
        found = recognise.from_acquisition(acq)
        out.append(Part(volume, found, row))
    return out, left_out, list(upload.warnings)


def _check_one_study(identities: set[tuple[str, str]]) -> None:
    studies = {study for study, _ in identities if study}
    patients = {patient for _, patient in identities if patient}
    if len(patients) > 1:
        raise VolumeLoadError(
            f"The series belong to {len(patients)} different patients (PatientID); "
            "a study must be one patient's. Upload one patient's series at a time."
        )
    if len(studies) > 1:
        raise VolumeLoadError(
            f"The series belong to {len(studies)} different studies "
            "(StudyInstanceUID), e.g. two visits; their channels cannot be combined. "
            "Upload the series of one study."
        )


def nifti_parts(blobs, *, settings) -> tuple[list[Part], list[dict], list[str]]:
    """One part per NIfTI file, named from the file name; label files (`_seg`, `_mask`) left out."""
    parts, left_out = [], []
    n = len(blobs)
    for k, blob in enumerate(blobs, start=1):
        label = f"file {k} of {n}"  # never the file name: it can identify the patient
        found = recognise.from_filename(blob.name)
        row = {
            "uid": f"file-{k}",
            "index": k - 1,
            "number": None,
            "description": label,
            "modality": "MR",
            "n_slices": 0,
            "rows": 0,
            "columns": 0,
            "selected": False,
        }
        if found.sequence == "label":
            left_out.append(dict(row, left_out=f"a segmentation or mask ({found.evidence})"))
            continue
        try:
            volume = read_nifti(blob.data, max_voxels=settings.max_voxels, max_bytes=settings.max_decoded_bytes)
        except VolumeLoadError as exc:
            raise VolumeLoadError(f"{label[:1].upper()}{label[1:]} of the study: {exc}") from None
        if len(volume.channels) > 1:
            raise VolumeLoadError(
                f"{label[:1].upper()}{label[1:]} holds {len(volume.channels)} volumes; "
                "each file of a study must hold one 3D sequence."
            )
        row.update(n_slices=volume.shape[0], rows=volume.shape[1], columns=volume.shape[2])
        parts.append(Part(volume, found, row, recognise.case_of(blob.name)))
    cases = {p.case for p in parts if p.case is not None}
    if len(cases) > 1:
        raise VolumeLoadError(
            f"The file names name {len(cases)} different subjects, sessions or cases "
            "(BIDS sub-/ses-, or the part before the sequence); a study must be one "
            "patient's scans of one session."
        )
    return parts, left_out, []


# ---------------------------------------------------------------------------- assembling
def assemble(
    parts: list[Part], left_out: list[dict], warnings: list[str], *, sequences=None, max_voxels: int
) -> Volume:
    """The parts as one Volume on the reference grid. `sequences`: the channel names, a list in
    the order of the parts (as for any multi-channel input) or a mapping {recognised name, series
    key or index: name} that corrects some of them."""
    if not parts:
        why = "; ".join(f"{r['description'] or r['uid']}: {r['left_out']}" for r in left_out[:4])
        raise VolumeLoadError("None of the series can be a channel of the study" + (f" ({why})." if why else "."))
    if len(parts) > MAX_STUDY_SERIES:
        raise VolumeLoadError(
            f"The study has {len(parts)} series that could be channels; at most "
            f"{MAX_STUDY_SERIES} are combined. Upload the sequences you need."
        )
    warnings = list(warnings)
    names = _names(parts, sequences, warnings)
    ref = _reference(parts)
    shape, affine = _grid(parts[ref].volume, len(parts), max_voxels, warnings)
    boxes = [_box(p.volume.affine, p.volume.shape) for p in parts]
    ref_box = _box(affine, shape)
    channels: dict[str, np.ndarray] = {}
    rows = []
    for i, (part, name) in enumerate(zip(parts, names)):
        _check_overlap(parts, i, ref, boxes, warnings, name)
        same = part.volume.shape == shape and np.allclose(part.volume.affine, affine, atol=1e-3)
        channels[name] = part.volume.array if same else _resample(part.volume, shape, affine)
        covered = _overlap(boxes[i], ref_box) / _size(ref_box)
        if covered < PARTIAL_OVERLAP:
            warnings.append(
                f"{_title(name)} covers {covered:.0%} of the study's field of view; outside it the channel is blank."
            )
        rows.append(
            dict(
                part.row,
                selected=True,
                channel=name,
                sequence=part.found.sequence,
                recognised_from=part.found.evidence,
                doubt=part.found.doubt,
                reference=i == ref,
                resampled=not same,
                spacing=[round(float(s), 4) for s in part.volume.spacing],
            )
        )
    resampled = [r["channel"] for r in rows if r["resampled"]]
    if resampled:
        sz, sy, sx = _spacing(affine)
        warnings.append(
            f"{', '.join(map(_title, resampled))} resampled (trilinear) onto the grid of "
            f"{_title(names[ref])} ({sx:.3g} x {sy:.3g} x {sz:.3g} mm) by their scanner "
            "coordinates."
        )
    _report_names(rows, warnings)
    first = parts[ref].volume
    meta = dict(first.meta)
    meta["study"] = {
        "n_series": len(parts),
        "reference": names[ref],
        "channels": {r["channel"]: r["sequence"] for r in rows},
    }
    sources = {p.volume.source_format for p in parts}
    return Volume(
        array=channels[names[ref]],
        spacing=_spacing(affine),
        affine=affine,
        modality=first.modality,
        source_format=first.source_format if len(sources) == 1 else "mixed",
        channels=channels,
        meta=meta,
        warnings=warnings + [w for p in parts for w in p.volume.warnings if w not in warnings],
        series=rows + left_out,
    )


def _names(parts: list[Part], sequences, warnings: list[str]) -> list[str]:
    found = [p.found.sequence for p in parts]
    names = _unique(found)
    if sequences is None:
        return names
    if isinstance(sequences, dict):
        keys = {}
        for i, (part, name) in enumerate(zip(parts, names)):
            for key in (name, part.row.get("uid"), i, str(i)):
                keys.setdefault(key, i)
        out = list(names)
        for key, new in sequences.items():
            if key not in keys:
                raise VolumeLoadError(f"No series {key!s} in this study to rename; it has {', '.join(names)}.")
            out[keys[key]] = str(new)
    else:
        out = [str(s) for s in sequences]
        if len(out) != len(parts):
            raise VolumeLoadError(
                f"The study has {len(parts)} series ({', '.join(names)}) but {len(out)} sequence name(s) were given."
            )
    if len(set(out)) != len(out):
        raise VolumeLoadError(f"Two series cannot have the same name ({', '.join(out)}).")
    for part, name in zip(parts, out):
        if name != part.found.sequence:
            part.found = recognise.Recognition(part.found.sequence, part.found.evidence + "; named by the user")
    return out


def _unique(found: list[str]) -> list[str]:
    """ "t1post", "t1post" -> "t1post", "t1post_2"."""
    seen: dict[str, int] = {}
    out = []
    for name in found:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _report_names(rows: list[dict], warnings: list[str]) -> None:
    for row in rows:
        if row["sequence"] == recognise.UNKNOWN and "named by the user" not in row["recognised_from"]:
            warnings.append(
                f"The sequence of {row['description'] or row['uid']} was not recognised "
                f"({row['recognised_from']}); it is channel {row['channel']!r}. Name it "
                "(sequences=) so that each model reads the sequence it expects."
            )
        if row["doubt"]:
            warnings.append(f"{row['description'] or row['uid']}: {row['doubt']}.")
    have = {canonical_sequence(row["channel"]) or row["sequence"] for row in rows}
    missing = [SEQUENCE_TITLES[s] for s in EXPECTED if s not in have]
    if missing:
        warnings.append(
            f"The study has no {', '.join(missing)}: models that prefer "
            f"{'it' if len(missing) == 1 else 'them'} read another sequence."
        )


def _title(name: str) -> str:
    return sequence_title(name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name)


# ---------------------------------------------------------------------------- geometry
def _box(affine: np.ndarray, shape_zyx) -> np.ndarray:
    """World (RAS mm) bounding box [[min x, y, z], [max x, y, z]] of a grid, voxel edges included."""
    nz, ny, nx = shape_zyx
    corners = np.array(list(itertools.product((-0.5, nx - 0.5), (-0.5, ny - 0.5), (-0.5, nz - 0.5))))
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    return np.stack([world.min(0), world.max(0)])


def _size(box: np.ndarray) -> float:
    return float(np.prod(np.maximum(box[1] - box[0], 0.0)))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return _size(np.stack([np.maximum(a[0], b[0]), np.minimum(a[1], b[1])]))


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    return float(zooms[2]), float(zooms[1]), float(zooms[0])


def _reference(parts: list[Part]) -> int:
    """The finest of the series whose field of view is at least COMPLETE_FRACTION of the largest;
    ties: the most voxels, then the first."""
    sizes = [_size(_box(p.volume.affine, p.volume.shape)) for p in parts]
    complete = [i for i, s in enumerate(sizes) if s >= COMPLETE_FRACTION * max(sizes)]
    return min(
        complete,
        key=lambda i: (round(float(np.prod(parts[i].volume.spacing)), 6), -int(np.prod(parts[i].volume.shape)), i),
    )


def _grid(reference: Volume, n_channels: int, max_voxels: int, warnings: list[str]):
    """(shape (z, y, x), affine) of the study grid: the reference's, coarsened when all channels
    together would pass `max_voxels`."""
    shape, affine = reference.shape, reference.affine
    total = n_channels * int(np.prod(shape))
    if total <= max_voxels:
        return shape, affine
    factor = (total / max_voxels) ** (1 / 3) * 1.001
    new_shape = tuple(max(1, int(np.floor(s / factor))) for s in shape)
    scale = np.array(shape[::-1], float) / np.array(new_shape[::-1], float)  # (x, y, z) voxel axes
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * scale
    # keep the grid's outer edge: the first voxel centre moves by half the growth of a voxel
    new_affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((scale - 1) / 2)
    warnings.append(
        f"The {n_channels} series on the finest grid would take {total:,} voxels, more "
        f"than the {max_voxels:,} accepted (NEUROGRADE_MAX_VOXELS); the study grid was "
        f"coarsened by {factor:.2f}x."
    )
    return new_shape, new_affine


def _check_overlap(parts, i: int, ref: int, boxes, warnings, name: str) -> None:
    if i == ref:
        return
    shared = _overlap(boxes[i], boxes[ref])
    smaller = min(_size(boxes[i]), _size(boxes[ref]))
    if smaller <= 0 or shared < MIN_OVERLAP * smaller:
        where = parts[i].row.get("description") or parts[i].row.get("uid")
        raise VolumeLoadError(
            f"The series do not overlap in the scanner's space: {where} ({_title(name)}) shares "
            f"{shared / smaller if smaller > 0 else 0:.0%} of its field of view with "
            f"{parts[ref].row.get('description') or parts[ref].row.get('uid')} (the reference). They "
            "are not of the same head position or their geometry is wrong; they cannot be aligned."
        )


def _resample(volume: Volume, shape_zyx, affine: np.ndarray) -> np.ndarray:
    """`volume` on the grid (shape, affine) by world coordinates; blank (0) outside its own."""
    img = nib.Nifti1Image(np.ascontiguousarray(volume.array.transpose(2, 1, 0)), volume.affine)
    out = resample_from_to(img, (tuple(shape_zyx[::-1]), affine), order=1, mode="constant", cval=0.0)
    return np.ascontiguousarray(np.asanyarray(out.dataobj, dtype=np.float32).transpose(2, 1, 0))


# ---------------------------------------------------------------------------- after loading
def rename_channels(volume: Volume, mapping: dict) -> Volume:
    """The same volume with channels renamed ({old: new}; keys may also be series keys, as in
    `Volume.series`), without reloading nor copying voxels. Names stay as given (see
    core.sequences: code asks `find_channel`)."""
    keys = {row["uid"]: row["channel"] for row in volume.series if row.get("channel")}
    new = {}
    for old, name in mapping.items():
        channel = old if old in volume.channels else keys.get(old)
        if channel is None:
            raise VolumeLoadError(f"No channel {old!s} to rename; the scan has {', '.join(volume.channels)}.")
        new[channel] = str(name)
    names = [new.get(c, c) for c in volume.channels]
    if len(set(names)) != len(names):
        raise VolumeLoadError(f"Two channels cannot have the same name ({', '.join(names)}).")
    channels = {new.get(c, c): data for c, data in volume.channels.items()}
    series = [
        dict(r, channel=new[r["channel"]], recognised_from=r.get("recognised_from", "") + "; named by the user")
        if r.get("channel") in new
        else r
        for r in volume.series
    ]
    meta = dict(volume.meta)
    if "study" in meta:
        meta["study"] = dict(
            meta["study"],
            reference=new.get(meta["study"]["reference"], meta["study"]["reference"]),
            channels={r["channel"]: r["sequence"] for r in series if r.get("channel")},
        )
    return dataclasses.replace(
        volume,
        channels=channels,
        series=series,
        meta=meta,
        array=channels[new.get(volume.active_channel, volume.active_channel)],
    )


def is_nifti(blob) -> bool:
    return blob.kind in (sniff.NIFTI, sniff.GZIP)
