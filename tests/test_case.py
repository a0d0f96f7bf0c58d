"""core.case.Case on a small phantom with tiny real models (random weights, 32 px): each step is
computed once, and what the page, the report and the review queue get is what the models read."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from core import preprocess  # noqa: E402
from core.case import Case, describe_upload, unnamed_channels  # noqa: E402
from core.inference import Predictor  # noqa: E402
from tests.inference.inference_helpers import (  # noqa: E402
    GRADE_CLASSES,
    PRESENCE_CLASSES,
    TYPE_CLASSES,
    phantom,
    tiny_loaded,
    volume_of,
)


def _predictor(type_version: str = "t1") -> Predictor:
    tumour_type = tiny_loaded("tumor_type", TYPE_CLASSES, seed=2)
    tumour_type.version = type_version
    return Predictor(
        {
            "presence": tiny_loaded("presence", PRESENCE_CLASSES, seed=1),
            "tumor_type": tumour_type,
            "grade": tiny_loaded("grade", GRADE_CLASSES, ["t1pre", "flair", "t1post"], seed=3),
        },
        device="cpu",
        precision="fp32",
    )


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return _predictor()


@pytest.fixture
def counted(monkeypatch):
    """Counts calls of `name` in a module: counted(module, name) -> list that grows per call."""

    def count(module, name):
        calls, original = [], getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or original(*a, **k))
        return calls

    return count


def _case(predictor=None) -> Case:
    return Case(volume_of(phantom(6, bright=(2, 3))), source="uploaded NIfTI", predictor=predictor)


def test_slices_are_the_display_slices_normalised_once(counted):
    normalisations = counted(preprocess, "normalize_intensity")
    case = _case()
    first = case.slices
    assert case.slices is first and case.normalized() is case.normalized(case.volume.active_channel)
    assert len(normalisations) == 1  # viewer and models share one normalisation
    np.testing.assert_array_equal(first, preprocess.slices(case.volume, "axial"))
    assert first.flags.c_contiguous and first.dtype == np.float32


def test_prediction_once_per_set_of_model_versions(predictor, counted):
    runs = counted(Predictor, "predict_volume")
    case = _case(predictor)
    pred = case.prediction
    assert case.prediction is pred and len(runs) == 1
    assert pred.source == "uploaded NIfTI" and pred.n_slices == 6
    case.predictor = _predictor()  # rebuilt, same versions: nothing to redo
    assert case.prediction is pred and len(runs) == 1
    case.predictor = _predictor(type_version="t2")  # a promotion: the answer follows
    again = case.prediction
    assert again is not pred and case.prediction is again and len(runs) == 2


def test_without_models_there_is_no_prediction_and_no_report():
    case = _case()
    assert case.prediction is None and case.explainable_tasks == [] and case.key_slice_heatmaps() == {}
    with pytest.raises(RuntimeError, match="no model"):
        case.report_pdf()


def test_heat_maps_are_cached_per_slice_class_and_method(predictor, counted):
    import core.explain

    cams = counted(core.explain, "cam")
    case = _case(predictor)
    task = case.explained_task
    assert task in case.explainable_tasks
    first = case.heatmap(task, 2)
    assert not first.cached and first.class_index == case.prediction.class_index(task)
    again = case.heatmap(task, 2)
    assert again.cached and again.ms == 0.0 and len(cams) == 1
    np.testing.assert_array_equal(again.heatmap, first.heatmap)
    assert first.heatmap.shape == case.slices.shape[1:]
    other_class = (first.class_index + 1) % len(case.classes(task))
    case.heatmap(task, 2, other_class)
    case.heatmap(task, 2, method="eigencam")
    case.heatmap(task, 3)
    assert len(cams) == 4  # each new (slice, class, method) computes
    assert case.heatmap(task, 2, other_class).cached and len(cams) == 4


def test_model_slices_are_what_the_model_reads_computed_once(predictor, counted):
    case = _case(predictor)
    reads = counted(Predictor, "task_slices")
    x = case.model_slices("presence")
    assert case.model_slices("presence") is x and len(reads) == 1
    assert x is case.slices  # a grey model reads the display slices


def test_report_bytes_built_once_per_set_of_heat_maps(predictor, counted):
    import core.report

    builds = counted(core.report, "build_pdf")
    case = _case(predictor)
    pdf = case.report_pdf()
    assert pdf.startswith(b"%PDF") and case.report_pdf() is pdf and len(builds) == 1
    same = case.key_slice_heatmaps()  # the page's gallery: the same maps, cached
    assert set(same) == set(case.prediction.key_slices) and case.report_pdf(same) is pdf
    assert len(builds) == 1
    case.report_pdf(case.key_slice_heatmaps(method="eigencam"))
    assert len(builds) == 2
    data = case.report_json()
    assert '"headline"' in data and "NaN" not in data


def test_send_to_review_stores_the_case_slices_once(predictor, monkeypatch):
    import core.review

    case = _case(predictor)
    sent = []

    def store(repo, volume, prediction, actor, images=None):
        sent.append(images)
        return 7

    monkeypatch.setattr(core.review, "send_to_review", store)
    assert case.send_to_review(object(), "Dr Test") == 7
    assert case.send_to_review(object(), "Dr Test") == 7 and case.review_case_id == 7
    assert len(sent) == 1 and sent[0] is case.slices  # the case's slices, not recomputed


def test_the_whole_path_normalises_the_scan_once(predictor, counted):
    """The prediction, heat maps, report and review all read the case's slices."""
    normalisations = counted(preprocess, "normalize_intensity")
    case = _case(predictor)
    _ = case.prediction
    case.slices, case.key_slice_heatmaps(), case.report_pdf(), case.report_json()
    assert len(normalisations) == 1


def test_describe_upload_and_unnamed_channels_never_name_files():
    vol = volume_of(phantom(2))
    assert describe_upload(dataclasses.replace(vol, source_format="nifti"), 1) == "uploaded NIfTI"
    assert describe_upload(dataclasses.replace(vol, source_format="dicom"), 3) == "uploaded DICOM series (3 files)"
    assert describe_upload(None, 1) == "uploaded scan"
    assert unnamed_channels(vol) is None
    rgb = volume_of(phantom(1), channels={c: phantom(1) for c in ("red", "green", "blue")})
    assert unnamed_channels(rgb) == ("rgb", 3)
    four_d = volume_of(phantom(2), channels={f"t{i}": phantom(2) for i in range(4)})
    assert unnamed_channels(four_d) == ("volumes", 4)


def test_dicom_results_of_a_scan_without_headers_go_into_one_new_study(predictor):
    case = _case(predictor)
    first = case.dicom_results()
    assert first[0].Modality == "SR" and all(ds.Modality == "OT" for ds in first[1:])
    assert case.reference is not None and case.reference.is_new_study
    again = case.dicom_results()
    assert {ds.StudyInstanceUID for ds in first + again} == {case.reference.study_instance_uid}


def test_renaming_a_channel_recomputes_what_depends_on_the_names(predictor):
    case = _case(predictor)
    before = case.prediction
    name = case.volume.active_channel
    case.rename_channels({name: "flair"})
    assert list(case.volume.channels) == ["flair"]
    assert case.prediction is not before
