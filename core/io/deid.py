"""De-identification: which header fields may leave the loader, and how free text is checked.

Allow-list, not deny-list: a field reaches `Volume.meta` only if it is named here. Everything
else in a DICOM or NIfTI header (patient name/ID/birth date/sex/age, institution, physicians,
operators, accession and study IDs, dates and times, device serial numbers, free-text comments,
private tags, NIfTI `descrip`/`aux_file`/`db_name`/`intent_name` and header extensions) is
dropped. The fields below are acquisition parameters that DICOM PS3.15 Annex E does not list as
identifying. SeriesInstanceUID is kept only as a pseudonym (`dicom.series_key`); never in meta.

Free text. Every string that leaves the loader from a header (the allowed fields, each value of a
multi-valued one such as `T1\\Name` or ImageType, the acquisition evidence for the gate, series
descriptions) goes through `redact`, against `identifiers(ds)`: the words of every identifying
value the file holds, whatever their length (`Li^Bo` gives "li" and "bo"):
- every person-name (PN) element anywhere in the dataset, sequences included
  (ReferencedPatientSequence, OtherPatientIDsSequence, ...), as dicognito's PNAnonymizer does;
- the attributes named in `DICOM_IDENTIFYING` (PS3.15 basic profile, the `deid` package's
  deid.dicom header recipe and dicognito's ID / address / equipment lists), and every attribute
  whose keyword ends in "ID"/"IDs" (deid's `endswith:ID` rule; UIDs are pseudonymised apart);
- dates: any date-like text (19510704, 1951-07-04, 04/07/1951, 4 July 1951, July 4 1951, ...) is
  removed outright, so a birth date cannot pass in a format we did not think of.
A value that matches is replaced by `REDACTED`; when the file's identifiers cannot all be read
(an undecodable element, more elements than `MAX_ELEMENTS`), the identifiers cannot be trusted and
every free-text value is removed.

Compared with the maintained recipes (deid 0.4.13 deid.dicom, dicognito 0.19.0): both remove far
more than they keep, so our allow-list stays; what they covered better and we adopted is the
PN-by-VR and `endswith:ID` rules, the recursion into sequences, and the longer keyword list below.
deid's pixel filters (BurnedInAnnotation YES, ImageType SCREEN SAVE / SECONDARY / REPORTDATA /
DEMOGRAPHICDATA) flag images that may show identity burned into the pixels: see `burned_in`.
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

# Kept for callers that name the free-text fields; every string value is checked (see `scrub`).
DICOM_FREE_TEXT = (
    "SeriesDescription",
    "ContrastBolusAgent",
    "SequenceName",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "ImageType",
)

# Identifying attributes whose *values* we collect to redact free text (they are never copied
# anywhere themselves). PS3.15 basic profile + deid's header recipe + dicognito's lists.
DICOM_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientBirthDate",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "AccessionNumber",
    "StudyID",
    "StationName",
    "DeviceSerialNumber",
    "PatientComments",
    "AdditionalPatientHistory",
    "IssuerOfPatientID",
    "MilitaryRank",
    "Occupation",
    # from deid's deid.dicom header recipe
    "FillerOrderNumberImagingServiceRequest",
    "ConsultingPhysicianName",
    "EvaluatorName",
    "PerformedStationName",
    "SecondaryReviewerName",
    "PersonName",
    "PersonAddress",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "HumanPerformerName",
    "ContactDisplayName",
    "ScheduledPerformingPhysicianName",
    "ReviewerName",
    "NamesOfIntendedRecipientsOfResults",
    "ContentCreatorName",
    "RegionOfResidence",
    "CurrentPatientLocation",
    "PatientTransportArrangements",
    "PatientInstitutionResidence",
    "PerformedLocation",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "OrderEntererLocation",
    "AssignedLocation",
    "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolEthicsCommitteeName",
    "ReferencedPatientAliasSequence",
    # from dicognito
    "BranchOfService",
    "MedicalRecordLocator",
    "PatientReligiousPreference",
    "ResponsibleOrganization",
    "PatientTelecomInformation",
    "CountryOfResidence",
    "RequestingService",
    "PlacerOrderNumberProcedure",
    "FillerOrderNumberProcedure",
    "PlacerOrderNumberImagingServiceRequest",
    "RequestedProcedureID",
    "ScheduledProcedureStepID",
    "PerformedProcedureStepID",
)

# NIfTI header fields kept (numeric geometry / type only; text fields are all dropped).
NIFTI_META_ALLOW = ("datatype", "bitpix", "xyzt_units", "qform_code", "sform_code", "intent_code")

REDACTED = "[removed: may identify the patient]"
UNTRUSTED = "\x00untrusted"  # in a token set: the identifiers could not all be read
MAX_ELEMENTS = 50_000  # elements walked per dataset (sequences included)
MAX_DEPTH = 8  # sequence nesting walked
# words too common to identify anyone (name prefixes/suffixes, institution words): never tokens
STOP_WORDS = frozenset(
    """mr mrs ms miss dr prof jr sr md phd the of and de la le du van von der
    hospital hospitals medical center centre clinic clinics university universitat universite
    institute institut department dept radiology imaging health healthcare systems system
    general memorial with for from lives in on at to by no yes an patient history see""".split()
)

_SPLIT = re.compile(r"[\W_]+", re.UNICODE)
_MONTHS = (
    "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|april|june|"
    "july|august|september|october|november|december"
)
_DATE = re.compile(
    r"(?<!\d)(?:"
    r"(?:19|20)\d{2}[-/. ]?(?:0[1-9]|1[0-2])[-/. ]?(?:0[1-9]|[12]\d|3[01])"  # 19510704, 1951-07-04
    r"|\d{1,2}[-/. ]\d{1,2}[-/. ](?:\d{4}|\d{2})"  # 04/07/1951, 4.7.51
    r"|(?:0[1-9]|[12]\d|3[01])(?:0[1-9]|1[0-2])(?:19|20)\d{2}"  # 04071951
    r")(?!\d)"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?[ \-./]*(?:{_MONTHS})\b[ \-./,]*\d{{2,4}}"  # 4 July 1951
    rf"|\b(?:{_MONTHS})\b[ \-./]*\d{{1,2}}(?:st|nd|rd|th)?[ ,\-./]*\d{{2,4}}",  # July 4, 1951
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    return [w for w in _SPLIT.split(str(text).lower()) if w]


def _add_value(tokens: set[str], value) -> None:
    values = value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
    for item in values:
        if isinstance(item, (bytes, bytearray)):
            item = bytes(item[:1024]).decode("latin-1", "ignore")
        for tok in _words(item):
            if len(tok) < 2 or tok in STOP_WORDS or (tok.isdigit() and len(tok) < 3):
                continue  # initials, house numbers and ages alone identify no one
            tokens.add(tok)


def _identifying_keyword(keyword: str) -> bool:
    return keyword in _IDENTIFYING_SET or (
        (keyword.endswith("ID") or keyword.endswith("IDs")) and not keyword.endswith(("UID", "UIDs"))
    )


_IDENTIFYING_SET = frozenset(DICOM_IDENTIFYING)


def identifying_tokens(ds) -> set[str]:
    """Lower-case word tokens of every identifying value of `ds` (see the module doc). Holds
    `UNTRUSTED` when some could not be read: then `redact` removes every free-text value."""
    from pydicom.datadict import dictionary_VR, keyword_for_tag  # DICOM only: not for NIfTI loads

    tokens: set[str] = set()
    budget = [MAX_ELEMENTS]

    def walk(dataset, depth: int) -> None:
        try:
            tags = list(dataset.keys())
        except Exception:  # noqa: BLE001 - a malformed dataset
            tokens.add(UNTRUSTED)
            return
        for tag in tags:
            budget[0] -= 1
            if budget[0] < 0:
                tokens.add(UNTRUSTED)
                return
            if tag.is_private or tag.group in (0x7FE0, 0x0002) or tag.element == 0:
                continue  # private tags and pixel data are never copied; not words of a person
            try:
                raw = dataset.get_item(tag)
                keyword = keyword_for_tag(tag) or ""
                known = dictionary_VR(tag) if keyword else ""
                vrs = {str(getattr(raw, "VR", "") or ""), str(known or "")}
                if not (vrs & {"SQ", "PN"} or _identifying_keyword(keyword)):
                    continue  # not read at all: an undecodable EchoTime hides no name
                elem = dataset[tag]
                vr = elem.VR
                if vr == "SQ":
                    if depth >= MAX_DEPTH:
                        tokens.add(UNTRUSTED)
                        continue
                    for item in elem.value or []:
                        walk(item, depth + 1)
                    continue
                if vr == "PN" or _identifying_keyword(keyword):
                    _add_value(tokens, elem.value)
            except Exception:  # noqa: BLE001 - an undecodable element could hold a name
                tokens.add(UNTRUSTED)

    walk(ds, 0)
    return tokens


def looks_like_date(text: str) -> bool:
    return bool(_DATE.search(str(text)))


def redact(text: str, tokens: set[str]) -> str:
    """`text`, or REDACTED when it holds an identifying word, a date, or the file's identifiers
    cannot be trusted."""
    if not text:
        return text
    if UNTRUSTED in tokens or looks_like_date(text):
        return REDACTED
    low = str(text).lower()
    words = set(_words(low))
    squashed = "".join(_words(low))
    for tok in tokens:
        if tok in words or (len(tok) >= 3 and tok in low) or (len(tok) >= 4 and tok in squashed):
            return REDACTED
    return text


def scrub(value, tokens: set[str], keep: Sequence[str] = ()):
    """Every string in `value` (dicts and lists walked; keys in `keep` left as they are) redacted."""
    if isinstance(value, str):
        return redact(value, tokens)
    if isinstance(value, dict):
        return {k: (v if k in keep else scrub(v, tokens, keep)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, tokens, keep) for v in value]
    return value


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


# DICOM modality defined terms (PS3.3 C.7.3.1.1.1): any other value is file-supplied free text
MODALITIES = frozenset(
    """AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO
    IOL IVOCT IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN PR PT
    PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR
    SR SRF STAIN TEXTUREMAP TG US VA XA XC""".split()
)


def modality(value) -> str:
    """The Modality as a defined term, or "UNKNOWN" (never file-supplied free text)."""
    text = str(value or "").strip().upper()
    return text if text in MODALITIES else "UNKNOWN"


def burned_in(ds) -> bool:
    """deid's pixel filters: the image may show identity burned into its pixels."""
    try:
        if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
            return True
        codes = {str(v).strip().upper() for v in (ds.get("ImageType") or [])}
    except Exception:  # noqa: BLE001
        return False
    return bool(codes & {"SCREEN SAVE", "REPORTDATA", "DEMOGRAPHICDATA"})


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
        if keyword == "Modality":
            meta[keyword] = modality(value)
            continue
        meta[keyword] = scrub(value, tokens)
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
