"""Bad input of every kind ends in VolumeLoadError with a useful message, and nothing else."""

import gzip
import io
import os
import struct
import zipfile

import numpy as np
import pytest
from nibabel.testing import data_path
from PIL import Image
from pydicom.data import get_testdata_file

from core.io import VolumeLoadError, load_volume
from tests.io import dicom_factory as f


def test_empty_bytes_and_file(tmp_path):
    with pytest.raises(VolumeLoadError, match="empty"):
        load_volume(b"")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(VolumeLoadError, match="empty"):
        load_volume(tmp_path / "empty.nii")
    (tmp_path / "folder").mkdir()
    with pytest.raises(VolumeLoadError, match="empty"):
        load_volume(tmp_path / "folder")
    with pytest.raises(VolumeLoadError, match="Nothing"):
        load_volume([])


def test_missing_path(tmp_path):
    with pytest.raises(VolumeLoadError, match="not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_random_bytes():
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(VolumeLoadError, match="not a recognised scan format"):
        load_volume(data, filename="scan.bin")


def test_png_named_nii_loads_with_warning(tmp_path):
    path = tmp_path / "brain.nii"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path, format="PNG")
    v = load_volume(path)
    assert v.source_format == "image" and v.shape == (1, 8, 8)
    assert any("NIfTI" in w and "PNG" in w for w in v.warnings)


def test_nifti_named_jpg_loads(tmp_path):
    path = tmp_path / "scan.jpg"
    path.write_bytes(open(os.path.join(data_path, "anatomical.nii"), "rb").read())
    v = load_volume(path)
    assert v.source_format == "nifti" and any("JPEG" in w for w in v.warnings)


def test_dicom_named_png_loads(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(open(get_testdata_file("MR_small.dcm"), "rb").read())
    assert load_volume(path).source_format == "dicom"


def test_gzip_that_is_not():
    with pytest.raises(VolumeLoadError, match="not a recognised.*NIfTI"):
        load_volume(b"this is plain text, not gzip at all" * 20, filename="scan.nii.gz")


def test_gzip_of_something_else():
    with pytest.raises(VolumeLoadError, match="does not contain a NIfTI"):
        load_volume(gzip.compress(b"hello " * 200), filename="scan.nii.gz")
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, format="PNG")
    with pytest.raises(VolumeLoadError, match="contains a PNG image"):
        load_volume(gzip.compress(png.getvalue()), filename="scan.nii.gz")


def _zip(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_total_size(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_ZIP_MB", "5")
    bomb = _zip({"a.dcm": b"\0" * (8 * 2**20)})
    assert len(bomb) < 100_000
    with pytest.raises(VolumeLoadError, match="unpack to 8 MB.*at most 5 MB"):
        load_volume(bomb)


def test_zip_member_count(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_ZIP_MEMBERS", "5")
    with pytest.raises(VolumeLoadError, match="6 files; at most 5"):
        load_volume(_zip({f"{i}.dcm": b"x" for i in range(6)}))


def test_zip_directory_lying_about_size(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_ZIP_MB", "1")
    data = bytearray(_zip({"a.dcm": b"\0" * (3 * 2**20)}))
    # patch the uncompressed size in the central directory (and local header) to 10 bytes
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = struct.pack("<I", 10)
    data[22:26] = struct.pack("<I", 10)
    with pytest.raises(VolumeLoadError, match="zip"):
        load_volume(bytes(data))


def test_zip_unsafe_member_names(ref_blobs):
    members = {f"ok/{i}.dcm": b for i, b in enumerate(ref_blobs)}
    members["../../etc/evil.dcm"] = ref_blobs[0]
    members["/abs/evil.dcm"] = ref_blobs[1]
    v = load_volume(_zip(members))
    assert v.shape[0] == len(ref_blobs)
    assert any("unsafe path" in w and "2 archive entries" in w for w in v.warnings)
    with pytest.raises(VolumeLoadError, match="unsafe paths"):
        load_volume(_zip({"../x.dcm": ref_blobs[0]}))


def test_damaged_zip():
    data = _zip({"a.dcm": b"1234" * 1000})
    with pytest.raises(VolumeLoadError, match="zip"):
        load_volume(data[: len(data) // 2])


def test_several_non_dicom_files(fixtures_dir):
    with pytest.raises(VolumeLoadError, match="2 separate files"):
        load_volume([fixtures_dir / "figshare_glioma_209.jpg", fixtures_dir / "figshare_meningioma_1.jpg"])


@pytest.fixture(scope="module")
def ref_blobs():
    return [f.to_bytes(d) for d in f.series_from_image(f.reference_image())]


def _good_inputs():
    return [
        open(os.path.join(data_path, "example4d.nii.gz"), "rb").read(),
        open(os.path.join(data_path, "anatomical.nii"), "rb").read(),
        open(get_testdata_file("MR_small.dcm"), "rb").read(),
        open(get_testdata_file("MR_small_RLE.dcm"), "rb").read(),
        open(get_testdata_file("MR_small_jp2klossless.dcm"), "rb").read(),
        _zip({"a.dcm": open(get_testdata_file("MR_small.dcm"), "rb").read()}),
    ]


@pytest.mark.parametrize("index", range(6))
def test_truncations_only_raise_volume_load_error(index, fixtures_dir):
    data = _good_inputs()[index]
    for cut in (1, 10, 131, 200, 400, 700, len(data) // 3, len(data) - 7):
        try:
            load_volume(data[:cut])
        except VolumeLoadError as exc:
            assert str(exc) and "Traceback" not in str(exc)


@pytest.mark.parametrize("index", range(6))
def test_corruptions_only_raise_volume_load_error(index):
    data = bytearray(_good_inputs()[index])
    rng = np.random.default_rng(index)
    for _ in range(6):
        broken = bytearray(data)
        at = rng.integers(0, len(broken), 20)
        broken_values = rng.integers(0, 256, 20)
        for a, b in zip(at, broken_values):
            broken[a] = b
        try:
            load_volume(bytes(broken))
        except VolumeLoadError:
            pass


def test_unsupported_object_type():
    with pytest.raises(VolumeLoadError, match="Cannot read"):
        load_volume(12345)
