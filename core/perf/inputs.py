"""The benchmark's scans: the committed TCIA volume (24 slices) stretched to a BraTS-like 155 slices,
as NIfTI files (one per upload, each a little different so no cache can serve another) and as
classic single-frame DICOM series for the PACS. Generated, so nothing in them identifies anyone."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from core.config import REPO_ROOT

SOURCE = REPO_ROOT / "tests" / "fixtures" / "tcia_btp_PGBM-010_post_t1post.nii.gz"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS (NIfTI) -> LPS (DICOM patient coordinates)


def stretched(source: Path = SOURCE, slices: int | None = 155) -> nib.Nifti1Image:
    """The 3D NIfTI `source` resampled (linear) along its third axis to `slices` planes (None: as is)."""
    img = nib.load(str(source))
    data = np.asanyarray(img.dataobj).astype(np.float32)
    if data.ndim != 3:
        raise ValueError(f"{source.name} is not a 3D volume (shape {data.shape})")
    if slices and slices != data.shape[2]:
        data = ndimage.zoom(data, (1.0, 1.0, slices / data.shape[2]), order=1)
    if not np.issubdtype(img.get_data_dtype(), np.integer):  # e.g. 0..1 floats: an MR-like range
        data = data * (4095.0 / max(float(np.abs(data).max()), 1e-6))
    return _int16(data, img.affine)


def variant(img: nib.Nifti1Image, index: int) -> nib.Nifti1Image:
    """Upload number `index`: the same anatomy, intensities scaled by a few percent (other bytes)."""
    return _int16(np.asanyarray(img.dataobj).astype(np.float32) * (1.0 + 0.03 * index), img.affine)


def _int16(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.clip(np.round(data), -32768, 32767).astype(np.int16), affine)


def nifti_files(folder: Path, count: int, base: nib.Nifti1Image) -> list[Path]:
    """`count` different variants of `base` as NIfTI files in `folder` (bench_0.nii.gz, ...)."""
    paths = []
    for i in range(count):
        path = folder / f"bench_{i}.nii.gz"
        nib.save(variant(base, i), str(path))
        paths.append(path)
    return paths


def dicom_series(img: nib.Nifti1Image, patient_id: str, seed: str) -> list[Dataset]:
    """One MR image per k plane of `img` (its geometry from the affine), in a study of its own for
    patient `patient_id` (a made-up ID the benchmark searches by)."""
    data = np.asanyarray(img.dataobj)
    aff = LPS @ img.affine
    row_vec, col_vec = aff[:3, 0], aff[:3, 1]
    col_sp, row_sp = float(np.linalg.norm(row_vec)), float(np.linalg.norm(col_vec))
    orientation = [round(float(v), 8) for v in (*(row_vec / col_sp), *(col_vec / row_sp))]
    study, series = generate_uid(entropy_srcs=["study", seed]), generate_uid(entropy_srcs=["series", seed])
    out = []
    for k in range(data.shape[2]):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid(entropy_srcs=["sop", seed, str(k)])
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
            MRImageStorage,
            ds.SOPInstanceUID,
        )
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PatientID, ds.PatientName = patient_id, "Benchmark^Phantom"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["for", seed])
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
        ds.StudyDate, ds.SeriesDescription, ds.BodyPartExamined = "20240101", "T1 AX POST", "BRAIN"
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = [round(float(v), 6) for v in (aff @ [0, 0, k, 1])[:3]]
        ds.PixelSpacing = [round(row_sp, 6), round(col_sp, 6)]
        ds.SliceThickness = round(float(np.linalg.norm(aff[:3, 2])), 6)
        ds.set_pixel_data(np.ascontiguousarray(data[:, :, k].T).astype(np.int16), "MONOCHROME2", 16)
        out.append(ds)
    return out
