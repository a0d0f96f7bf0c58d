"""De-identification: which header fields may leave the loader.

Allow-list, not deny-list: a field reaches `Volume.meta` only if it is named here. Everything
else in a DICOM or NIfTI header (patient name/ID/birth date/sex/age, institution, physicians,
operators, accession and study IDs, dates and times, device serial numbers, free-text comments,
private tags, NIfTI `descrip`/`aux_file`/`db_name`/`intent_name` and header extensions) is
dropped. The fields below are acquisition parameters that DICOM PS3.15 Annex E does not list as
identifying; free-text ones (SeriesDescription, ...) are additionally redacted when they contain
any part of the patient's identifying values (technicians sometimes type a name there).
SeriesInstanceUID is kept only in `Volume.series` so a caller can pick a series; never in meta.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# DICOM keywords copied into Volume.meta (values converted to plain JSON types).
DICOM_META_ALLOW = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "SeriesDescription",
    "BodyPartExamined",
    "ImageType",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "SequenceName",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "EchoTrainLength",
    "NumberOfAverages",
    "ImagedNucleus",
    "PixelBandwidth",
    "PixelSpacing",
    "Rows",
    "Columns",
    "BitsStored",
    "PhotometricInterpretation",
    "ContrastBolusAgent",
)

# Free-text fields among the allowed ones: redacted if they contain identifying tokens.
DICOM_FREE_TEXT = ("SeriesDescription", "ContrastBolusAgent", "SequenceName", "BodyPartExamined")

# PS3.15 basic-profile identifying attributes whose *values* we collect to redact free text
# (they are never copied anywhere themselves).
DICOM_IDENTIFYING = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "PatientBirthDate",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "RequestingPhysician", "OperatorsName", "AccessionNumber", "StudyID",
    "StationName", "DeviceSerialNumber", "PatientComments", "AdditionalPatientHistory",
    "IssuerOfPatientID", "MilitaryRank", "Occupation", "RequestAttributesSequence",
)

# NIfTI header fields kept (numeric geometry / type only; text fields are all dropped).
NIFTI_META_ALLOW = ("datatype", "bitpix", "xyzt_units", "qform_code", "sform_code", "intent_code")

REDACTED = "[removed: may identify the patient]"


def identifying_tokens(ds) -> set[str]:
    """Lower-case word tokens (>= 3 chars) of the dataset's identifying values."""
    tokens: set[str] = set()
    for keyword in DICOM_IDENTIFYING:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - a malformed element must not stop loading
            continue
        if value is None or keyword.endswith("Sequence"):
            continue
        values = value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
        for item in values:
            for tok in re.split(r"[\s\^,;/\\\-_.]+", str(item).lower()):
                if len(tok) >= 3:
                    tokens.add(tok)
    return tokens


def redact(text: str, tokens: set[str]) -> str:
    low = text.lower()
    return REDACTED if any(tok in low for tok in tokens) else text


def plain(value):
    """A pydicom/numpy value as a JSON-friendly Python value."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, str):
        return value
    if hasattr(value, "__iter__"):
        items = [plain(v) for v in value]
        return [v for v in items if v is not None]
    try:
        number = float(value)
        return int(number) if number.is_integer() and "." not in str(value) else number
    except (TypeError, ValueError):
        return str(value)


def dicom_meta(ds, tokens: set[str] | None = None) -> dict:
    """Allowed, de-identified DICOM fields of `ds` (absent/empty ones left out)."""
    tokens = identifying_tokens(ds) if tokens is None else tokens
    meta: dict = {}
    for keyword in DICOM_META_ALLOW:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001
            continue
        value = plain(value)
        if value in (None, "", []):
            continue
        if keyword in DICOM_FREE_TEXT and isinstance(value, str):
            value = redact(value, tokens)
        meta[keyword] = value
    return meta


def nifti_meta(header) -> dict:
    """Allowed NIfTI header fields (no text fields, no extensions)."""
    meta: dict = {}
    for key in NIFTI_META_ALLOW:
        try:
            meta[key] = plain(header[key])
        except Exception:  # noqa: BLE001
            continue
    return meta
