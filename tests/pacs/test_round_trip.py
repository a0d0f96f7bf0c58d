"""The issue's round trip against a live Orthanc: a series into the PACS -> pull -> load -> verdict ->
SR + Secondary Captures pushed back (STOW-RS) -> found in the same study by QIDO and in Orthanc's
own REST API, and the stored copies pass dciodvfy."""

from __future__ import annotations

import highdicom as hd
import nibabel as nib
import requests

from core import preprocess
from core.inference import Predictor
from core.io import load_volume
from core.pacs import connect, pull_study, push
from core.pacs.dicom_out import dicom_results, key_slice_cams
from tests.inference.inference_helpers import GRADE_CLASSES, PRESENCE_CLASSES, TYPE_CLASSES, tiny_loaded
from tests.io import dicom_factory as factory
from tests.pacs.dicom_checks import VOLUME, dciodvfy_errors

MODALITY, SERIES_UID, SOP_CLASS = "00080060", "0020000E", "00080016"


def _value(item: dict, tag: str):
    return (item.get(tag, {}).get("Value") or [None])[0]


def test_verdict_goes_back_into_the_same_study(orthanc, tmp_path):
    source = factory.series_from_image(nib.load(VOLUME), phi=True, seed="round-trip")
    study_uid = source[0].StudyInstanceUID
    orthanc.upload(source)

    client = connect(orthanc.url, *orthanc.auth)
    pulled = pull_study(client, study_uid, tmp_path / "pulled")
    volume = load_volume(pulled.root)
    predictor = Predictor(
        {
            "presence": tiny_loaded("presence", PRESENCE_CLASSES, seed=1),
            "tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES, seed=2),
            "grade": tiny_loaded("grade", GRADE_CLASSES, ["t1pre", "flair", "t1post"], seed=3),
        },
        device="cpu",
        precision="fp32",
    )
    pred = predictor.predict_volume(volume)
    reference = pulled.reference  # from the pulled headers, in memory only
    assert reference.study_instance_uid == study_uid and len(reference.instances) == len(source)
    slices01 = preprocess.slices(volume, "axial")
    datasets = dicom_results(
        pred,
        reference,
        slices01,
        key_slice_cams(predictor, pred, slices01),
        cards={t: m.card for t, m in predictor.models.items()},
    )
    stored = push(client, datasets)
    assert set(stored) == {ds.SOPInstanceUID for ds in datasets}

    # QIDO-RS: the SR and the key images are series of the source study
    found = client.search_for_series(study_instance_uid=study_uid)
    by_modality = {}
    for item in found:
        by_modality.setdefault(_value(item, MODALITY), set()).add(_value(item, SERIES_UID))
    sr, images = datasets[0], datasets[1:]
    assert images, "the verdict has key slices: their Secondary Captures are sent too"
    assert by_modality["SR"] == {sr.SeriesInstanceUID}
    assert by_modality["OT"] == {images[0].SeriesInstanceUID}
    assert by_modality["MR"] == {source[0].SeriesInstanceUID}
    instances = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=sr.SeriesInstanceUID)
    assert [_value(i, SOP_CLASS) for i in instances] == [sr.SOPClassUID]

    # Orthanc's own view of the study (what its explorer shows) and the stored copies
    orthanc_id = orthanc.find_study(study_uid)
    series = orthanc.get(f"/studies/{orthanc_id}/series")
    assert sorted(s["MainDicomTags"]["Modality"] for s in series) == ["MR", "OT", "SR"]
    mine = [s for s in series if s["MainDicomTags"]["Modality"] in ("SR", "OT")]
    assert sum(len(s["Instances"]) for s in mine) == len(datasets)
    stored_files = []
    for s in mine:
        for instance_id in s["Instances"]:
            raw = requests.get(f"{orthanc.rest}/instances/{instance_id}/file", auth=orthanc.auth, timeout=30)
            raw.raise_for_status()
            stored_files.append(tmp_path / f"stored-{s['MainDicomTags']['Modality']}-{len(stored_files)}.dcm")
            stored_files[-1].write_bytes(raw.content)
    (sr_path,) = [p for p in stored_files if "-SR-" in p.name]
    back = hd.sr.srread(sr_path)
    assert back.SOPInstanceUID == sr.SOPInstanceUID and back.PatientID == source[0].PatientID
    for path in stored_files:
        assert dciodvfy_errors(path) == [], path.name
