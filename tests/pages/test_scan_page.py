"""The Scan page in AppTest, with uploads simulated through AppTest's file_uploader.

Tests marked "stub" replace core.io.load_volume with a function returning constructed Volumes
(the page looks the loader up on every run, so monkeypatching core.io works); the others go
through the real loader with files written here by nibabel, pydicom and PIL.

Viewer tests run with no model (core.zoo.active_version patched to None, whatever
ships); the verdict tests (v2) save tiny vgg19_slim models with biased heads into the test's
NEUROGRADE_HOME and make them active, so the verdict is known in advance.
"""

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import core.io
from core.io.volume import Volume, VolumeLoadError

REPO = Path(__file__).resolve().parents[2]
SCAN = str(REPO / "pages" / "scan.py")


def _page() -> AppTest:
    return AppTest.from_file(SCAN, default_timeout=60)


def _upload(at: AppTest, *files) -> AppTest:
    at.file_uploader(key="scan_upload").set_value(list(files))
    return at.run()


def _texts(elements) -> str:
    """The elements' text as a reader sees it (Markdown escapes of core.markup.text removed)."""
    return re.sub(r"\\(.)", r"\1", " ".join(str(e.value) for e in elements))


def _volume(shape=(6, 8, 10), spacing=(2.0, 1.0, 1.0), **kw) -> Volume:
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(a, spacing, np.diag([*spacing[::-1], 1.0]), **kw)


@pytest.fixture
def no_models(monkeypatch):
    """The zoo looks empty (whatever model_zoo/checkpoints ships): viewer-only page."""
    import core.zoo

    monkeypatch.setattr(core.zoo, "active_version", lambda task, root=None: None)


@pytest.fixture
def stub_loader(monkeypatch, no_models):
    calls = []

    def install(result):
        def fake(source, filename=None, **options):
            calls.append(options)
            if isinstance(result, Exception):
                raise result
            return result(options) if callable(result) else result

        monkeypatch.setattr(core.io, "load_volume", fake)
        return calls

    return install


def test_empty_page_invites_an_upload():
    at = _page().run()
    assert not at.exception
    assert at.title[0].value == "Scan"
    assert "Drop a scan" in at.info[0].value
    assert at.file_uploader(key="scan_upload").accept_multiple_files


def test_stub_volume_without_models_shows_three_planes_metadata_and_says_so(stub_loader):
    calls = stub_loader(_volume(meta={"SeriesDescription": "T1 axial"}, warnings=["Spacing is nominal"]))
    at = _upload(_page().run(), ("scan.nii.gz", b"x" * 10, "application/gzip"))
    assert not at.exception and not at.error
    md = _texts(at.markdown)
    for plane in ("Axial", "Coronal", "Sagittal"):
        assert f"**{plane}**" in md
    assert "6 × 8 × 10" in md and "2 × 1 × 1" in md
    assert "Spacing is nominal" in at.warning[0].value
    assert [s.max for s in at.slider if s.key.startswith("pos_")] == [6, 8, 10]  # 1-based slices
    assert [s.value for s in at.slider if s.key.startswith("pos_")] == [4, 5, 6]  # middle slices
    assert [h.value for h in at.subheader] == ["Verdict", "Viewer"]
    assert "No model is installed yet" in at.info[0].value
    assert len(calls) == 1


def test_reruns_do_not_reload_and_sliders_move(stub_loader):
    calls = stub_loader(_volume())
    at = _upload(_page().run(), ("scan.nii", b"abc", "application/octet-stream"))
    axial = [s for s in at.slider if s.key.startswith("pos_axial")][0]
    axial.set_value(2).run()
    assert not at.exception
    assert "slice 2 of 6" in _texts(at.caption)
    at.selectbox(key="win_preset").set_value("contrast").run()
    assert at.slider(key="win_center").value == pytest.approx(0.6)
    assert len(calls) == 1  # widget reruns reuse the loaded volume


def test_multichannel_volume_has_channel_picker(stub_loader):
    v = _volume()
    flair = np.ones_like(v.array)
    stub_loader(Volume(v.array, v.spacing, v.affine, channels={"t1pre": v.array, "flair": flair}))
    at = _upload(_page().run(), ("tcga.tif", b"abc", "image/tiff"))
    radio = at.radio(key="scan_channel")
    assert radio.options == ["t1pre", "flair"] and radio.value == "t1pre"
    radio.set_value("flair").run()
    assert not at.exception


def test_single_slice_image_shows_axial_only(stub_loader):
    stub_loader(_volume(shape=(1, 12, 16), spacing=(1.0, 1.0, 1.0), source_format="image"))
    at = _upload(_page().run(), ("slice.png", b"abc", "image/png"))
    assert not at.exception
    md = _texts(at.markdown)
    assert "**Image as given (plane unknown)**" in md  # a 2D picture records no plane
    assert "Axial" not in md and "**Coronal**" not in md
    assert not [s for s in at.slider if s.key.startswith("pos_")]


def test_several_series_offer_a_choice(stub_loader):
    series = [
        {"uid": "1.2.3", "description": "T1", "modality": "MR", "n_images": 6},
        {"uid": "4.5.6", "description": "FLAIR", "modality": "MR", "n_images": 4},
    ]
    calls = stub_loader(
        lambda opts: _volume(shape=(4, 8, 8) if opts.get("series") == "4.5.6" else (6, 8, 10), series=series)
    )
    at = _upload(_page().run(), ("a.dcm", b"1", "application/dicom"), ("b.dcm", b"2", "application/dicom"))
    box = [s for s in at.selectbox if s.key.startswith("scan_series")][0]
    assert len(box.options) == 3 and "FLAIR" in box.options[2]
    box.set_value(box.options[2]).run()
    assert not at.exception
    assert calls[-1]["series"] == "4.5.6"
    assert "4 × 8 × 8" in _texts(at.markdown)


def test_volume_load_error_is_shown_plainly(stub_loader):
    stub_loader(VolumeLoadError("This file is not a scan NeuroGrade can read (a PDF?)."))
    at = _upload(_page().run(), ("report.pdf", b"%PDF-1.4", "application/pdf"))
    assert not at.exception
    assert at.error[0].value == "This file is not a scan NeuroGrade can read (a PDF?)."
    assert not at.slider


def test_unexpected_error_is_caught_without_traceback(stub_loader, caplog):
    stub_loader(RuntimeError("boom in decoder"))
    at = _upload(_page().run(), ("x.nii", b"abc", "application/octet-stream"))
    assert not at.exception
    assert at.error[0].value == "Could not read this file: boom in decoder"
    assert "Traceback" not in at.error[0].value
    assert any("unexpected error" in r.message for r in caplog.records)


# ------------------------------------------------------------------ through the real loader
@pytest.fixture
def real_loader(no_models):
    pytest.importorskip("core.io.loader", reason="core.io.loader not written yet")


def _nifti_bytes(shape=(10, 12, 8), zooms=(1.0, 1.0, 2.5)) -> bytes:
    import nibabel as nib

    data = np.zeros(shape, np.float32)  # (i, j, k) = (x, y, z)
    data[2:8, 3:9, 2:6] = np.linspace(10, 200, 6 * 6 * 4).reshape(6, 6, 4)
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    return img.to_bytes()


def _dicom_zip(n=5, rows=16, cols=12) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    series_uid, study_uid = generate_uid(), generate_uid()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in range(n):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(f"s{k}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.Modality, ds.SeriesDescription, ds.PatientName = "MR", "AX T1", "Doe^Jane"
            ds.PatientID = "SECRET-42"
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [0.9, 0.9], 3.0
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = (np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) + 10 * k).tobytes()
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            zf.writestr(f"series/IM{k:04d}", out.getvalue())
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    from PIL import Image

    img = np.zeros((40, 30), np.uint8)
    img[10:30, 5:25] = 180
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="JPEG")
    return out.getvalue()


def test_real_nifti_upload(real_loader):
    at = _upload(_page().run(), ("brain.nii.gz", _nifti_bytes(), "application/gzip"))
    assert not at.exception and not at.error, _texts(at.error)
    md = _texts(at.markdown)
    assert "**Axial**" in md and "**Sagittal**" in md
    assert "8 × 12 × 10" in md  # (z, y, x) of an (x, y, z) = (10, 12, 8) file


def test_real_dicom_zip_upload(real_loader):
    at = _upload(_page().run(), ("series.zip", _dicom_zip(), "application/zip"))
    assert not at.exception and not at.error, _texts(at.error)
    md = _texts(at.markdown)
    assert "5 × 16 × 12" in md and "**Coronal**" in md
    shown = md + _texts(at.json) + _texts(at.caption)
    assert "Doe" not in shown and "SECRET-42" not in shown


def test_real_jpeg_upload(real_loader):
    at = _upload(_page().run(), ("slice.jpg", _jpeg_bytes(), "image/jpeg"))
    assert not at.exception and not at.error, _texts(at.error)
    assert "1 × 40 × 30" in _texts(at.markdown)


def test_corrupt_file_shows_error_not_exception(real_loader):
    at = _upload(_page().run(), ("broken.nii.gz", b"\x1f\x8b\x08\x00garbage" * 20, "application/gzip"))
    assert not at.exception
    assert at.error, "a corrupt file must produce a message"
    assert "Traceback" not in at.error[0].value
    assert not at.slider


# --------------------------------------------------------------------- v2: verdict, Grad-CAM, report
FIXTURES = REPO / "tests" / "fixtures"
GRADE_SEQUENCES = ["t1pre", "flair", "t1post"]
MODELS = {
    "presence": (["no_tumor", "tumor"], [-4.0, 4.0], None),
    "tumor_type": (["glioma", "meningioma", "pituitary"], [6.0, 0.0, 0.0], None),
    "grade": (["G2", "G3"], [4.0, 0.0], GRADE_SEQUENCES),
}


def save_tiny(task, version, classes, bias, sequences=None, activate=True, **card):
    """A 32 px vgg19_slim whose head bias makes it confident of one class (the small random head
    weights keep the heat maps non-trivial), saved and made active in this test's home (card: extra
    card keys, e.g. metrics). Returns the version folder."""
    import torch

    from core.zoo import save_checkpoint, set_active
    from model_zoo import create

    torch.manual_seed(len(classes))
    model = create("vgg19_slim", len(classes))
    with torch.no_grad():
        model.head.fc.bias.copy_(torch.tensor(bias))
    folder = save_checkpoint(
        model,
        {
            "architecture": "vgg19_slim",
            "classes": classes,
            "input": {"size": 32, "sequences": sequences},
            "intended_use": "tests only",
            **card,
        },
        task,
        version,
    )
    if activate:
        set_active(task, version)
    return folder


@pytest.fixture
def active_models(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    for task, (classes, bias, seq) in MODELS.items():
        save_tiny(task, "t1", classes, bias, seq)
    return "t1"


def _brain_nifti(n=6) -> bytes:
    """A head-like phantom (ellipse on black, a bright blob) of n axial slices, 48 x 40."""
    import nibabel as nib

    yy, xx = np.mgrid[0:48, 0:40]
    head = ((((yy - 24) / 20.0) ** 2 + ((xx - 20) / 16.0) ** 2) < 1).astype(np.float32)
    data = np.stack([head * (100 + 5 * k) for k in range(n)], -1)  # (y, x, z)
    data[20:28, 12:20, n // 2] += 150
    data = np.ascontiguousarray(data.transpose(1, 0, 2))  # (x, y, z)
    return nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])).to_bytes()


def _noise_png() -> bytes:
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG")
    return out.getvalue()


def _axial_caption(at) -> str:
    return next(
        c.value
        for c in at.caption
        if c.value.startswith("slice ") and "Grad-CAM" in c.value or c.value.startswith("slice ") and "CAM" in c.value
    )


def _refer_banner(at) -> str | None:
    return next((w.value for w in at.warning if w.value.startswith("**Refer to a human reader.**")), None)


def _verdict(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("## "))


def test_nifti_upload_shows_verdict_card_heat_maps_and_downloads(active_models, monkeypatch):
    from core.inference import ENTROPY_REFER, MARGIN_REFER, Predictor

    runs = []
    original = Predictor.predict_volume
    monkeypatch.setattr(Predictor, "predict_volume", lambda self, *a, **k: runs.append(1) or original(self, *a, **k))
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    assert not at.exception and not at.error, _texts(at.error)
    assert [h.value for h in at.subheader] == ["Verdict", "Viewer"]
    verdict = _verdict(at)
    assert verdict.startswith("## Glioma") and "Within the confidence thresholds" in verdict
    assert _refer_banner(at) is None  # confident and brain-like: no refer banner
    assert at.metric[0].label == "Probability" and float(at.metric[0].value.rstrip("%")) > 90
    captions = _texts(at.caption)
    assert "`presence@t1`" in captions and "`tumor_type@t1`" in captions
    assert f"exceeds {ENTROPY_REFER:g}" in captions and f"below {MARGIN_REFER:g}" in captions
    assert "Research use only — not a medical device" in captions
    assert "grade: not run" in captions or "grade needs sequences" in captions  # one channel: no grade
    assert at.get("plotly_chart")  # bars, strip, three planes
    # Grad-CAM on the axial slice on screen (default: the verdict class) and the key-slice gallery
    assert "Grad-CAM for Glioma" in _axial_caption(at)
    assert (
        at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("cam_class_tumor_type"))).value
        == "glioma"
    )
    images = at.get("image")
    assert len(images) == 3  # three key slices with heat maps
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["PDF case report", "JSON export", "DICOM SR + key images"]
    # reruns reuse the prediction of the case
    at.slider(key=next(s.key for s in at.slider if s.key.startswith("pos_axial"))).set_value(2).run()
    assert not at.exception and "slice 2 of 6" in _axial_caption(at)
    assert len(runs) == 1


def test_ood_image_is_refused_with_its_reason(active_models):
    at = _upload(_page().run(), ("noise.png", _noise_png(), "image/png"))
    assert not at.exception
    assert "noise-like texture" in _texts(at.error)  # the input gate's reason, shown
    assert "Cannot assess" in _verdict(at)
    assert not at.get("image")  # no key slices, no heat maps


def test_rgb_slice_channels_can_be_named_for_the_grade_model(active_models):
    data = (FIXTURES / "tcga_lgg_CS_4941_013.jpg").read_bytes()
    at = _upload(_page().run(), ("tcga.jpg", data, "image/jpeg"))
    assert not at.exception
    assert "colour image" in _texts(at.error)  # unnamed colour channels: refused
    assert "·" not in _verdict(at).splitlines()[0]  # no grade without its sequences
    picker = next(s for s in at.selectbox if s.key.startswith("scan_seq_"))
    assert picker.options[0].startswith("Not MR sequences") and "t1pre, flair, t1post" in picker.options
    picker.set_value("t1pre, flair, t1post").run()
    assert not at.exception and not at.error, _texts(at.error)
    assert at.radio(key="scan_channel").options == GRADE_SEQUENCES
    assert _verdict(at).splitlines()[0] == "## Glioma · WHO grade II"
    assert "colour image" not in (_refer_banner(at) or "")
    assert "`grade@t1`" in _texts(at.caption)


def test_gallery_button_moves_the_viewer_and_cam_controls_apply(active_models):
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    goto = [b for b in at.button if b.key.startswith("goto_")]
    assert len(goto) == 3
    k = int(goto[-1].key.rsplit("_", 1)[1])
    goto[-1].click().run()
    assert not at.exception
    axial = next(s for s in at.slider if s.key.startswith("pos_axial"))
    assert axial.value == k + 1 and _axial_caption(at).startswith(f"slice {k + 1} of 6")
    class_box = next(s for s in at.selectbox if s.key.startswith("cam_class_tumor_type"))
    class_box.set_value("meningioma")
    at.selectbox(key="cam_method").set_value("eigencam").run()
    assert not at.exception and not at.error
    assert "EigenCAM for Meningioma" in _axial_caption(at)
    at.selectbox(key="cam_method").set_value("scorecam").run()
    assert not at.exception
    assert any("slow" in w.value for w in at.warning)
    at.toggle(key="cam_on").set_value(False).run()
    assert not at.exception and "CAM" not in next(c.value for c in at.caption if c.value.startswith("slice "))


def test_promotion_is_picked_up_without_a_restart(active_models):
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    assert _verdict(at).startswith("## Glioma")
    save_tiny("tumor_type", "t2", MODELS["tumor_type"][0], [0.0, 6.0, 0.0])  # promoted: now active
    at.run()
    assert not at.exception and not at.error
    assert _verdict(at).startswith("## Meningioma")
    assert "`tumor_type@t2`" in _texts(at.caption)


def test_prediction_error_is_a_message_not_a_traceback(active_models, monkeypatch, caplog):
    from core.inference import Predictor

    def boom(self, *a, **k):
        raise RuntimeError("out of memory on the device")

    monkeypatch.setattr(Predictor, "predict_volume", boom)
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    assert not at.exception
    assert at.error[0].value == "The prediction failed: out of memory on the device"
    assert "**Axial**" in _texts(at.markdown)  # the viewer still works
    assert any("prediction failed" in r.message for r in caplog.records)


def test_slice_strip_figure_and_selection():
    from core import viz

    rows = [{"index": i, "presence": p, "tumor_type": [0.6, 0.3, 0.1]} for i, p in enumerate([0.1, 0.7, 0.9])]
    fig = viz.slice_strip(rows, classes=["glioma", "meningioma", "pituitary"], current=1, key_slices=[2], threshold=0.5)
    names = [t.name for t in fig.data]
    assert names == ["slice", "P(tumour)", "glioma", "meningioma", "pituitary", "key slice"]
    bars = fig.data[1]
    assert list(bars.y) == [0.1, 0.7, 0.9] and list(bars.x) == [1, 2, 3]
    assert bars.marker.color[0] != bars.marker.color[1] == bars.marker.color[2]  # threshold colouring
    assert list(fig.data[0].customdata) == [0, 1, 2]
    assert any(sh.x0 == 2 for sh in fig.layout.shapes)  # the viewer's slice (1-based) is marked
    assert viz.selected_slice({"selection": {"points": [{"x": 3, "customdata": 2}]}}, 3) == 2
    assert viz.selected_slice({"selection": {"points": [{"x": 2}]}}, 3) == 1
    assert viz.selected_slice({"selection": {"points": []}}, 3) is None
    assert viz.selected_slice({"selection": {"points": [{"x": 9}]}}, 3) is None


def test_slice_strip_leaves_gaps_where_the_type_model_did_not_read():
    from core import viz

    rows = [
        {"index": 0, "presence": 0.1, "tumor_type": None},
        {"index": 1, "presence": 0.8, "tumor_type": [0.6, 0.3, 0.1]},
    ]
    fig = viz.slice_strip(rows, task="tumor_type", classes=["glioma", "meningioma", "pituitary"])
    glioma = next(t for t in fig.data if t.name == "glioma")
    assert np.isnan(glioma.y[0]) and glioma.y[1] == 0.6


def test_send_to_review_stores_the_deidentified_case_and_its_predictions(active_models, sign_in):
    from core.store import Store

    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    button = at.button(key="send_to_review")
    assert button.disabled  # nobody signed in: nobody to record
    sign_in(at, "Dr Test", "clinician")  # a clinician may send to review
    at.run()
    at.button(key="send_to_review").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "Sent to the review queue as case" in _texts(at.success)
    repo = Store.open()
    (case,) = repo.cases.recent()
    assert case.source == "scan page upload (nifti)" and "brain" not in repr(case)
    items = repo.cases.items(case.id)
    assert [i.slice_index for i in items] == list(range(6))
    preds = repo.cases.latest_predictions("tumor_type", item_ids=[i.id for i in items])
    # the type model reads only the slices that vote (core.inference.slice_votes), so not every item has one
    assert 0 < len(preds) <= 6 and all(p.model_version == "t1" for p in preds.values())
    assert all(abs(sum(p.probabilities) - 1) < 1e-5 for p in preds.values())


# ------------------------------------------------------------------- v3: knowing when not to answer
def _task_table(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("| | Result"))


def _pdf_of_the_case(at, pdf_text) -> str:
    return pdf_text(at.session_state["_scan_case"]["case"].report_pdf())  # the page's, cached


def test_a_tampered_presence_model_means_cannot_assess_on_the_page_and_in_the_pdf(
    active_models, tamper, pdf_text, monkeypatch
):
    import core.report
    from core.zoo import resolve_ref

    monkeypatch.setattr(core.report, "build_pdf", _uncompressed(core.report.build_pdf))
    tamper(resolve_ref("presence@t1").path)
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    assert not at.exception
    assert _verdict(at).startswith("## Cannot assess") and "Cannot assess]" in _verdict(at)
    assert "presence@t1 failed verification" in _texts(at.error)
    table = _task_table(at)
    for title in ("Tumour presence", "Tumour type", "Glioma grade"):
        assert f"| {title} | Cannot assess | — | — | — | — | :red[cannot assess] |" in table
    assert "cannot assess this scan" in _refer_banner(at)
    assert not at.metric and not at.get("image")  # no probability, no key slices
    pdf = _pdf_of_the_case(at, pdf_text)
    assert "Verdict: Cannot assess" in pdf and pdf.count("Cannot assess") >= 4
    assert "probability" not in pdf


def _uncompressed(build_pdf):
    return lambda *a, **k: build_pdf(*a, **{**k, "compress": False})


def test_a_grade_model_at_chance_shows_no_validated_model_and_no_grade(active_models, pdf_text, monkeypatch):
    import core.report

    monkeypatch.setattr(core.report, "build_pdf", _uncompressed(core.report.build_pdf))
    classes, bias, seq = MODELS["grade"]
    save_tiny(
        "grade",
        "t2",
        classes,
        bias,
        seq,
        metrics={"cv": {"mean": {"patient_auc": 0.46}, "ci95": {"patient_auc": [0.24, 0.67]}}, "test": None},
    )
    at = _upload(_page().run(), ("tcga.jpg", (FIXTURES / "tcga_lgg_CS_4941_013.jpg").read_bytes(), "image/jpeg"))
    next(s for s in at.selectbox if s.key.startswith("scan_seq_")).set_value("t1pre, flair, t1post").run()
    assert not at.exception and not at.error, _texts(at.error)
    assert _verdict(at).splitlines()[0] == "## Glioma"  # no grade in the headline
    info = next(i.value for i in at.info if "No validated model" in i.value)
    assert info.startswith("**No validated model for Glioma grade.**")
    assert "includes chance (0.5)" in info and "model card of grade@t2 on the Models page" in info
    assert (
        "| Glioma grade | No validated model for Glioma grade | — | — | — | — | :gray[not validated] |"
        in _task_table(at)
    )
    assert "WHO grade" not in _texts(at.markdown) + _texts(at.caption)
    pdf = _pdf_of_the_case(at, pdf_text)
    assert "No validated model for Glioma grade" in pdf and "WHO grade" not in pdf


def test_no_tumour_verdict_shows_no_type_or_grade_row(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    for task, (classes, bias, seq) in MODELS.items():
        save_tiny(task, "t1", classes, [4.0, -4.0] if task == "presence" else bias, seq)
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    assert not at.exception and not at.error, _texts(at.error)
    assert _verdict(at).startswith("## No tumour detected")
    table = _task_table(at)
    assert "Tumour presence" in table and "Tumour type" not in table and "Glioma" not in table
    assert not [s for s in at.selectbox if s.key.startswith("cam_class_tumor_type")]


def test_the_scan_is_normalised_once_for_the_viewer_and_the_models(active_models, monkeypatch):
    """The page's Case normalises the scan once for the viewer, the models (the cascade reads the
    Case's slices), the heat maps, the report and the queue. Reruns normalise nothing."""
    from core import preprocess

    calls = []
    original = preprocess.normalize_intensity
    monkeypatch.setattr(preprocess, "normalize_intensity", lambda *a, **k: calls.append(1) or original(*a, **k))
    at = _upload(_page().run(), ("brain.nii.gz", _brain_nifti(), "application/gzip"))
    assert not at.exception and not at.error, _texts(at.error)
    assert at.get("image") and len(calls) == 1
    at.slider(key=next(s.key for s in at.slider if s.key.startswith("pos_axial"))).set_value(2).run()
    assert not at.exception and len(calls) == 1
