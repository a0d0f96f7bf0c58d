"""Hostile files: bounded loading (bytes, pixels, frames, time), non-regular files, decoder panics,
one bad file skipped. Each case of issue 14's Resources list loads in its own process here, so its
time and peak memory are measured (< 10 s, <= 2 GB) and a failure cannot take the test run down."""

import io
import json
import os
import time

import nibabel as nib
import numpy as np
import pytest

from core.commands.fuzz_io import load_in_process
from core.io import VolumeLoadError, hostile, load_volume
from tests.io import dicom_factory as f

MAX_SECONDS = 10.0
MAX_PEAK_MB = 2048.0


def _measured(case, tmp_path, timeout=60.0) -> dict:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    r = load_in_process(case, scratch, timeout=timeout, mem_limit_mb=6144)
    assert r["outcome"] in ("VolumeLoadError", "loaded"), r
    assert r["seconds"] < MAX_SECONDS, r
    assert r["peak_mb"] <= MAX_PEAK_MB, r
    return r


def _folder_of(blobs):
    def make(d):
        folder = d / "series"
        folder.mkdir()
        for i, b in enumerate(blobs):
            (folder / f"{i:03d}.dcm").write_bytes(b)
        return str(folder)

    return make


RESOURCE_CASES = {
    # name: (Hostile, expected outcome, text the message must hold)
    "jpeg-333-bytes-declared-huge": (
        hostile.Hostile("j", hostile.jpeg_with_size(60000, 30000)),
        "VolumeLoadError",
        "NEUROGRADE_MAX_IMAGE_PIXELS",
    ),
    "png-zeros-declared-huge": (
        hostile.Hostile("p", hostile.png_bomb(40000, 40000, rows_of_zeros=8)),
        "VolumeLoadError",
        "NEUROGRADE_MAX_IMAGE_PIXELS",
    ),
    "png-zeros-within-cap": (hostile.Hostile("p", hostile.png_bomb(4900, 5000)), "loaded", ""),
    "nifti-vox-offset-6e9": (
        hostile.Hostile("n", hostile._nifti((8, 8, 8), vox_offset=6e9, gz=False)),
        "VolumeLoadError",
        "incomplete",
    ),
    "nifti-gz-vox-offset-6e9": (
        hostile.Hostile("n", hostile._nifti((8, 8, 8), vox_offset=6e9)),
        "VolumeLoadError",
        "vox_offset",
    ),
    "nifti-64cubed-x1000": (
        hostile.Hostile("n", hostile._nifti((64, 64, 64, 1000), np.uint8)),
        "VolumeLoadError",
        "voxels",
    ),
    "nifti-gz-float64-zeros": (hostile.Hostile("n", hostile._nifti((256, 256, 256), np.float64)), "loaded", ""),
    "nifti-gz-within-cap-zeros": (hostile.Hostile("n", hostile._nifti((64, 64, 64, 200), np.int8)), "loaded", ""),
    "nifti-gz-concatenated-members": (
        hostile.Hostile("n", __import__("gzip").compress(b"", mtime=0) * 300_000 + hostile._nifti((8, 8, 8))),
        "loaded",
        "",
    ),
    "dicom-deflate-3mb-to-600mb": (
        hostile.Hostile("d", hostile.dicom_deflate_bomb()),
        "VolumeLoadError",
        "NEUROGRADE_MAX_DECODED_MB",
    ),
    "dicom-2-million-frames": (
        hostile.Hostile("d", hostile.dicom_frames_bomb()),
        "VolumeLoadError",
        "NEUROGRADE_MAX_FRAMES",
    ),
    "dicom-2-million-frames-x4": (
        hostile.Hostile("d", make=_folder_of([hostile.dicom_frames_bomb()] * 4)),
        "VolumeLoadError",
        "NEUROGRADE_MAX_FRAMES",
    ),
    "dicom-rle-panic": (hostile.Hostile("d", hostile.rle_panic()), "VolumeLoadError", "decoded"),
    "jpeg-progressive-2000-scans": (hostile.Hostile("j", hostile.jpeg_scan_bomb()), "VolumeLoadError", "scans"),
    "dicom-8x8-holding-20000x20000-jpeg": (
        hostile.Hostile("d", hostile.dicom_jpeg_size_lie()),
        "VolumeLoadError",
        "20000 x 20000",
    ),
    "fifo": (
        hostile.Hostile("s", make=lambda d: (os.mkfifo(d / "x.nii"), str(d / "x.nii"))[1]),
        "VolumeLoadError",
        "pipe",
    ),
    "dev-zero": (hostile.Hostile("s", make=lambda d: "/dev/zero"), "VolumeLoadError", "device"),
}


@pytest.mark.parametrize("name", list(RESOURCE_CASES))
def test_issue_resource_cases_fail_fast_in_bounded_memory(name, tmp_path):
    case, outcome, text = RESOURCE_CASES[name]
    r = _measured(case, tmp_path)
    assert r["outcome"] == outcome, r
    assert text in r.get("message", ""), r


def test_rle_panic_input_really_panics_the_decoder():
    """The RLE case must exercise a BaseException panic, or the test above proves nothing."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(hostile.rle_panic()))
    try:
        _ = ds.pixel_array
    except Exception:  # noqa: BLE001
        pytest.skip("this pylibjpeg-rle raises an Exception here, not a panic")
    except BaseException as exc:  # noqa: BLE001
        assert type(exc).__name__ == "PanicException"
    else:
        pytest.skip("this pylibjpeg-rle decodes the damaged data")


def test_decompression_bomb_warning_is_an_error(monkeypatch):
    """Pillow warns (not raises) between MAX_IMAGE_PIXELS and twice that: the warning is an error."""
    from PIL import Image

    monkeypatch.setenv("NEUROGRADE_MAX_IMAGE_PIXELS", "1000")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(buf, format="PNG")  # 1600 px < 2 x 1000
    with pytest.raises(VolumeLoadError, match="larger than 1,000 pixels"):
        load_volume(buf.getvalue())


def test_decoded_byte_cap_checked_from_the_nifti_header(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_DECODED_MB", "1")
    data = f.nifti_bytes(nib.Nifti1Image(np.zeros((64, 64, 40)), np.eye(4)))  # float64: 1.25 MB
    with pytest.raises(VolumeLoadError, match="NEUROGRADE_MAX_DECODED_MB"):
        load_volume(data)


def test_dicom_frames_checked_against_bytes_present():
    ds = hostile._dicom_dataset(16, 16, 40, pixel_bytes=b"\0" * (16 * 16 * 2 * 10))  # 10 of 40 frames
    with pytest.raises(VolumeLoadError, match="shorter than the header"):
        load_volume(hostile._dcm_bytes(ds))


def test_bad_files_in_a_folder_are_reported_by_position_and_skipped(tmp_path):
    good = [f.to_bytes(d) for d in f.series_from_image(f.reference_image(), phi=True)]
    folder = tmp_path / "Zebrowski_Quentin"
    folder.mkdir()
    for i, b in enumerate(good):
        (folder / f"Zebrowski_{i:02d}.dcm").write_bytes(b)
    import pydicom

    panic = pydicom.dcmread(io.BytesIO(hostile.rle_panic()))  # same series as the good files
    panic.SeriesInstanceUID = pydicom.dcmread(io.BytesIO(good[0])).SeriesInstanceUID
    buf = io.BytesIO()
    panic.save_as(buf)
    (folder / "Zebrowski_panic.dcm").write_bytes(buf.getvalue())
    (folder / "Zebrowski_cut.dcm").write_bytes(good[0][:700])
    os.mkfifo(folder / "Zebrowski_pipe.dcm")
    v = load_volume(folder)
    assert v.shape[0] == len(good)
    text = json.dumps(v.warnings)
    assert "not a regular file" in text
    assert "could not be decoded" in text and "could not be read" in text and " of 8" in text
    assert "Zebrowski" not in text


def test_one_damaged_zip_member_is_skipped():
    good = [f.to_bytes(d) for d in f.series_from_image(f.reference_image())]
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, b in enumerate(good):
            zf.writestr(f"{i}.dcm", b)
    data = bytearray(buf.getvalue())
    second = data.find(b"PK\x03\x04", 10)  # the second member's local header
    data[second + 60 : second + 90] = bytes(30)  # its compressed data: CRC / inflate error
    v = load_volume(bytes(data))
    assert v.shape[0] == len(good) - 1
    assert any("in the zip archive are damaged" in w and "file 2 of" in w for w in v.warnings)


def test_seeded_fuzz_only_raises_volume_load_error(tmp_path):
    """A small seeded run of every hostile family, in this process: nothing but VolumeLoadError."""
    for i, case in enumerate(hostile.generate(45, seed=7)):
        scratch = tmp_path / str(i)
        scratch.mkdir()
        source = case.source(scratch)
        start = time.perf_counter()
        try:
            load_volume(source)
        except VolumeLoadError as exc:
            assert str(exc) and "Traceback" not in str(exc)
        assert time.perf_counter() - start < MAX_SECONDS, case.family


def test_fuzz_command_reports_no_tracebacks(tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "fuzz.json"
    assert main(["fuzz-io", "--n", "20", "--seed", "3", "--json", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_inputs"] == 20 and result["tracebacks"] == 0 and result["loads_over_10s"] == 0
    assert result["max_peak_mb"] <= MAX_PEAK_MB
    assert json.loads(capsys.readouterr().out)["tracebacks"] == 0
