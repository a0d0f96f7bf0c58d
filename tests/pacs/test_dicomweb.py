"""core.pacs.dicomweb against a live Orthanc (tests/pacs/conftest.py), and its error paths."""

from __future__ import annotations

import copy
import json
import socket

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless, SecondaryCaptureImageStorage, generate_uid

from core.config import get_settings
from core.io import load_volume
from core.io.deid import REDACTED
from core.pacs import (
    PacsError,
    connect,
    connect_from_settings,
    dicomweb,
    find,
    list_series,
    pull_study,
    push,
    search_studies,
)
from tests.io import dicom_factory as f

SHAPE, ZOOMS = (8, 10, 6), (1.0, 1.5, 3.0)  # (x, y, z) voxels and mm of the generated series


def study(seed: str, *, patient_id: str, accession: str, date="20240229", description="MR brain"):
    """A generated MR series (identifying values planted) of its own study, for one test."""
    series = f.series_from_image(f.reference_image(SHAPE, ZOOMS), phi=True, seed=seed)
    return f.with_header(
        series, PatientID=patient_id, AccessionNumber=accession, StudyDate=date, StudyDescription=description
    )


@pytest.fixture
def client(orthanc):
    return connect(orthanc.url, *orthanc.auth)


def no_phi(text: str, *extra: str) -> None:
    for value in [*f.PHI_STRINGS, *extra]:
        assert value.lower() not in text.lower(), value


# --- search -----------------------------------------------------------------------------------


def test_search_by_patient_id_and_by_accession_shows_no_identity(orthanc, client):
    series = study("search", patient_id="PIDSEARCH1", accession="ACCSEARCH1", description="Brain Zebrowski follow-up")
    orthanc.upload(series)

    by_id = search_studies(client, patient_id="PIDSEARCH1")
    by_accession = search_studies(client, accession="ACCSEARCH1")

    assert [s.uid for s in by_id] == [s.uid for s in by_accession] == [series[0].StudyInstanceUID]
    found = by_id[0]
    assert (found.study_date, found.modalities, found.n_series, found.n_instances) == (
        "2024-02-29",
        ("MR",),
        1,
        SHAPE[2],
    )
    assert found.description == REDACTED  # it held the patient's name
    assert find(by_id, found.handle) is found and len(found.handle) == 10
    no_phi(repr(by_id), "PIDSEARCH1", "ACCSEARCH1", found.uid)  # the UID is kept out of repr too
    assert search_studies(client, patient_id="PIDNOSUCH") == []


def test_search_by_date_range(orthanc, client):
    orthanc.upload(study("dated", patient_id="PIDDATE1", accession="ACCDATE1", date="20230615"))
    assert len(search_studies(client, patient_id="PIDDATE1", date_from="2023-06-01", date_to="2023-06-30")) == 1
    assert search_studies(client, patient_id="PIDDATE1", date_from="2023-07-01") == []
    with pytest.raises(PacsError, match="YYYY-MM-DD"):
        search_studies(client, date_from="15/06/2023")


def test_list_series_in_number_order(orthanc, client):
    t1 = study("ls-a", patient_id="PIDLIST1", accession="ACCLIST1")
    t2 = f.with_header(
        f.series_from_image(f.reference_image(SHAPE, ZOOMS), seed="ls-b", series_number=2, description="T2 AX"),
        StudyInstanceUID=t1[0].StudyInstanceUID,
        PatientID="PIDLIST1",
    )
    orthanc.upload(t2, t1)
    series = list_series(client, t1[0].StudyInstanceUID)
    assert [(s.number, s.description, s.n_instances) for s in series] == [(1, "T1 AX", 6), (2, "T2 AX", 6)]


# --- pull -------------------------------------------------------------------------------------


def test_pull_then_load_volume(orthanc, client, tmp_path):
    series = study("pull", patient_id="PIDPULL1", accession="ACCPULL1")
    orthanc.upload(series)
    summary = search_studies(client, patient_id="PIDPULL1")[0]

    pulled = pull_study(client, summary.uid, tmp_path / "study")

    assert [(s.folder.name, s.modality, s.description, s.n_instances) for s in pulled.series] == [
        ("series-01", "MR", "T1 AX", 6)
    ]
    assert pulled.uid == series[0].StudyInstanceUID
    assert {h.SOPInstanceUID for h in pulled.headers} == {d.SOPInstanceUID for d in series}
    assert all("PixelData" not in h for h in pulled.headers)  # headers only, in memory
    reference = pulled.reference
    assert reference.study_instance_uid == pulled.uid and reference.patient_id == "PIDPULL1"
    assert len(reference.instances) == 6 and "PIDPULL1" not in repr(reference)
    volume = load_volume(pulled.series[0].folder)
    assert volume.array.shape == SHAPE[::-1]
    assert tuple(round(float(s), 4) for s in volume.spacing) == ZOOMS[::-1]
    no_phi(json.dumps(volume.meta, default=str))


def test_pull_keeps_the_stored_transfer_syntax(orthanc, client, tmp_path):
    rle = get_testdata_file("MR_small_RLE.dcm")
    orthanc.upload(rle)
    uid = pydicom.dcmread(rle).StudyInstanceUID
    pulled = pull_study(client, uid, tmp_path)
    files = sorted(pulled.series[0].folder.iterdir())
    assert [pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in files] == [RLELossless]
    assert load_volume(pulled.series[0].folder).array.shape[1:] == (64, 64)


def test_pull_leaves_out_secondary_captures(orthanc, client, tmp_path):
    scan = study("sc-scan", patient_id="PIDSC1", accession="ACCSC1")
    capture = copy.deepcopy(scan[0])
    capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    capture.SOPInstanceUID = capture.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    capture.SeriesInstanceUID, capture.SeriesNumber = generate_uid(), 99
    orthanc.upload(scan, capture)

    pulled = pull_study(client, scan[0].StudyInstanceUID, tmp_path)

    assert [s.uid for s in pulled.series] == [scan[0].SeriesInstanceUID]


def test_pull_refuses_a_series_over_the_limits_before_downloading(orthanc, client, tmp_path, monkeypatch):
    series = study("limits", patient_id="PIDLIM1", accession="ACCLIM1")
    orthanc.upload(series)
    monkeypatch.setenv("NEUROGRADE_MAX_FRAMES", "3")
    with pytest.raises(PacsError, match="NEUROGRADE_MAX_FRAMES"):
        pull_study(client, series[0].StudyInstanceUID, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("NEUROGRADE_MAX_FRAMES")
    monkeypatch.setenv("NEUROGRADE_MAX_VOXELS", "100")
    with pytest.raises(PacsError, match="NEUROGRADE_MAX_VOXELS"):
        pull_study(client, series[0].StudyInstanceUID, tmp_path / "out")


def test_pull_of_an_unknown_or_malformed_uid(client, tmp_path):
    with pytest.raises(PacsError, match="no series"):
        pull_study(client, "1.2.3.4.5.6.7", tmp_path)
    with pytest.raises(PacsError, match="not a DICOM UID"):
        pull_study(client, "1.2/../../instances", tmp_path)


# --- push -------------------------------------------------------------------------------------


def test_push_then_find_it_with_qido(orthanc, client):
    series = study("push", patient_id="PIDPUSH1", accession="ACCPUSH1")
    orthanc.upload(series)
    extra = copy.deepcopy(series[0])
    extra.SOPInstanceUID = extra.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    extra.InstanceNumber = 100

    assert push(client, [extra]) == [extra.SOPInstanceUID]

    found = client.search_for_instances(
        study_instance_uid=extra.StudyInstanceUID, search_filters={"SOPInstanceUID": extra.SOPInstanceUID}
    )
    assert len(found) == 1
    assert push(client, []) == []


def test_push_refused_by_the_server_is_a_pacs_error(orthanc, client):
    broken = copy.deepcopy(study("push-bad", patient_id="PIDPUSH2", accession="ACCPUSH2")[0])
    del broken.SOPInstanceUID, broken.StudyInstanceUID, broken.SeriesInstanceUID
    with pytest.raises(PacsError, match="stored 0 of the 1|refused storing"):
        push(client, [broken])


# --- connection errors ------------------------------------------------------------------------


def test_bad_credentials_are_a_clear_error_without_the_password(orthanc):
    with pytest.raises(PacsError, match="refused the credentials") as err:
        connect(orthanc.url, orthanc.auth[0], "wrong-password-xyz")
    assert "wrong-password-xyz" not in str(err.value)
    with pytest.raises(PacsError, match="refused the credentials"):
        connect(orthanc.url)


def test_unreachable_server_and_wrong_path(orthanc):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PacsError, match="cannot be reached"):
        connect(f"http://127.0.0.1:{port}/dicom-web", timeout=5)
    with pytest.raises(PacsError, match="HTTP 404.*DICOMweb root"):
        connect(f"{orthanc.rest}/not-dicom-web", *orthanc.auth)


def test_bad_urls_and_missing_settings(monkeypatch):
    for url in (
        "",
        "pacs.example.org/dicom-web",
        "ftp://pacs/dicom-web",
        "http://host:abc/dicom-web",
        "http://[::1/dicom-web",
        "http://pa cs/dicom-web",
        "http://pacs/dicom-web?x=1",
    ):
        with pytest.raises(PacsError, match="http\\(s\\) URL"):
            connect(url)
    with pytest.raises(PacsError, match="not in the URL"):
        connect("http://user:secret@127.0.0.1:1/dicom-web")
    monkeypatch.delenv("NEUROGRADE_PACS_URL", raising=False)
    with pytest.raises(PacsError, match="NEUROGRADE_PACS_URL"):
        connect_from_settings()


def test_settings_never_show_the_password(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_PACS_URL", "https://pacs.example.org/dicom-web")
    monkeypatch.setenv("NEUROGRADE_PACS_USER", "neurograde")
    monkeypatch.setenv("NEUROGRADE_PACS_PASSWORD", "pw-XYZZY-123")
    settings = get_settings()
    assert settings.pacs_password == "pw-XYZZY-123"
    assert "pw-XYZZY-123" not in repr(settings) and "neurograde" in repr(settings)


def test_errors_never_quote_the_query(monkeypatch):
    """A requests error text holds the URL, and so the patient ID searched for."""
    client = dicomweb.DICOMwebClient("http://127.0.0.1:9/dicom-web")

    def fail():
        raise requests.exceptions.ConnectionError(
            "Max retries exceeded with url: /dicom-web/studies?PatientID=PIDSECRET9 (refused)"
        )

    with pytest.raises(PacsError) as err:
        dicomweb._call(client, fail, "the study search")
    assert "PIDSECRET9" not in str(err.value) and "connection refused" in str(err.value)


def test_malformed_qido_answers_are_dropped_or_redacted():
    good_uid = "1.2.3.4"
    items = [
        {"0020000D": {"vr": "UI", "Value": ["1.2/../x"]}},  # unsafe UID
        {
            "0020000D": {"vr": "UI", "Value": [good_uid]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Quux^Zanzibar"}]},
            "00081030": {"vr": "LO", "Value": ["Zanzibar head 03/04/1950"]},
            "00080061": {"vr": "CS", "Value": ["MR", "<script>"]},
            "00201208": {"vr": "IS", "Value": ["many"]},
        },
    ]
    summaries = [s for s in map(dicomweb._study_summary, items) if s]
    assert [s.uid for s in summaries] == [good_uid]
    s = summaries[0]
    assert s.description == REDACTED and s.modalities == ("MR", "UNKNOWN")
    assert s.n_instances is None


# --- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def pacs_env(orthanc, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_PACS_URL", orthanc.url)
    monkeypatch.setenv("NEUROGRADE_PACS_USER", orthanc.auth[0])
    monkeypatch.setenv("NEUROGRADE_PACS_PASSWORD", orthanc.auth[1])


def test_cli_search_and_pull(orthanc, pacs_env, tmp_path, capsys):
    from core.cli import main

    series = study("cli", patient_id="PIDCLI1", accession="ACCCLI1")
    orthanc.upload(series)
    uid = series[0].StudyInstanceUID

    assert main(["pacs", "search", "--patient-id", "PIDCLI1"]) == 0
    table = capsys.readouterr().out
    assert uid in table and "2024-02-29" in table and "MR" in table
    no_phi(table, "PIDCLI1", "ACCCLI1")
    assert main(["pacs", "search", "--accession", "ACCCLI1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study_uid"] == uid

    out = tmp_path / "pulled"
    assert main(["pacs", "pull", uid, "--out", str(out)]) == 0
    assert "series-01: MR 'T1 AX', 6 image(s)" in capsys.readouterr().out
    assert load_volume(out).array.shape == SHAPE[::-1]
    assert main(["pacs", "pull", uid, "--out", str(out)]) == 1  # not empty: refused
    assert "not an empty folder" in capsys.readouterr().err


def test_cli_pull_predict_runs_the_predict_command_on_the_folder(orthanc, pacs_env, tmp_path, monkeypatch):
    from core.cli import main
    from core.commands import predict

    series = study("cli-predict", patient_id="PIDCLI2", accession="ACCCLI2")
    orthanc.upload(series)
    seen = {}
    monkeypatch.setattr(predict, "run", lambda args: seen.update(vars(args)) or 0)

    assert main(["pacs", "pull", series[0].StudyInstanceUID, "--out", str(tmp_path / "p"), "--predict", "--json"]) == 0
    assert seen["paths"] == [str(tmp_path / "p")] and seen["json"] and not seen["allow_incomplete"]


def test_cli_errors_are_one_line(monkeypatch, capsys):
    from core.cli import main

    monkeypatch.delenv("NEUROGRADE_PACS_URL", raising=False)
    assert main(["pacs", "search"]) == 1
    assert capsys.readouterr().err.startswith("error: No PACS is configured")
    assert main(["pacs", "search", "--url", "http://127.0.0.1:9/dicom-web"]) == 1
    assert "cannot be reached" in capsys.readouterr().err


@pytest.mark.data
def test_a_real_volume_through_the_pacs_loads_as_the_nifti_does(orthanc, client, shared_data, tmp_path):
    """A real T1 post-contrast volume (tcia-btp), written as a DICOM series, stored in Orthanc and
    pulled back over DICOMweb, reads the same voxels and geometry as the NIfTI it came from."""
    nii = sorted((shared_data / "tcia-btp").glob("*/pre_t1post.nii.gz"))[0]
    img = nib.load(nii)
    source = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.int16), img.affine)
    series = f.with_header(f.series_from_image(source, seed="btp-real"), PatientID="PIDREAL1")
    orthanc.upload(series)

    pulled = pull_study(client, search_studies(client, patient_id="PIDREAL1")[0].uid, tmp_path)
    volume, expected = load_volume(pulled.series[0].folder), load_volume(nii)

    assert volume.array.shape == expected.array.shape
    np.testing.assert_allclose(volume.spacing, expected.spacing, atol=1e-4)
    np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-3)
    np.testing.assert_array_equal(volume.array, np.round(expected.array))


@pytest.fixture
def junk_server():
    """A local HTTP server that answers every request with 200 and bytes that are not DICOMweb."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Junk(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"\x00<html>not dicom</html>"
            self.send_response(200)
            self.send_header(
                "Content-Type",
                "multipart/related; boundary=xyz" if "/series/" in self.path else "application/dicom+json",
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Junk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


def test_an_answer_that_is_not_dicomweb_is_a_pacs_error(junk_server, tmp_path):
    with pytest.raises(PacsError, match="not valid DICOMweb"):
        connect(junk_server)
    client = dicomweb.DICOMwebClient(junk_server)
    with pytest.raises(PacsError, match="not valid DICOMweb"):
        series = dicomweb.SeriesSummary("h", 1, "MR", "", 1, uid="1.2.3.4")
        dicomweb._call(
            client,
            lambda: dicomweb._download(client, "1.2.3", series, tmp_path, dicomweb._Budget(get_settings()), []),
            "the download",
        )
