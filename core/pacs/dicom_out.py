"""Results out as DICOM (highdicom): a Comprehensive SR with the verdict, and Secondary Capture key
images with their heat maps, both in new series of the source study.

    ref = SourceReference.from_files(paths)      # or .new_study() for NIfTI / images
    cams = key_slice_cams(predictor, prediction, slices01)
    datasets = dicom_results(prediction, ref, slices01, cams, cards={t: card})   # [SR, SC, SC, ...]
    write_results(folder, datasets)              # or core.pacs.dicomweb.push(...)

The SR content tree (Comprehensive SR, no template claimed; it follows the sections of TID 2000):

    CONTAINER  Diagnostic Imaging Report (LN 18748-4)
      HAS OBS CONTEXT  Observer Type = Device, Device Observer UID / Name / Manufacturer (TID 1002)
      CONTAINS TEXT    Intended use = "Research use only, not for diagnosis ..."
      CONTAINS CONTAINER  Conclusions (DCM 121076)
        TEXT Conclusion (DCM 121077) = the headline;  CODE Recommendation (DCM 121075) = refer,
        TEXT Reason for referral (one per reason)
      CONTAINS CONTAINER  Findings (DCM 121070)
        CONTAINER <task>, HAS CONCEPT MOD Algorithm Name / Version / Parameters (TID 4019)
          CODE Result status = ok | refer | cannot assess | not validated | not applicable
          CODE Finding (DCM 121071) = the answer
          NUM Probability (DCM 122157) [no units] per class, HAS CONCEPT MOD Finding = the class
          TEXT Reason for referral;  TEXT Comment (DCM 121106) = why there is no answer
      CONTAINS UIDREF  Source series for image processing operation (DCM 121323), per source series
      CONTAINS CONTAINER  Key Images (DCM 121180): IMAGE per Secondary Capture

The source instances are listed in the Current Requested Procedure Evidence Sequence.
Concepts without a DCM / SCT / LOINC code (the tasks, result statuses, our class names, "reason
for referral", "intended use") use the private coding scheme 99NEUROGRADE (private designators
start with "99", PS3.16 section 8.2), identified in the CodingSchemeIdentificationSequence.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem  # not re-exported
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from core import explain
from core.cards import ModelCard
from core.inference.verdict import headline, slice_label, task_row
from core.pacs.reference import SourceReference
from core.tasks import class_title, task_title
from core.viz import overlay, to_uint8

MANUFACTURER = "NeuroGrade"
INTENDED_USE = (
    "Research use only, not for diagnosis. NeuroGrade is not a medical device: its results "
    "support, and never replace, the judgement of a qualified clinician."
)
BANNER = "NOT FOR DIAGNOSIS - research use"  # ASCII: the default font has no em dash
CHARSET = "ISO_IR 192"  # UTF-8: patient names are copied as the source spells them
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9101, 9102
SR_SERIES_DESCRIPTION = "NeuroGrade result (research use only)"
SC_SERIES_DESCRIPTION = "NeuroGrade key images (not for diagnosis)"
MIN_WIDTH = 512  # key images are scaled up to at least this width: a legible banner
# one stable UID for NeuroGrade as the SR's device observer
DEVICE_UID = generate_uid(entropy_srcs=["NeuroGrade device observer"])

PRIVATE_SCHEME = "99NEUROGRADE"
_PRIVATE_SCHEME_ITEM = CodingSchemeIdentificationItem(
    designator=PRIVATE_SCHEME, name="NeuroGrade result concepts", responsible_organization="NeuroGrade project"
)


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning)


RESULT_STATUS = _private("status", "Result status")
REFER_REASON = _private("refer-reason", "Reason for referral")
INTENDED_USE_CONCEPT = _private("intended-use", "Intended use")
READ_ON = _private("read-on", "Sequences read")
KEY_IMAGE = _private("key-image", "Key image with heat map")
REFER_TO_HUMAN = _private("refer", "Refer to a human reader")
SOURCE_SERIES = hd.sr.CodedConcept("121323", "DCM", "Source series for image processing operation")
NO_UNITS = codes.UCUM.NoUnits
# class names with a standard code; the others are private (their SNOMED CT mapping is left to a
# terminology review rather than guessed)
STANDARD_CLASSES = {"tumor": codes.SCT.Tumor}


def class_concept(label: str) -> hd.sr.CodedConcept:
    code = STANDARD_CLASSES.get(label)
    if code is not None:
        return hd.sr.CodedConcept.from_code(code)
    return _private(label, class_title(label))


STATUS_MEANINGS = {
    "ok": "Answered",
    "refer": "Answered, refer to a human reader",
    "cannot_assess": "Cannot assess",
    "not_validated": "No validated model",
    "not_applicable": "Not applicable",
}


def status_concept(status: str) -> hd.sr.CodedConcept:
    status = str(status)  # a core.inference.Status (a StrEnum) or its value
    return _private(status, STATUS_MEANINGS.get(status, status))


def task_concept(task: str) -> hd.sr.CodedConcept:
    return _private(task, task_title(task))


# ------------------------------------------------------------------------------- key images
def key_slice_cams(predictor, prediction, slices01: np.ndarray, method: str = explain.DEFAULT_METHOD) -> dict[int, Any]:
    """Heat maps of the key slices for the verdict: the tumour type's class when it answered, else
    tumour presence's; none when neither answered."""
    task = next(
        (
            t
            for t in ("tumor_type", "presence")
            if t in prediction.tasks and prediction.tasks[t].answered and t in predictor.models
        ),
        None,
    )
    if task is None:
        return {}
    ci = prediction.class_index(task)
    return {int(k): explain.cam(predictor, slices01[k], method, ci, task=task) for k in prediction.key_slices}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _strip(width: int, text: str, fill, color, size: int) -> Image.Image:
    font = _font(size)
    strip = Image.new("RGB", (width, int(size * 1.7)), fill)
    ImageDraw.Draw(strip).text((width // 2, strip.height // 2), text, fill=color, font=font, anchor="mm")
    return strip


def annotated(rgb: np.ndarray, caption: str, aspect: float = 1.0) -> np.ndarray:
    """The picture scaled to at least MIN_WIDTH wide (pixels shown at their physical aspect), with
    the "not for diagnosis" banner burned in above it and `caption` below: (H, W, 3) uint8."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    scale = max(1.0, MIN_WIDTH / img.width)
    aspect = aspect if np.isfinite(aspect) and aspect > 0 else 1.0
    img = img.resize((round(img.width * scale), max(1, round(img.height * scale * aspect))), Image.BICUBIC)
    size = max(12, img.width // 30)
    banner = _strip(img.width, BANNER, (150, 0, 0), (255, 255, 255), size)
    below = _strip(img.width, caption, (0, 0, 0), (230, 230, 230), max(10, size * 3 // 4))
    out = Image.new("RGB", (img.width, banner.height + img.height + below.height))
    for y, part in ((0, banner), (banner.height, img), (banner.height + img.height, below)):
        out.paste(part, (0, y))
    return np.asarray(out)


def key_images(
    prediction,
    slices01: np.ndarray,
    cams: Mapping[int, Any] | None,
    reference: SourceReference,
    *,
    aspect: float = 1.0,
    patient_orientation: tuple[str, str] | None = ("L", "P"),
    series_instance_uid: str | None = None,
) -> list[hd.sc.SCImage]:
    """Secondary Capture images (RGB) of the key slices with their heat maps (as in the PDF) and a
    burned-in "not for diagnosis" banner, in one new series of the reference's study.

    slices01: (N, H, W) axial display slices in [0, 1]; cams: {slice index: CamResult};
    aspect: physical height / width of a pixel; patient_orientation: of the displayed slice
    (axial, radiological: rows run to the patient's left, columns to posterior); None when the
    plane is unknown (2D pictures)."""
    series_uid = series_instance_uid or generate_uid()
    n = prediction.n_slices or len(slices01)
    out = []
    for number, k in enumerate(prediction.key_slices, start=1):
        sl = np.asarray(slices01[k], dtype=np.float32)
        sl = sl[0] if sl.ndim == 3 else sl
        cam = (cams or {}).get(k)
        rgb = overlay(sl, cam.heatmap) if cam is not None else np.repeat(to_uint8(sl)[..., None], 3, 2)
        what = (
            f"{explain.METHODS[cam.method].label} for {class_title(cam.class_name)} ({cam.model_version})"
            if cam is not None
            else "no heat map"
        )
        caption = f"{slice_label(k, n)}: {what}"
        sc = hd.sc.SCImage(
            pixel_array=annotated(rgb, caption, aspect),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            patient_orientation=patient_orientation or ("L", "P"),
            study_instance_uid=reference.study_instance_uid,
            series_instance_uid=series_uid,
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=MANUFACTURER,
            series_description=SC_SERIES_DESCRIPTION,
            content_qualification="RESEARCH",
            specific_character_set=CHARSET,
            **_patient_study(reference),
        )
        if patient_orientation is None:
            sc.PatientOrientation = None  # type 2: present, empty (the plane is unknown)
        sc.BodyPartExamined = "BRAIN"  # unpaired: no Laterality (dciodvfy's 2C check)
        sc.BurnedInAnnotation = "YES"
        sc.ImageComments = f"{BANNER}. {caption}."
        sc.DerivationDescription = f"{caption}; banner burned in"
        out.append(sc)
    return out


def _patient_study(reference: SourceReference) -> dict[str, str | None]:
    """highdicom's patient/study arguments (empty values as None: type 2, written empty)."""
    return {
        name: (getattr(reference, name) or None)
        for name in (
            "patient_id",
            "patient_name",
            "patient_birth_date",
            "patient_sex",
            "accession_number",
            "study_id",
            "study_date",
            "study_time",
            "referring_physician_name",
        )
    }


# ------------------------------------------------------------------------- structured report
def _text(concept, value: str, rel: str = "CONTAINS") -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=concept, value=str(value)[:1024] or "-", relationship_type=rel)


def _container(concept, items: Iterable, rel: str = "CONTAINS", modifiers: Iterable = ()) -> hd.sr.ContainerContentItem:
    box = hd.sr.ContainerContentItem(name=concept, relationship_type=rel)
    box.ContentSequence = hd.sr.ContentSequence([*modifiers, *items])
    return box


def _algorithm(res, card: ModelCard | Mapping | None) -> list:
    card = ModelCard.coerce(card)
    params = [f"architecture {card.architecture}"] if card.architecture else []
    if card.sha256:
        params.append(f"weights sha256 {card.sha256}")
    if card.intended_use:
        params.append(f"intended use: {card.intended_use}")
    ref = res.model_version or f"{res.task}@unknown"
    version = card.version or ref.partition("@")[2] or "unknown"
    return list(
        hd.sr.AlgorithmIdentification(
            name=f"NeuroGrade {ref.partition('@')[0]} model ({ref})",
            version=str(version),
            parameters=params or None,
            manufacturer=MANUFACTURER,
        )
    )


def _task_findings(res, card: Mapping | None) -> hd.sr.ContainerContentItem:
    items: list = [
        hd.sr.CodeContentItem(name=RESULT_STATUS, value=status_concept(res.status), relationship_type="CONTAINS")
    ]
    if res.answered:
        items.append(
            hd.sr.CodeContentItem(name=codes.DCM.Finding, value=class_concept(res.label), relationship_type="CONTAINS")
        )
        for c, p in zip(res.classes, res.probabilities):
            num = hd.sr.NumContentItem(
                name=codes.DCM.Probability, value=round(float(p), 6), unit=NO_UNITS, relationship_type="CONTAINS"
            )
            num.ContentSequence = hd.sr.ContentSequence(
                [
                    hd.sr.CodeContentItem(
                        name=codes.DCM.Finding, value=class_concept(c), relationship_type="HAS CONCEPT MOD"
                    )
                ]
            )
            items.append(num)
        if res.read_on:
            items.append(_text(READ_ON, res.read_on))
    items += [_text(REFER_REASON, why) for why in res.refer_reasons]
    row = task_row(res)
    if not res.answered:
        items.append(_text(codes.DCM.Comment, f"{row.result}. {row.reason}".strip()))
    return _container(task_concept(res.task), items, modifiers=_algorithm(res, card))


def structured_report(
    prediction,
    reference: SourceReference,
    *,
    images: Iterable[Dataset] = (),
    cards: Mapping[str, Mapping] | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> hd.sr.ComprehensiveSR:
    """The verdict as a Comprehensive SR in a new series of the reference's study: per task its
    status, answer and class probabilities, the referral and its reasons in words, the model (name,
    version, weights sha256 from `cards`), the intended-use statement, and references to the source
    series / instances and to the key `images` (the Secondary Captures of `key_images()`)."""
    images = list(images)
    text, _task, prob = headline(prediction)
    conclusions = [_text(codes.DCM.Conclusion, text + (f" ({prob:.0%})" if prob is not None else ""))]
    if prediction.refer:
        conclusions.append(
            hd.sr.CodeContentItem(name=codes.DCM.Recommendation, value=REFER_TO_HUMAN, relationship_type="CONTAINS")
        )
        conclusions += [_text(REFER_REASON, why) for why in prediction.refer_reasons]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name=MANUFACTURER
        ),
    )
    content: list = [
        *observer,
        _text(INTENDED_USE_CONCEPT, INTENDED_USE),
        _container(codes.DCM.Conclusions, conclusions),
        _container(codes.DCM.Findings, [_task_findings(r, (cards or {}).get(t)) for t, r in prediction.tasks.items()]),
    ]
    content += [
        hd.sr.UIDRefContentItem(name=SOURCE_SERIES, value=s.series_instance_uid, relationship_type="CONTAINS")
        for s in reference.series
    ]
    if images:
        content.append(
            _container(
                codes.DCM.KeyImages,
                [
                    hd.sr.ImageContentItem(
                        name=KEY_IMAGE,
                        referenced_sop_class_uid=sc.SOPClassUID,
                        referenced_sop_instance_uid=sc.SOPInstanceUID,
                        relationship_type="CONTAINS",
                    )
                    for sc in images
                ],
            )
        )
    root = _container(codes.LN.DiagnosticImagingReport, content, rel=None)
    root.ContinuityOfContent = "SEPARATE"
    evidence = reference.evidence() + images
    placeholder = not evidence
    if placeholder:  # highdicom inherits patient and study from evidence; nothing to cite here
        evidence = [_header_only(reference)]
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=not prediction.unassessed,
        is_final=False,
        is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=MANUFACTURER,
        software_versions=list(dict.fromkeys(prediction.model_versions.values())) or MANUFACTURER,
        coding_schemes=[_PRIVATE_SCHEME_ITEM],
        content_qualification="RESEARCH",
        specific_character_set=CHARSET,
    )
    if placeholder:
        del sr.CurrentRequestedProcedureEvidenceSequence
    return sr


def _header_only(reference: SourceReference) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = reference.study_instance_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    for keyword, value in reference.patient_study().items():
        setattr(ds, keyword, value)
    return ds


# ----------------------------------------------------------------------------------- output
def dicom_results(
    prediction,
    reference: SourceReference,
    slices01: np.ndarray | None = None,
    cams: Mapping[int, Any] | None = None,
    *,
    cards: Mapping[str, Mapping] | None = None,
    aspect: float = 1.0,
    patient_orientation: tuple[str, str] | None = ("L", "P"),
) -> list[Dataset]:
    """[SR, key image, key image, ...]: what is written to a folder or sent to the PACS."""
    images = (
        []
        if slices01 is None
        else key_images(prediction, slices01, cams, reference, aspect=aspect, patient_orientation=patient_orientation)
    )
    return [structured_report(prediction, reference, images=images, cards=cards), *images]


def write_results(folder, datasets: Iterable[Dataset]) -> list[Path]:
    """Write each dataset as a DICOM file (with file meta) into `folder`: SR001.dcm, SC001.dcm, ...
    Names carry no identity."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, counts = [], {}
    for ds in datasets:
        kind = "SR" if ds.Modality == "SR" else "SC"
        counts[kind] = counts.get(kind, 0) + 1
        path = folder / f"{kind}{counts[kind]:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def results_zip(datasets: Iterable[Dataset]) -> bytes:
    """The datasets as one zip of DICOM files (SR001.dcm, SC001.dcm, ...), e.g. for a download."""
    with tempfile.TemporaryDirectory() as folder:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in write_results(folder, datasets):
                archive.write(path, path.name)
    return buffer.getvalue()
