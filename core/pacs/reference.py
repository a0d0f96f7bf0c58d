"""What a result object needs to join the source study in a PACS: UIDs and the patient/study module.

    ref = SourceReference.from_files(paths)           # DICOM input: headers only
    ref = SourceReference.from_datasets(datasets)     # e.g. a study pulled over DICOMweb
    ref = SourceReference.new_study()                 # NIfTI / images: a fresh, anonymous study

Identifying data. A SourceReference holds the patient's name, ID, birth date and the study's
accession number, because a Structured Report or Secondary Capture that lacks them is filed as a
different patient. It lives in memory for the session only: it is never written to the store, the
logs, the JSON report or the PDF, and its repr names no one (`repr(ref)` shows counts only).
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from core.config import get_settings
from core.io import VolumeLoadError, sniff
from core.io.dicom import series_key
from core.io.sources import collect

# The patient and study module attributes copied into every object written for the study, by DICOM
# keyword -> field of SourceReference (also the name of highdicom's constructor argument).
PATIENT_STUDY = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "StudyID": "study_id",
    "AccessionNumber": "accession_number",
    "ReferringPhysicianName": "referring_physician_name",
}
_HEADER_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "Modality", *PATIENT_STUDY)
_DICOMDIR = "1.2.840.10008.1.3.10"
ANONYMOUS_PATIENT = "ANONYMOUS"
ANONYMOUS_NAME = "ANONYMOUS^"  # a one-component person name ends in "^" (PS3.5 6.2.1.2)


@dataclass(frozen=True)
class SourceSeries:
    series_instance_uid: str
    modality: str
    instances: tuple[tuple[str, str], ...]  # (SOPClassUID, SOPInstanceUID), in input order


@dataclass(frozen=True)
class SourceReference:
    """The study (and the series read from it) that results are written into. See the module doc:
    identifying, in memory only."""

    study_instance_uid: str
    series: tuple[SourceSeries, ...] = ()
    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    patient_birth_date: str = field(default="", repr=False)
    patient_sex: str = field(default="", repr=False)
    study_date: str = field(default="", repr=False)
    study_time: str = field(default="", repr=False)
    study_id: str = field(default="", repr=False)
    accession_number: str = field(default="", repr=False)
    referring_physician_name: str = field(default="", repr=False)
    is_new_study: bool = False

    def __repr__(self) -> str:  # UIDs can be traced back to a patient too (PS3.15)
        n = sum(len(s.instances) for s in self.series)
        return (
            f"SourceReference({'new study' if self.is_new_study else 'existing study'}, "
            f"{len(self.series)} series, {n} instances)"
        )

    __str__ = __repr__

    # ---------------------------------------------------------------------------- constructors
    @classmethod
    def from_datasets(cls, datasets: Iterable[Dataset], series_uids: Iterable[str] | None = None) -> SourceReference:
        """From DICOM datasets (headers are enough) of one study; `series_uids` keeps only those
        series (e.g. the one the volume was loaded from: SeriesInstanceUIDs or the pseudonyms of
        `Volume.series`). Objects that are not instances of a
        series (DICOMDIR) are left out. ValueError when none is left or they span several studies."""
        keep = set(series_uids or ())
        items = [
            ds
            for ds in datasets
            if ds.get("SOPInstanceUID")
            and ds.get("SeriesInstanceUID")
            and str(ds.get("SOPClassUID", "")) != _DICOMDIR
            and (not keep or {str(ds.SeriesInstanceUID), series_key(ds.SeriesInstanceUID)} & keep)
        ]
        if not items:
            raise ValueError("no DICOM instance of a series was found to reference")
        studies = {str(ds.get("StudyInstanceUID", "")) for ds in items}
        if len(studies) != 1 or "" in studies:
            raise ValueError(
                "the DICOM instances belong to several studies (or to none): results can be written into one study only"
            )
        by_series: dict[str, list[Dataset]] = {}
        for ds in items:
            by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
        series = tuple(
            SourceSeries(
                uid,
                str(group[0].get("Modality", "") or ""),
                tuple(dict.fromkeys((str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in group)),
            )
            for uid, group in by_series.items()
        )
        first = items[0]
        return cls(
            study_instance_uid=studies.pop(),
            series=series,
            **{name: _text(first.get(k)) for k, name in PATIENT_STUDY.items()},
        )

    @classmethod
    def from_files(cls, source, series_uids: Iterable[str] | None = None) -> SourceReference:
        """From DICOM files: paths, folders or zips, as `core.io.load_volume` takes them (read within
        the same size limits). Only headers are parsed (stop_before_pixels); other files are skipped."""
        try:
            blobs, _warnings = collect(source, None, get_settings())
        except VolumeLoadError as exc:
            raise ValueError(str(exc)) from None
        datasets = []
        for blob in blobs:
            if blob.kind != sniff.DICOM:
                continue
            try:
                datasets.append(
                    pydicom.dcmread(
                        io.BytesIO(blob.data), force=True, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS)
                    )
                )
            except (InvalidDicomError, ValueError, TypeError, EOFError, OSError):
                continue
        return cls.from_datasets(datasets, series_uids)

    @classmethod
    def new_study(cls) -> SourceReference:
        """A fresh study for inputs without DICOM headers (NIfTI, images): new UIDs, an anonymous
        patient, today's date, so results can still be written (and sent) as DICOM."""
        now = _dt.datetime.now()
        return cls(
            study_instance_uid=generate_uid(),
            patient_name=ANONYMOUS_NAME,
            patient_id=ANONYMOUS_PATIENT,
            study_date=now.strftime("%Y%m%d"),
            study_time=now.strftime("%H%M%S"),
            is_new_study=True,
        )

    # --------------------------------------------------------------------------------- views
    @property
    def instances(self) -> list[tuple[str, str, str]]:
        """(SeriesInstanceUID, SOPClassUID, SOPInstanceUID) of every source instance."""
        return [(s.series_instance_uid, c, i) for s in self.series for c, i in s.instances]

    def patient_study(self) -> dict[str, str]:
        """The patient/study module attributes by DICOM keyword."""
        return {k: getattr(self, name) for k, name in PATIENT_STUDY.items()}

    def evidence(self) -> list[Dataset]:
        """Header-only datasets of the source instances: what highdicom's SR constructor reads to
        inherit the patient and study and to fill the evidence sequence."""
        out = []
        for series_uid, sop_class, sop_uid in self.instances:
            ds = Dataset()
            ds.StudyInstanceUID = self.study_instance_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop_uid
            for keyword, value in self.patient_study().items():
                setattr(ds, keyword, value)
            out.append(ds)
        return out


def _text(value) -> str:
    return "" if value is None else str(value)
