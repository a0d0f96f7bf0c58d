"""DICOM header evidence for the input gate: is this an anatomical MR image the models can read?

`acquisition(images, tokens)` runs at load time and keeps, in `Volume.meta["acquisition"]`, the
non-identifying acquisition attributes of the DICOM images that were read (a plain JSON-able dict).
`assess_acquisition(acq)` is a pure function of that dict: the gate calls it.

What counts as "not anatomical". A field map once read as "Glioma 91%": the header said what it
was. Rules are conservative, because refusing a plain T1/T2/FLAIR is worse than asking a human:
- DERIVED is not a reason by itself: MPR reformats, resampled and filtered images are DERIVED and
  anatomical. Only specific derived or acquired kinds are refused: phase, field maps (B0/B1),
  diffusion (DWI, b = 0 of a diffusion series, ADC, tensor maps), localizers, perfusion (DSC, ASL
  and their maps), projections (MIP/MinIP), subtractions, quantitative T1/T2/T2* maps, tiled
  mosaics, fMRI, spectroscopy, flow-encoded images, and other modalities or body parts.
- Not refused: real/imaginary components (phase-sensitive inversion recovery is anatomical), TOF
  angiography source images, SWI magnitude, screen captures, EPI as such (only gradient-echo EPI,
  which is fMRI or perfusion, and diffusion EPI are refused).
- Unknown attributes and unknown values are never a reason. No header, an unreadable header or a
  modality that is not named gives "unknown": the image itself must then be judged.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.io import deid

MAX_IMAGES = 4096  # images / frames looked at: bounded work on hostile input
MAX_TYPES = 16  # distinct ImageType / FrameType values kept
MAX_VALUES = 12  # values kept per multi-valued attribute
MAX_TEXT = 64  # characters kept per value
MIN_DIFFUSION_B = 50.0  # s/mm²: below this a "b-value" is a b = 0 image, not diffusion weighting

ANATOMICAL, NOT_ANATOMICAL, UNKNOWN = "anatomical", "not_anatomical", "unknown"


@dataclass
class AcquisitionCheck:
    verdict: str  # ANATOMICAL | NOT_ANATOMICAL | UNKNOWN
    reasons: list[str] = field(default_factory=list)  # in words a clinician acts on


# ------------------------------------------------------------------------------- extraction
def acquisition(images, tokens: set[str]) -> dict:
    """The acquisition attributes of the DICOM datasets `images` of one series (classic slices or
    an enhanced multi-frame object), free text only when it passes de-identification (`tokens`:
    the patient's identifying words, `deid.identifying_tokens`). Never raises."""
    try:
        return _extract(list(images)[:MAX_IMAGES], tokens)
    except Exception:  # noqa: BLE001 - hostile headers: the gate then says "unknown"
        return {"error": "the acquisition attributes could not be read"}


def _extract(images: list, tokens: set[str]) -> dict:
    images = _main_group(images)
    first = images[0]
    groups = _frame_groups(images)
    acq: dict = {}
    _put(acq, "Modality", _text(_get(first, "Modality")).upper())
    _put(acq, "ImageType", _codes(_get(first, "ImageType")))
    _put(
        acq,
        "image_types",
        _distinct(
            [_codes(_get(ds, "ImageType")) for ds in images]
            + list(_in_groups(groups, "MRImageFrameTypeSequence", "FrameType", _codes))
        ),
    )
    for keyword in ("ComplexImageComponent", "AcquisitionContrast"):  # enhanced MR: top level or per frame
        values = [_text(_get(ds, keyword)).upper() for ds in images]
        values += list(_in_groups(groups, "MRImageFrameTypeSequence", keyword, lambda v: _text(v).upper()))
        _put(acq, keyword, sorted({v for v in values if v})[:MAX_VALUES])
    for keyword in ("ScanningSequence", "SequenceVariant", "ScanOptions"):
        _put(acq, keyword, _codes(_get(first, keyword)))
    _put(acq, "MRAcquisitionType", _text(_get(first, "MRAcquisitionType")).upper())
    for keyword, (seq, inner) in _TIMING.items():
        value = _number(_get(first, keyword))
        if value is None:
            value = next((v for v in _in_groups(groups, seq, inner, _number) if v is not None), None)
        _put(acq, keyword, value)
    _put(
        acq,
        "b_value",
        _max(
            [_number(_get(ds, "DiffusionBValue")) for ds in images]
            + list(_in_groups(groups, "MRDiffusionSequence", "DiffusionBValue", _number))
        ),
    )
    _put(acq, "vendor_b_value", _max([_vendor_b_value(ds) for ds in images]))
    directions = {_text(v).upper() for v in _in_groups(groups, "MRDiffusionSequence", "DiffusionDirectionality", _text)}
    directions.add(_text(_get(first, "DiffusionDirectionality")).upper())
    _put(acq, "diffusion_directionality", sorted(d for d in directions if d)[:MAX_VALUES])
    _put(acq, "EchoPulseSequence", _text(_get(first, "EchoPulseSequence")).upper())
    for keyword in ("SequenceName", "PulseSequenceName", "SeriesDescription", "BodyPartExamined"):
        _put(acq, keyword, _safe_text(_get(first, keyword), tokens))
    acq["echo_planar"] = _echo_planar(first, acq)
    acq["contrast_agent"] = _contrast(first, groups)
    acq["n_frames"] = sum(_frames(ds) for ds in images)
    return acq


# enhanced MR keeps the timing in functional groups: keyword -> (sequence, attribute there)
_TIMING = {
    "EchoTime": ("MREchoSequence", "EffectiveEchoTime"),
    "RepetitionTime": ("MRTimingAndRelatedParametersSequence", "RepetitionTime"),
    "InversionTime": ("MRModifierSequence", "InversionTimes"),
    "FlipAngle": ("MRTimingAndRelatedParametersSequence", "FlipAngle"),
}

# Siemens and Philips store the b-value of classic diffusion images in private tags, present only in
# diffusion series (Siemens) or zero elsewhere (Philips). GE's slot is reused by other sequences.
_VENDOR_B = ((0x0019, "SIEMENS MR HEADER", 0x0C), (0x2001, "Philips Imaging DD 001", 0x03))


def _main_group(images: list) -> list:
    """The classic images the stacker keeps: the most common (size, orientation). Localizers mixed
    into a series are left out of the volume, so they must not speak for it either."""

    def key(ds):
        try:
            iop = tuple(round(float(v), 3) for v in _get(ds, "ImageOrientationPatient") or ())
            return int(_get(ds, "Rows") or 0), int(_get(ds, "Columns") or 0), iop
        except Exception:  # noqa: BLE001 - odd geometry: its own group
            return None

    if len(images) < 2 or any("PerFrameFunctionalGroupsSequence" in ds for ds in images):
        return images
    common, _ = Counter(key(ds) for ds in images).most_common(1)[0]
    return [ds for ds in images if key(ds) == common]


def _frame_groups(images: list) -> list:
    """The functional-group items of enhanced images (shared first, then per frame), bounded."""
    out: list = []
    for ds in images:
        for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            items = _get(ds, keyword) or []
            out.extend(items[: MAX_IMAGES - len(out)])
            if len(out) >= MAX_IMAGES:
                return out
    return out


def _in_groups(groups: list, sequence: str, keyword: str, convert):
    """`convert(value)` of `keyword` in the first item of `sequence` of each functional group."""
    for group in groups:
        try:
            items = _get(group, sequence) or []
            if len(items) and keyword in items[0]:
                yield convert(items[0].get(keyword))
        except Exception:  # noqa: BLE001 - one malformed item does not spoil the others
            continue


def _get(ds, keyword: str):
    """An attribute's value, or None when it is absent or cannot be decoded (one broken attribute
    must not hide the evidence of the others)."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom raises many types on malformed values
        return None


def _put(acq: dict, key: str, value) -> None:
    if value not in (None, "", [], ()):
        acq[key] = value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:MAX_TEXT]).decode("ascii", "ignore")
    elif not isinstance(value, str) and hasattr(value, "__iter__"):
        value = next(iter(value), "")
    return "".join(ch for ch in str(value)[:MAX_TEXT] if ch.isprintable()).strip()


def _codes(value) -> list[str]:
    """A multi-valued code string (ImageType, ScanOptions, ...) as upper-case strings."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: MAX_TEXT * MAX_VALUES]).decode("ascii", "ignore").split("\\")
    elif isinstance(value, str) or not hasattr(value, "__iter__"):
        value = str(value).split("\\")
    out = []
    for item in itertools.islice(value, MAX_VALUES):
        out.append(_text(item).upper())
    while out and not out[-1]:
        out.pop()
    return out


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value)
        if len(value) == 4 and not value.strip(b" \x000123456789.+-eE"):
            value = value.decode("ascii").strip("\x00 ")
        elif len(value) == 4:  # a float stored with unknown VR (UN): little endian
            value = struct.unpack("<f", value)[0]
        else:
            value = value[:MAX_TEXT].decode("ascii", "ignore").split("\\")[0]
    elif not isinstance(value, (str, int, float)) and hasattr(value, "__iter__"):
        value = next(iter(value), None)
    try:
        number = float(str(value).strip()[:MAX_TEXT]) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _max(values) -> float | None:
    numbers = [v for v in values if v is not None]
    return max(numbers) if numbers else None


def _distinct(lists: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = []
    for item in lists:
        if item and item not in out:
            out.append(item)
            if len(out) >= MAX_TYPES:
                break
    return out


def _safe_text(value, tokens: set[str]) -> str:
    """Free text only when de-identification lets it through unchanged."""
    text = _text(value)
    return text if text and deid.redact(text, tokens) == text else ""


def _vendor_b_value(ds) -> float | None:
    for group, creator, offset in _VENDOR_B:
        try:
            value = _number(ds.private_block(group, creator)[offset].value)
        except Exception:  # noqa: BLE001 - absent creator, odd VR: no evidence
            continue
        if value is not None:
            return value
    return None


def _echo_planar(first, acq: dict) -> bool:
    if _text(_get(first, "EchoPlanarPulseSequence")).upper() == "YES":
        return True
    if "EP" in acq.get("ScanningSequence", []):
        return True
    name = (acq.get("SequenceName", "") + " " + acq.get("PulseSequenceName", "")).lower()
    return bool(re.search(r"(^|[^a-z])(\*?ep[_a-z0-9]|epi)", name))


def _contrast(first, groups: list) -> bool:
    """A contrast agent was given (yes / no only: the agent's name is free text)."""
    if _text(_get(first, "ContrastBolusAgent")) or _get(first, "ContrastBolusAgentSequence"):
        return True
    return any(
        _text(v).upper() == "YES"
        for v in _in_groups(groups, "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered", _text)
    )


def _frames(ds) -> int:
    try:
        return max(int(_get(ds, "NumberOfFrames") or 1), 1)
    except (TypeError, ValueError, OverflowError):
        return 1


# ------------------------------------------------------------------------------- assessment
PHASE = "a phase image, not an anatomical (magnitude) image"
FIELD_MAP = "a field map, not an anatomical image"
DIFFUSION = "a diffusion-weighted image, not an anatomical image"
B0_DIFFUSION = "the b = 0 image of a diffusion series (echo-planar), not an anatomical image"
ADC = "an ADC (apparent diffusion coefficient) map, not an anatomical image"
TENSOR = "a diffusion-tensor map (FA), not an anatomical image"
LOCALIZER = "a localizer (scout), not a diagnostic series"
PERFUSION = "a perfusion series or map, not an anatomical image"
PROJECTION = "a projection image (MIP / MinIP), not a slice"
SUBTRACTION = "a subtraction image, not an anatomical image"
QUANTITATIVE = "a quantitative map (T1 / T2 / T2* values), not an anatomical image"
MOSAIC = "a mosaic of tiled slices (fMRI or diffusion), not one anatomical image"
FMRI = "an fMRI (BOLD) series, not an anatomical image"
GRE_EPI = "a gradient-echo EPI series (fMRI or perfusion), not an anatomical image"
SPECTROSCOPY = "MR spectroscopy, not an image"
FLOW = "a flow-encoded (phase-contrast) image, not an anatomical image"

# ImageType / FrameType values (and enhanced ComplexImageComponent / AcquisitionContrast), upper
# case with spaces and hyphens as "_". Magnitude ("M"), "ND", "NORM", "MPR", "CSA ..." pass.
_TYPE_WORDS = {
    **dict.fromkeys(("P", "PHASE", "PHASE_MAP"), PHASE),
    **dict.fromkeys(("FIELD_MAP", "FIELDMAP", "B0", "B0_MAP", "B0MAP", "B1", "B1_MAP", "B1MAP"), FIELD_MAP),
    **dict.fromkeys(("DIFFUSION", "TRACEW", "TRACE", "DWI"), DIFFUSION),
    **dict.fromkeys(("ADC", "EADC"), ADC),
    **dict.fromkeys(("FA", "COLFA", "TENSOR", "DTI"), TENSOR),
    **dict.fromkeys(("LOCALIZER", "SCOUT", "SURVEY"), LOCALIZER),
    **dict.fromkeys(("PERFUSION", "CBF", "CBV", "RCBV", "RCBF", "MTT", "TTP", "ASL", "DSC"), PERFUSION),
    **dict.fromkeys(("MIP", "MNIP", "MINIP", "PROJECTION_IMAGE"), PROJECTION),
    **dict.fromkeys(("SUBTRACTION", "SUBTRACT", "SUB"), SUBTRACTION),
    **dict.fromkeys(
        ("T1_MAP", "T2_MAP", "T2_STAR_MAP", "T2STAR_MAP", "T1MAP", "T2MAP", "R2STAR", "R2_STAR", "R2_STAR_MAP"),
        QUANTITATIVE,
    ),
    "MOSAIC": MOSAIC,
    "FMRI": FMRI,
    "SPECTROSCOPY": SPECTROSCOPY,
    "FLOW_ENCODED": FLOW,
}
_TYPE_PREFIXES = (("P_", PHASE), ("MIP_", PROJECTION), ("MNIP_", PROJECTION))  # Philips P_SE, Siemens MIP_SAG

# Siemens sequence names (SequenceName) and pulse-sequence names, lower case
_SEQUENCE_NAMES = (
    (r"^\*?fm\d", FIELD_MAP),  # gre_field_mapping: *fm2d2r
    (r"^\*?epfid", GRE_EPI),  # BOLD fMRI or DSC perfusion: *epfid2d1_64
    (r"field_?map|b0_?map", FIELD_MAP),
)

# series description words (whole words, upper case), trusted only when unambiguous
_DESCRIPTION_WORDS = {
    **dict.fromkeys(("LOCALIZER", "LOCALISER", "SCOUT", "SURVEY"), LOCALIZER),
    **dict.fromkeys(("FIELD MAP", "FIELDMAP", "FIELD MAPPING", "B0MAP", "B0 MAP"), FIELD_MAP),
    **dict.fromkeys(("DWI", "TRACEW", "DIFFUSION", "DIFF"), DIFFUSION),
    "ADC": ADC,
    "DTI": TENSOR,
    **dict.fromkeys(("PERFUSION", "DSC", "ASL", "PCASL", "PASL", "PWI", "RCBV", "CBF", "CBV"), PERFUSION),
    **dict.fromkeys(("BOLD", "FMRI", "RESTING STATE"), FMRI),
    **dict.fromkeys(("MIP", "MINIP", "MNIP"), PROJECTION),
}

_OTHER_MODALITIES = {
    "CT": "CT",
    "PT": "PET",
    "NM": "nuclear medicine",
    "US": "ultrasound",
    "CR": "a radiograph",
    "DX": "a radiograph",
    "XA": "X-ray angiography",
    "MG": "mammography",
    "RF": "fluoroscopy",
    "SEG": "a segmentation",
    "RTDOSE": "a radiotherapy dose",
    "RTIMAGE": "a radiotherapy image",
}

# BodyPartExamined words that rule out a brain scan; a head word among them wins ("HEAD NECK")
_HEAD_WORDS = {
    "BRAIN",
    "HEAD",
    "SKULL",
    "HEADNECK",
    "NEURO",
    "CRANIUM",
    "CEREBRUM",
    "IAC",
    "ORBIT",
    "PITUITARY",
    "SELLA",
    "TMJ",
}
_NOT_HEAD_WORDS = {
    "KNEE",
    "ABDOMEN",
    "CHEST",
    "THORAX",
    "PELVIS",
    "SPINE",
    "CSPINE",
    "TSPINE",
    "LSPINE",
    "SSPINE",
    "SACRUM",
    "COCCYX",
    "BREAST",
    "HEART",
    "CARDIAC",
    "LIVER",
    "KIDNEY",
    "PROSTATE",
    "SHOULDER",
    "HIP",
    "ANKLE",
    "FOOT",
    "HAND",
    "WRIST",
    "ELBOW",
    "ARM",
    "LEG",
    "THIGH",
    "CALF",
    "FOREARM",
    "EXTREMITY",
    "ABDOMENPELVIS",
    "CHESTABDOMEN",
    "WHOLEBODY",
    "LUNG",
    "PANCREAS",
    "UTERUS",
    "BLADDER",
    "NECK",
    "FEMUR",
    "HUMERUS",
    "TIBIA",
    "RECTUM",
    "COLON",
    "BOWEL",
    "ABDO",
    "ABD",
}


def assess_acquisition(acq) -> AcquisitionCheck:
    """Does the header say this is an anatomical MR image (T1, T2, FLAIR, ...)? A pure function of
    `Volume.meta["acquisition"]`; any odd content gives "unknown", never an exception."""
    try:
        return _assess(acq)
    except Exception:  # noqa: BLE001 - hostile values: no verdict rather than a wrong one
        return AcquisitionCheck(UNKNOWN, ["the acquisition header could not be interpreted"])


def _assess(acq) -> AcquisitionCheck:
    if not isinstance(acq, Mapping) or not acq:
        return AcquisitionCheck(UNKNOWN, ["no DICOM acquisition header (NIfTI or picture)"])
    if acq.get("error"):
        return AcquisitionCheck(UNKNOWN, [str(acq["error"])])
    found = _modality(acq) + _body_part(acq) + _image_types(acq) + _diffusion(acq) + _sequence_names(acq)
    found += [f"{r} (series description)" for r in _description(acq) if r not in found]
    reasons = [_with_b_value(r, acq) for r in dict.fromkeys(found)]
    if reasons:
        return AcquisitionCheck(NOT_ANATOMICAL, reasons)
    if str(acq.get("Modality", "")).upper() == "MR":
        return AcquisitionCheck(ANATOMICAL, [])
    return AcquisitionCheck(UNKNOWN, ["the header does not say the image is MR"])


def _modality(acq) -> list[str]:
    modality = str(acq.get("Modality", "")).upper()
    return [f"{_OTHER_MODALITIES[modality]}, not MR"] if modality in _OTHER_MODALITIES else []


def _body_part(acq) -> list[str]:
    part = str(acq.get("BodyPartExamined", "") or "")
    words = set(re.findall(r"[A-Z0-9]+", part.upper())) | {re.sub(r"[^A-Z0-9]", "", part.upper())}
    if words & _NOT_HEAD_WORDS and not words & _HEAD_WORDS:
        return [f"body part: {part} — the models read brain MRI"]
    return []


def _type_words(acq) -> list[str]:
    values = [v for t in _lists(acq.get("image_types")) + [_lists(acq.get("ImageType"))] for v in _lists(t)]
    values += _lists(acq.get("ComplexImageComponent")) + _lists(acq.get("AcquisitionContrast"))
    return [re.sub(r"[\s\-]+", "_", str(v).strip().upper()) for v in values]


def _image_types(acq) -> list[str]:
    reasons = []
    for word in _type_words(acq):
        reason = _TYPE_WORDS.get(word) or next((r for p, r in _TYPE_PREFIXES if word.startswith(p)), None)
        if reason:
            reasons.append(reason)
    return reasons


def _b_value(acq) -> float | None:
    b = _max([_number(acq.get("b_value")), _number(acq.get("vendor_b_value"))])
    name = re.match(r"^\*?ep_b(\d+)", str(acq.get("SequenceName", "")).lower())  # Siemens *ep_b1000t
    return float(name.group(1)) if b is None and name else b


def _diffusion(acq) -> list[str]:
    b = _b_value(acq)
    directional = {str(d).upper() for d in _lists(acq.get("diffusion_directionality"))} & {
        "ISOTROPIC",
        "DIRECTIONAL",
        "BMATRIX",
    }
    if (b is not None and b >= MIN_DIFFUSION_B) or directional:
        return [DIFFUSION]
    return [B0_DIFFUSION] if b is not None and re.match(r"^\*?ep_b", str(acq.get("SequenceName", "")).lower()) else []


def _with_b_value(reason: str, acq) -> str:
    b = _b_value(acq) if reason.startswith(DIFFUSION) else None
    return reason.replace("image,", f"image (b = {b:g} s/mm²),", 1) if b and b >= MIN_DIFFUSION_B else reason


def _sequence_names(acq) -> list[str]:
    names = [str(acq.get(k, "")).lower() for k in ("SequenceName", "PulseSequenceName")]
    return [reason for pattern, reason in _SEQUENCE_NAMES if any(re.search(pattern, n) for n in names if n)]


def _description(acq) -> list[str]:
    text = " " + " ".join(re.findall(r"[A-Z0-9]+", str(acq.get("SeriesDescription", "")).upper())) + " "
    return list(dict.fromkeys(reason for word, reason in _DESCRIPTION_WORDS.items() if f" {word} " in text))


def _lists(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []
