"""The Scan page in AppTest, with uploads simulated through AppTest's file_uploader.

Tests marked "stub" replace core.io.load_volume with a function returning constructed Volumes
(the page looks the loader up on every run, so monkeypatching core.io works); the others go
through the real loader with files written here by nibabel, pydicom and PIL.
"""
import io
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
    return " ".join(str(e.value) for e in elements)


def _volume(shape=(6, 8, 10), spacing=(2.0, 1.0, 1.0), **kw) -> Volume:
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(a, spacing, np.diag([*spacing[::-1], 1.0]), **kw)


@pytest.fixture
def stub_loader(monkeypatch):
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


def test_stub_volume_shows_three_planes_metadata_and_verdict_placeholder(stub_loader):
    calls = stub_loader(_volume(meta={"SeriesDescription": "T1 axial"}, warnings=["Spacing is nominal"]))
    at = _upload(_page().run(), ("scan.nii.gz", b"x" * 10, "application/gzip"))
    assert not at.exception and not at.error
    md = _texts(at.markdown)
    for plane in ("Axial", "Coronal", "Sagittal"):
        assert f"**{plane}**" in md
    assert "6 × 8 × 10" in md and "2 × 1 × 1" in md
    assert "Spacing is nominal" in at.warning[0].value
    assert [s.max for s in at.slider if s.key.startswith("pos_")] == [6, 8, 10]  # 1-based slices
    assert [s.value for s in at.slider if s.key.startswith("pos_")] == [4, 5, 6]   # middle slices
    assert at.subheader[-1].value == "Verdict"
    assert "next release" in at.info[-1].value
    assert len(calls) == 1


def test_reruns_do_not_reload_and_sliders_move(stub_loader):
    calls = stub_loader(_volume())
    at = _upload(_page().run(), ("scan.nii", b"abc", "application/octet-stream"))
    axial = [s for s in at.slider if s.key.startswith("pos_axial")][0]
    axial.set_value(2).run()
    assert not at.exception
    assert "slice 2 / 6" in _texts(at.caption)
    at.selectbox(key="win_preset").set_value("contrast").run()
    assert at.slider(key="win_center").value == pytest.approx(0.6)
    assert len(calls) == 1                          # widget reruns reuse the loaded volume


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
    assert "**Axial**" in md and "**Coronal**" not in md
    assert not [s for s in at.slider if s.key.startswith("pos_")]


def test_several_series_offer_a_choice(stub_loader):
    series = [{"uid": "1.2.3", "description": "T1", "modality": "MR", "n_images": 6},
              {"uid": "4.5.6", "description": "FLAIR", "modality": "MR", "n_images": 4}]
    calls = stub_loader(lambda opts: _volume(shape=(4, 8, 8) if opts.get("series") == "4.5.6" else (6, 8, 10),
                                              series=series))
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
def real_loader():
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
    assert "8 × 12 × 10" in md                      # (z, y, x) of an (x, y, z) = (10, 12, 8) file


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
