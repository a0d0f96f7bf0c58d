"""The scan page's "Open from PACS" in AppTest against a live Orthanc: search by patient ID, open the
study, get the verdict, send the SR and key images back into the same study, and nothing
identifying on the page."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import pydicom
from pydicom.uid import generate_uid
from streamlit.testing.v1 import AppTest

from tests.io import dicom_factory as factory
from tests.io.test_io_study import _dicom_study
from tests.pacs.dicom_checks import VOLUME

SCAN = str(Path(__file__).resolve().parents[2] / "pages" / "scan.py")
MODALITY = "00080060"


def _page_text(at: AppTest) -> str:
    parts = [
        str(e.value)
        for kind in ("markdown", "caption", "info", "success", "error", "warning", "subheader")
        for e in getattr(at, kind)
    ]
    parts += [str(o) for box in at.selectbox for o in box.options]
    return re.sub(r"\\(.)", r"\1", " ".join(parts))


def three_sequence_study(tmp_path, patient_id: str) -> list[pydicom.Dataset]:
    """A T2, FLAIR and T1 post-contrast study (and a localizer) of one patient, on different grids
    (tests/io/test_io_study.py), with its own study UID and patient ID."""
    study_uid, series_uids = generate_uid(), {}
    datasets = [pydicom.dcmread(p) for p in sorted(_dicom_study(tmp_path).rglob("*")) if p.is_file()]
    for ds in datasets:  # fresh UIDs: the tests share one Orthanc, which keeps the first copy of an instance
        ds.StudyInstanceUID, ds.PatientID = study_uid, patient_id
        ds.SeriesInstanceUID = series_uids.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return datasets


def _open_pacs(at: AppTest) -> AppTest:
    at.run()
    at.segmented_control(key="scan_source").set_value("Open from PACS").run()
    return at


def test_a_study_opens_from_the_pacs_and_its_results_go_back(orthanc, active_models, sign_in, monkeypatch):
    source = factory.series_from_image(nib.load(VOLUME), phi=True, seed="page")
    for ds in source:
        ds.PatientID = "PAGE-TEST-1"
    orthanc.upload(source)
    monkeypatch.setenv("NEUROGRADE_PACS_URL", orthanc.url)
    monkeypatch.setenv("NEUROGRADE_PACS_USER", orthanc.auth[0])
    monkeypatch.setenv("NEUROGRADE_PACS_PASSWORD", orthanc.auth[1])

    at = AppTest.from_file(SCAN, default_timeout=180)
    sign_in(at, "Dr Test", "clinician")
    _open_pacs(at)
    at.text_input(key="pacs_patient_id").input("PAGE-TEST-1")
    at.button[0].click().run()  # the form's "Search the PACS"
    assert not at.exception
    assert "1 studies found" in at.selectbox(key="pacs_pick").label
    at.button(key="pacs_open").click().run()
    assert not at.exception, at.exception
    assert at.subheader and any(s.value == "Viewer" for s in at.subheader)
    shown = _page_text(at)
    for secret in factory.PHI_STRINGS:
        assert secret not in shown, secret

    at.button(key="pacs_push").click().run()
    assert not at.exception
    assert any("Sent to the PACS" in s.value for s in at.success)

    client_series = orthanc.get(f"/studies/{orthanc.find_study(source[0].StudyInstanceUID)}/series")
    assert sorted(s["MainDicomTags"]["Modality"] for s in client_series) == ["MR", "OT", "SR"]


def test_without_a_configured_pacs_the_page_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv("NEUROGRADE_PACS_URL", raising=False)
    at = _open_pacs(AppTest.from_file(SCAN, default_timeout=60))
    assert not at.exception
    assert any("NEUROGRADE_PACS_URL" in i.value for i in at.info)


def test_an_unreachable_pacs_is_a_message_not_a_traceback(sign_in, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_PACS_URL", "http://127.0.0.1:9/dicom-web")
    at = AppTest.from_file(SCAN, default_timeout=60)
    sign_in(at, "Dr Test", "clinician")
    _open_pacs(at)
    at.text_input(key="pacs_patient_id").input("X1")
    at.button[0].click().run()
    assert not at.exception
    assert at.error and "Traceback" not in at.error[0].value


def test_a_three_sequence_study_opens_with_its_sequences_named(
    orthanc,
    active_models,
    sign_in,
    tmp_path,
    monkeypatch,
):
    orthanc.upload(three_sequence_study(tmp_path, "PAGE-TEST-3SEQ"))
    monkeypatch.setenv("NEUROGRADE_PACS_URL", orthanc.url)
    monkeypatch.setenv("NEUROGRADE_PACS_USER", orthanc.auth[0])
    monkeypatch.setenv("NEUROGRADE_PACS_PASSWORD", orthanc.auth[1])
    at = AppTest.from_file(SCAN, default_timeout=180)
    sign_in(at, "Dr Test", "clinician")
    _open_pacs(at)
    at.text_input(key="pacs_patient_id").input("PAGE-TEST-3SEQ")
    at.button[0].click().run()
    at.button(key="pacs_open").click().run()
    assert not at.exception, at.exception
    opened = at.session_state["_scan_case"]
    assert opened["error"] is None, opened["error"]
    case = opened["case"]
    assert list(case.volume.channels) == ["t2", "flair", "t1post"]
    assert any(e.label.startswith("Sequences of this study (3)") for e in at.expander)
    # the user corrects a name: the models re-read their sequences
    box = at.selectbox(key=next(b.key for b in at.selectbox if b.key and b.key.startswith("seqname_")))
    box.set_value("pd").run()
    assert not at.exception
    assert "pd" in at.session_state["_scan_case"]["case"].volume.channels
