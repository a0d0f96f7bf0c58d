"""Results out as DICOM: the source reference, the Structured Report, the Secondary Capture key
images, `predict --dicom-out`; every object read back with highdicom / pydicom and checked by
dciodvfy (dicom3tools) where it is installed."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from core import preprocess
from core.cli import main
from core.inference import (
    CANNOT_ASSESS,
    NOT_APPLICABLE,
    NOT_VALIDATED,
    Predictor,
    TaskResult,
    VolumePrediction,
    uncertainty,
)
from core.io import load_volume
from core.io.dicom import series_key
from core.pacs import dicom_out
from core.pacs.reference import SourceReference
from tests.inference.inference_helpers import GRADE_CLASSES, PRESENCE_CLASSES, TYPE_CLASSES, tiny_loaded
from tests.io import dicom_factory as factory
from tests.pacs.dicom_checks import VOLUME, dciodvfy_errors, sr_items


def task_box(sr, title: str):
    return next(i for i in sr_items(sr, "CONTAINER", title))


def code_meaning(item) -> str:
    return item.ConceptCodeSequence[0].CodeMeaning


@pytest.fixture(scope="module")
def source_series(tmp_path_factory) -> tuple[Path, list]:
    """A real volume (TCIA glioblastoma, T1 post-contrast) as a DICOM series with identifying headers."""
    datasets = factory.series_from_image(nib.load(VOLUME), phi=True, seed="dicom-out")
    folder = tmp_path_factory.mktemp("source")
    factory.write_series(datasets, folder)
    return folder, datasets


@pytest.fixture(scope="module")
def tiny_predictor():
    return Predictor(
        {
            "presence": tiny_loaded("presence", PRESENCE_CLASSES, seed=1),
            "tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES, seed=2),
            "grade": tiny_loaded("grade", GRADE_CLASSES, ["t1pre", "flair", "t1post"], seed=3),
        },
        device="cpu",
        precision="fp32",
    )


@pytest.fixture(scope="module")
def written(source_series, tiny_predictor, tmp_path_factory):
    """SR + key images of the tiny models' prediction on the real series, written and read back."""
    folder, _ = source_series
    volume = load_volume(folder)
    pred = tiny_predictor.predict_volume(volume, tasks=["presence", "tumor_type", "grade"])
    slices01 = preprocess.slices(volume, "axial")
    cards = {t: dict(m.card, sha256="ab" * 32) for t, m in tiny_predictor.models.items()}
    datasets = dicom_out.dicom_results(
        pred,
        SourceReference.from_files(folder),
        slices01,
        dicom_out.key_slice_cams(tiny_predictor, pred, slices01),
        cards=cards,
    )
    paths = dicom_out.write_results(tmp_path_factory.mktemp("out"), datasets)
    return pred, paths


# ---------------------------------------------------------------------------------- reference
def test_reference_holds_the_study_but_its_repr_names_no_one(source_series):
    _, datasets = source_series
    ref = SourceReference.from_datasets(datasets)
    assert ref.study_instance_uid == datasets[0].StudyInstanceUID and not ref.is_new_study
    assert [i for _s, _c, i in ref.instances] == [ds.SOPInstanceUID for ds in datasets]
    assert ref.patient_name == factory.PHI["PatientName"] and ref.accession_number == factory.PHI["AccessionNumber"]
    shown = repr(ref) + str(ref) + f"{ref}"
    for secret in [*factory.PHI_STRINGS, datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID]:
        assert secret not in shown
    assert "24 instances" in shown


def test_reference_from_files_keeps_the_loaded_series_and_skips_other_files(tmp_path):
    img = factory.reference_image()
    first = factory.series_from_image(img, seed="ref-a")
    second = factory.series_from_image(img, seed="ref-a", series_number=2)  # same study ...
    for ds in second:  # ... another series
        ds.SeriesInstanceUID = factory._uid("other series")
        ds.SOPInstanceUID = factory._uid("other sop", ds.InstanceNumber)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    factory.write_series(first, tmp_path / "a")
    factory.write_series(second, tmp_path / "b")
    (tmp_path / "notes.txt").write_text("not DICOM")
    both = SourceReference.from_files(tmp_path)
    assert len(both.series) == 2
    one = SourceReference.from_files(tmp_path, series_uids=[series_key(first[0].SeriesInstanceUID)])
    assert [s.series_instance_uid for s in one.series] == [first[0].SeriesInstanceUID]
    assert len(one.instances) == len(first)

    elsewhere = factory.series_from_image(img, seed="ref-b")  # another study
    with pytest.raises(ValueError, match="several studies"):
        SourceReference.from_datasets(first + elsewhere)
    with pytest.raises(ValueError, match="no DICOM instance"):
        SourceReference.from_files(tmp_path / "notes.txt")


def test_new_study_is_fresh_and_anonymous():
    a, b = SourceReference.new_study(), SourceReference.new_study()
    assert a.is_new_study and a.study_instance_uid != b.study_instance_uid and not a.series
    assert a.patient_id == "ANONYMOUS" and a.patient_name == "ANONYMOUS^" and len(a.study_date) == 8


# --------------------------------------------------------------------------- SR and key images
def test_sr_reads_back_with_the_prediction(written, source_series):
    pred, paths = written
    _, source = source_series
    sr = hd.sr.srread(paths[0])
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    assert sr.StudyInstanceUID == source[0].StudyInstanceUID  # the same study ...
    assert sr.PatientID == source[0].PatientID and str(sr.PatientName) == str(source[0].PatientName)
    assert sr.SeriesInstanceUID != source[0].SeriesInstanceUID  # ... a new series
    assert sr.ContentQualification == "RESEARCH"
    for task, res in pred.tasks.items():
        box = task_box(sr, dicom_out.task_concept(task).meaning)
        status = next(i for i in sr_items(box, "CODE", "Result status"))
        assert status.ConceptCodeSequence[0].CodeValue == res.status
        version = next(i for i in sr_items(box, "TEXT", "Algorithm Version"))
        assert version.TextValue == res.model_version.partition("@")[2]
        params = [i.TextValue for i in sr_items(box, "TEXT", "Algorithm Parameters")]
        assert "weights sha256 " + "ab" * 32 in params
        if res.answered:
            probs = {
                n.ContentSequence[0].ConceptCodeSequence[0].CodeValue: float(n.MeasuredValueSequence[0].NumericValue)
                for n in sr_items(box, "NUM", "Probability")
            }
            expected = {dicom_out.class_concept(c).value: p for c, p in zip(res.classes, res.probabilities)}
            assert probs == pytest.approx(expected, abs=1e-6)
            answer = sr_items(box, "CODE", "Finding")[0]
            assert answer.ConceptCodeSequence[0].CodeValue == dicom_out.class_concept(res.label).value
    intended = sr_items(sr, "TEXT", "Intended use")[0].TextValue
    assert "Research use only, not for diagnosis" in intended
    assert sr.SoftwareVersions and sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99NEUROGRADE"


def test_sr_references_the_source_series_and_the_key_images(written, source_series):
    _pred, paths = written
    _, source = source_series
    sr = pydicom.dcmread(paths[0])
    cited = {
        (s.SeriesInstanceUID, i.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for s in study.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    assert {(ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in source} <= cited
    series_refs = [i.UID for i in sr_items(sr, "UIDREF", "Source series for image processing operation")]
    assert series_refs == [source[0].SeriesInstanceUID]
    images = [pydicom.dcmread(p) for p in paths[1:]]
    key_refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in sr_items(sr, "IMAGE")]
    assert key_refs == [ds.SOPInstanceUID for ds in images] and len(images) >= 1
    assert {(ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in images} <= cited


def test_key_images_are_rgb_with_a_burned_in_banner(written, source_series):
    pred, paths = written
    _, source = source_series
    images = [pydicom.dcmread(p) for p in paths[1:]]
    assert len(images) == len(pred.key_slices)
    assert len({ds.SeriesInstanceUID for ds in images}) == 1
    for ds in images:
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert ds.StudyInstanceUID == source[0].StudyInstanceUID and ds.PatientID == source[0].PatientID
        assert ds.SeriesInstanceUID not in (source[0].SeriesInstanceUID, pydicom.dcmread(paths[0]).SeriesInstanceUID)
        assert ds.BurnedInAnnotation == "YES" and ds.PhotometricInterpretation == "RGB"
        assert "NOT FOR DIAGNOSIS" in ds.ImageComments
        px = ds.pixel_array
        assert px.ndim == 3 and px.shape[2] == 3 and px.shape[1] >= dicom_out.MIN_WIDTH
        corner = px[2, 2].astype(int)  # the banner's red background, top left
        assert corner[0] > 120 and corner[1] < 40 and corner[2] < 40


def test_every_written_object_passes_dciodvfy(written):
    _pred, paths = written
    for path in paths:
        assert dciodvfy_errors(path) == [], path.name


def _prediction(tasks: dict, key_slices=(1,), refer=True) -> VolumePrediction:
    return VolumePrediction(
        tasks=tasks,
        slices=[{"index": i} for i in range(3)],
        key_slices=list(key_slices),
        verdict="",
        refer=refer,
        refer_reasons=[f"{t}: {r}" for t, res in tasks.items() for r in res.refer_reasons],
        ood={"is_ood": False},
        model_versions={t: r.model_version for t, r in tasks.items()},
        timings_ms={},
        n_slices=3,
    )


def test_sr_says_why_a_task_gives_no_answer(tmp_path):
    p = [0.45, 0.40, 0.15]
    tasks = {
        "presence": TaskResult(
            "presence",
            PRESENCE_CLASSES,
            [0.2, 0.8],
            "tumor",
            uncertainty([0.2, 0.8]),
            False,
            model_version="presence@9",
        ),
        "tumor_type": TaskResult(
            "tumor_type",
            TYPE_CLASSES,
            p,
            "glioma",
            uncertainty(p),
            True,
            ["close call: top-2 margin 0.05 < 0.2"],
            model_version="tumor_type@9",
        ),
        "grade": TaskResult.unavailable("grade", CANNOT_ASSESS, "the model grade@9 failed verification", "grade@9"),
    }
    pred = _prediction(tasks)
    sr = dicom_out.structured_report(pred, SourceReference.new_study())
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    grade = task_box(sr, "Glioma grade")
    assert code_meaning(sr_items(grade, "CODE", "Result status")[0]) == "Cannot assess"
    assert "failed verification" in sr_items(grade, "TEXT", "Comment")[0].TextValue
    assert not sr_items(grade, "NUM")
    typed = task_box(sr, "Tumour type")
    assert [i.TextValue for i in sr_items(typed, "TEXT", "Reason for referral")] == tasks["tumor_type"].refer_reasons
    conclusions = sr_items(sr, "CONTAINER", "Conclusions")[0]
    assert code_meaning(sr_items(conclusions, "CODE", "Recommendation")[0]) == "Refer to a human reader"

    for status, why in ((NOT_VALIDATED, "its card does not show it beats chance"), (NOT_APPLICABLE, "")):
        tasks["grade"] = TaskResult.unavailable("grade", status, why or "x", "grade@9")
        sr = dicom_out.structured_report(_prediction(tasks), SourceReference.new_study())
        grade = task_box(sr, "Glioma grade")
        assert sr_items(grade, "CODE", "Result status")[0].ConceptCodeSequence[0].CodeValue == status


def test_results_for_a_new_study_without_key_images_still_validate(tmp_path):
    tasks = {"presence": TaskResult.unavailable("presence", CANNOT_ASSESS, "the input was refused: not MR")}
    pred = _prediction(tasks, key_slices=())
    ref = SourceReference.new_study()
    datasets = dicom_out.dicom_results(pred, ref, np.zeros((3, 16, 16), np.float32), None)
    assert len(datasets) == 1  # no key slice: the SR alone
    sr = datasets[0]
    assert sr.StudyInstanceUID == ref.study_instance_uid and sr.PatientID == "ANONYMOUS"
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr  # nothing to cite
    (path,) = dicom_out.write_results(tmp_path, datasets)
    assert hd.sr.srread(path).SOPInstanceUID == sr.SOPInstanceUID
    assert dciodvfy_errors(path) == []


def test_key_image_of_a_picture_has_no_orientation(tmp_path):
    tasks = {
        "presence": TaskResult(
            "presence",
            PRESENCE_CLASSES,
            [0.9, 0.1],
            "no_tumor",
            uncertainty([0.9, 0.1]),
            False,
            model_version="presence@9",
        )
    }
    pred = _prediction(tasks, key_slices=(0,), refer=False)
    sl = np.linspace(0, 1, 3 * 40 * 30, dtype=np.float32).reshape(3, 40, 30)
    (sc,) = dicom_out.key_images(pred, sl, None, SourceReference.new_study(), aspect=2.0, patient_orientation=None)
    assert sc.PatientOrientation in (None, "", [])
    banner_and_caption = sc.Rows - 40 * 2 * (dicom_out.MIN_WIDTH / 30)
    assert 0 < banner_and_caption < 100  # drawn at twice the height: aspect 2
    (path,) = dicom_out.write_results(tmp_path, [sc])
    assert dciodvfy_errors(path) == []


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def saved_models():
    from core.zoo import save_checkpoint
    from model_zoo import create

    refs = []
    for task, classes, seq in (
        ("presence", PRESENCE_CLASSES, None),
        ("tumor_type", TYPE_CLASSES, None),
        ("grade", GRADE_CLASSES, ["t1pre", "flair", "t1post"]),
    ):
        save_checkpoint(
            create("vgg19_slim", len(classes)),
            {"architecture": "vgg19_slim", "classes": classes, "input": {"size": 32, "sequences": seq}},
            task,
            "dcm1",
        )
        refs += ["--model", f"{task}@dcm1"]
    return refs + ["--precision", "fp32", "--device", "cpu", "--allow-incomplete"]


def test_predict_dicom_out_writes_results_into_the_source_study(source_series, saved_models, tmp_path, capsys):
    folder, source = source_series
    out = tmp_path / "results"
    rc = main(["predict", str(folder), "--json", "--dicom-out", str(out), *saved_models])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    assert "DICOM object(s) written" in stderr
    for secret in factory.PHI_STRINGS:  # identity goes into the DICOM files only
        assert secret not in stdout and secret not in stderr
    json.loads(stdout.splitlines()[0])
    paths = sorted(out.glob("*.dcm"), key=lambda p: p.name != "SR001.dcm")  # the SR first
    assert paths[0].name == "SR001.dcm" and {p.name[:2] for p in paths} == {"SR", "SC"}
    for path in paths:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == source[0].StudyInstanceUID and ds.PatientID == source[0].PatientID
        assert dciodvfy_errors(path) == [], path.name
    sr = pydicom.dcmread(paths[0])
    assert sr_items(sr, "UIDREF", "Source series for image processing operation")[0].UID == source[0].SeriesInstanceUID


def test_predict_dicom_out_for_nifti_makes_a_new_study(saved_models, tmp_path, capsys):
    out = tmp_path / "results"
    rc = main(["predict", str(VOLUME), "--dicom-out", str(out), *saved_models])
    _stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    datasets = [pydicom.dcmread(p) for p in sorted(out.glob("*.dcm"), key=lambda p: p.name != "SR001.dcm")]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1 and datasets[0].PatientID == "ANONYMOUS"
    assert "CurrentRequestedProcedureEvidenceSequence" in datasets[0]  # it cites its key images


def test_predict_each_with_dicom_out_writes_one_folder_per_input(saved_models, tmp_path, capsys):
    from PIL import Image

    from tests.inference.inference_helpers import phantom

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for k in range(2):
        Image.fromarray((phantom(1, 64, 64, bright=(0,), seed=k)[0] * 255).astype(np.uint8)).save(pictures / f"{k}.png")
    out = tmp_path / "results"
    rc = main(["predict", str(pictures), "--each", "--dicom-out", str(out), *saved_models])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["001", "002"]
    studies = set()
    for folder in out.iterdir():
        datasets = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
        studies |= {ds.StudyInstanceUID for ds in datasets}
        for ds in datasets:
            if ds.Modality != "SR":
                assert not ds.PatientOrientation  # a picture's plane is unknown
    assert len(studies) == 2  # each picture its own new study
