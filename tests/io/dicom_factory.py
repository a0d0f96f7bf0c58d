"""Write small synthetic DICOM series / NIfTI variants for the io tests (pydicom 3, nibabel).

The geometry comes from a nibabel image: voxel (i, j, k) -> RAS affine. Each k plane becomes one
DICOM slice whose ImageOrientationPatient / ImagePositionPatient / PixelSpacing are derived from
that affine (converted to LPS), so any orientation (axial LPS, sagittal, oblique) can be written.
"""

from __future__ import annotations

import io
import zipfile

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, ornt_transform
from pydicom import config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Identifying values planted in every PS3.15 identifying tag; none may come out of the loader.
PHI = {
    "PatientName": "Zebrowski^Quentin^Amadeus",
    "PatientID": "PHIID77321",
    "PatientBirthDate": "19450317",
    "PatientSex": "F",
    "PatientAge": "078Y",
    "PatientAddress": "12 Marigold Lane Quixtown",
    "PatientTelephoneNumbers": "5550199123",
    "OtherPatientIDs": "OTHERPHI4455",
    "InstitutionName": "Xylophone Memorial Hospital",
    "InstitutionAddress": "99 Vortex Boulevard",
    "InstitutionalDepartmentName": "Neuroradiology Wombat Wing",
    "ReferringPhysicianName": "Drquack^Ursula",
    "PerformingPhysicianName": "Plimsoll^Barnaby",
    "NameOfPhysiciansReadingStudy": "Fennimore^Ottoline",
    "PhysiciansOfRecord": "Gallowglass^Ines",
    "RequestingPhysician": "Huxtable^Jasper",
    "OperatorsName": "Ickleby^Kendra",
    "AccessionNumber": "ACC99812",
    "StudyID": "STY5521",
    "StationName": "STATIONPHI7",
    "DeviceSerialNumber": "SNPHI3141",
    "PatientComments": "lives with Tobias Quarrington",
    "StudyDate": "20240229",
    "StudyTime": "101112",
}
# strings that must not appear anywhere in the loader's output (sex "F" is too short to search)
PHI_STRINGS = [v for k, v in PHI.items() if k != "PatientSex"] + [
    "Zebrowski",
    "Quentin",
    "Xylophone",
    "Drquack",
    "Plimsoll",
    "Quarrington",
    "PRIVATEPHI",
]


def reference_image(shape=(8, 10, 6), zooms=(1.0, 1.5, 3.0), seed=0) -> nib.Nifti1Image:
    """A RAS-canonical test image (voxel order i=x, j=y, k=z) with asymmetric content."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1000, size=shape).astype(np.int16)
    data[0, 0, 0] = 2000  # a marker at the left-posterior-inferior corner
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (-40.0, -30.0, 10.0)
    return nib.Nifti1Image(data, affine)


def reoriented(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same voxels and world positions with voxel axes in the orientation `codes` (e.g. "LPS")."""
    ornt = ornt_transform(axcodes2ornt(tuple(nib.aff2axcodes(img.affine))), axcodes2ornt(tuple(codes)))
    return img.as_reoriented(ornt)


def rotated(img: nib.Nifti1Image, degrees: float, axis: int = 2) -> nib.Nifti1Image:
    """Same voxels, affine rotated about a world axis (an oblique acquisition)."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    rot = np.eye(4)
    a, b = [i for i in range(3) if i != axis]
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
    return nib.Nifti1Image(np.asanyarray(img.dataobj), rot @ img.affine)


def nifti_bytes(img, gz: bool = True) -> bytes:
    raw = img.to_bytes()
    if not gz:
        return raw
    import gzip

    return gzip.compress(raw, mtime=0)


def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _file_meta(sop_class, sop_uid, syntax=ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    return meta


def _common(ds: Dataset, *, series_uid, study_uid, modality, description, phi, series_number):
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = study_uid
    ds.FrameOfReferenceUID = _uid("for", study_uid)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.Manufacturer = "TestVendor"
    ds.MagneticFieldStrength = 3
    ds.RepetitionTime = 500
    ds.EchoTime = 12
    ds.BodyPartExamined = "BRAIN"
    if phi:
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0011, "NEUROGRADE TEST", create=True)
        block.add_new(0x01, "LO", "PRIVATEPHI Zebrowski")


def series_from_image(
    img: nib.Nifti1Image,
    *,
    modality="MR",
    description="T1 AX",
    phi=False,
    series_number=1,
    seed="s",
    slope=1.0,
    intercept=0.0,
    instance_numbers=None,
) -> list[Dataset]:
    """One classic single-frame DICOM dataset per k plane of `img`."""
    data = np.asanyarray(img.dataobj)
    aff = LPS @ img.affine
    row_vec, col_vec = aff[:3, 0], aff[:3, 1]
    col_sp, row_sp = float(np.linalg.norm(row_vec)), float(np.linalg.norm(col_vec))
    iop = [*(row_vec / col_sp), *(col_vec / row_sp)]
    series_uid = _uid("series", seed)
    study_uid = _uid("study", seed)
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    out = []
    for k in range(data.shape[2]):
        sop_uid = _uid("sop", seed, k)
        ds = Dataset()
        ds.file_meta = _file_meta(sop_class, sop_uid)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        _common(
            ds,
            series_uid=series_uid,
            study_uid=study_uid,
            modality=modality,
            description=description,
            phi=phi,
            series_number=series_number,
        )
        ds.InstanceNumber = instance_numbers[k] if instance_numbers is not None else k + 1
        ds.ImageOrientationPatient = [round(float(v), 8) for v in iop]
        ds.ImagePositionPatient = [round(float(v), 6) for v in (aff @ [0, 0, k, 1])[:3]]
        ds.PixelSpacing = [round(row_sp, 6), round(col_sp, 6)]
        ds.SliceThickness = round(float(np.linalg.norm(aff[:3, 2])), 6)
        plane = np.ascontiguousarray(data[:, :, k].T)  # (rows=j, cols=i)
        stored = np.round((plane - intercept) / slope).astype(np.int16)
        ds.set_pixel_data(stored, "MONOCHROME2", 16)
        if slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope = slope
            ds.RescaleIntercept = intercept
        out.append(ds)
    return out


def enhanced_from_image(img: nib.Nifti1Image, *, seed="enh", slope=0.5, intercept=-10.0) -> Dataset:
    """One Enhanced MR multi-frame dataset with per-frame functional groups."""
    from pydicom.sequence import Sequence

    data = np.asanyarray(img.dataobj)
    aff = LPS @ img.affine
    row_vec, col_vec = aff[:3, 0], aff[:3, 1]
    col_sp, row_sp = float(np.linalg.norm(row_vec)), float(np.linalg.norm(col_vec))
    iop = [*(row_vec / col_sp), *(col_vec / row_sp)]
    sop_uid = _uid("sop", seed)
    ds = Dataset()
    ds.file_meta = _file_meta(EnhancedMRImageStorage, sop_uid)
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = sop_uid
    _common(
        ds,
        series_uid=_uid("series", seed),
        study_uid=_uid("study", seed),
        modality="MR",
        description="ENHANCED T1",
        phi=False,
        series_number=3,
    )
    n = data.shape[2]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [round(row_sp, 6), round(col_sp, 6)]
    measures.SliceThickness = round(float(np.linalg.norm(aff[:3, 2])), 6)
    shared.PixelMeasuresSequence = Sequence([measures])
    orient_item = Dataset()
    orient_item.ImageOrientationPatient = [round(float(v), 8) for v in iop]
    shared.PlaneOrientationSequence = Sequence([orient_item])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    order = list(range(n))[::-1]  # frames stored in reverse slice order
    for k in order:
        fg = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [round(float(v), 6) for v in (aff @ [0, 0, k, 1])[:3]]
        fg.PlanePositionSequence = Sequence([pos])
        pvt = Dataset()
        pvt.RescaleSlope = slope
        pvt.RescaleIntercept = intercept
        pvt.RescaleType = "US"
        fg.PixelValueTransformationSequence = Sequence([pvt])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    stored = np.stack([np.round((data[:, :, k].T - intercept) / slope) for k in order]).astype(np.int16)
    ds.set_pixel_data(stored, "MONOCHROME2", 16)
    ds.NumberOfFrames = n
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    keep = config.replace_un_with_known_vr
    config.replace_un_with_known_vr = False  # `with_undecodable` elements are written as they are
    try:
        ds.save_as(buf, enforce_file_format=True)
    finally:
        config.replace_un_with_known_vr = keep
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_series(datasets, folder, names=None) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / (names[i] if names else f"IM{i:04d}.dcm")
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def with_header(datasets, **attributes):
    """Set DICOM attributes (keyword=value) on every dataset, e.g. ImageType=[...]; returns them."""
    for ds in datasets:
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
    return datasets


def with_siemens_b_value(datasets, b_value: int):
    """The Siemens private b-value tag (0019,xx0C) of classic diffusion images."""
    for ds in datasets:
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", b_value)
    return datasets


def with_frame_type(ds: Dataset, frame_type, *, b_value=None, complex_component="MAGNITUDE") -> Dataset:
    """An enhanced MR dataset's frame type (shared MRImageFrameTypeSequence) and, with `b_value`,
    a per-frame MRDiffusionSequence."""
    from pydicom.sequence import Sequence

    item = Dataset()
    item.FrameType = list(frame_type)
    item.ComplexImageComponent = complex_component
    ds.SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence = Sequence([item])
    ds.ImageType = list(frame_type)
    if b_value is not None:
        for fg in ds.PerFrameFunctionalGroupsSequence:
            diffusion = Dataset()
            diffusion.DiffusionBValue = b_value
            diffusion.DiffusionDirectionality = "ISOTROPIC" if b_value else "NONE"
            fg.MRDiffusionSequence = Sequence([diffusion])
    return ds


def with_undecodable(datasets, tag: int, raw: bytes):
    """A standard attribute stored as UN with bytes that do not decode as its real VR (hostile
    input: pydicom raises or returns garbage when the reader asks for it)."""
    for ds in datasets:
        ds._dict[Tag(tag)] = RawDataElement(Tag(tag), "UN", len(raw), raw, 0, False, True)
    return datasets
