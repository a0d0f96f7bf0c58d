"""NIfTI loading: real files from nibabel's wheel and the TCIA fixture, scaling, 4D, orientation."""

import gzip
import io
import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from core.io import Volume, VolumeLoadError, load_volume
from tests.io import dicom_factory as f


def ref_array(img):
    return np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float32)


def test_anatomical_las_to_ras():
    path = os.path.join(data_path, "anatomical.nii")
    src = nib.load(path)
    v = load_volume(path)
    assert isinstance(v, Volume) and v.array.dtype == np.float32
    assert v.shape == (25, 41, 33) and v.spacing == (2.0, 2.0, 2.0)
    assert v.meta["source_orientation"] == "LAS"
    assert "".join(nib.aff2axcodes(v.affine)) == "RAS"
    # LAS -> RAS flips x: canonical x index runs the other way
    data = np.asanyarray(src.dataobj).astype(np.float32)
    np.testing.assert_allclose(v.array, np.transpose(data[::-1], (2, 1, 0)))


def test_4d_gz_channels_addressable():
    v = load_volume(os.path.join(data_path, "example4d.nii.gz"))
    assert list(v.channels) == ["t0", "t1"] and v.active_channel == "t0"
    assert v.shape == (24, 96, 128)
    assert v.spacing[0] == pytest.approx(2.2, abs=1e-3) and v.spacing[1:] == pytest.approx((2.0, 2.0))
    assert not np.array_equal(v.channels["t0"], v.channels["t1"])
    assert v.with_channel("t1").array is v.channels["t1"]
    named = load_volume(os.path.join(data_path, "example4d.nii.gz"), sequences=["pre", "post"])
    assert list(named.channels) == ["pre", "post"]
    with pytest.raises(VolumeLoadError, match="2 channel"):
        load_volume(os.path.join(data_path, "example4d.nii.gz"), sequences=["a", "b", "c"])


def test_nifti2_and_many_volumes():
    v = load_volume(os.path.join(data_path, "example_nifti2.nii.gz"))
    assert v.meta["format"] == "NIfTI-2" and len(v.channels) == 2
    v = load_volume(os.path.join(data_path, "functional.nii"))
    assert len(v.channels) == 20 and v.spacing == (8.0, 4.0, 4.0)


def test_tcia_fixture_volume_and_mask(fixtures_dir):
    v = load_volume(fixtures_dir / "tcia_btp_PGBM-010_post_t1post.nii.gz")
    m = load_volume(fixtures_dir / "tcia_btp_PGBM-010_post_mask.nii.gz")
    assert v.shape == m.shape == (24, 256, 256)
    assert v.array.max() > 0 and set(np.unique(m.array)) <= {0.0, 1.0, 255.0}
    assert (m.array > 0).sum() > 0
    assert not v.warnings


def test_scaled_data_applied():
    raw = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.5, 100.0)
    v = load_volume(f.nifti_bytes(img), filename="scaled.nii.gz")
    np.testing.assert_allclose(v.array, np.transpose(raw * 0.5 + 100.0, (2, 1, 0)))
    assert v.meta["scaled"] is True


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAS", "PSR", "ASL", "IRP"])
@pytest.mark.parametrize("gz", [True, False])
def test_orientations_load_to_same_ras(codes, gz):
    ref = f.reference_image()
    v = load_volume(f.nifti_bytes(f.reoriented(ref, codes), gz=gz))
    np.testing.assert_array_equal(v.array, ref_array(ref))
    assert v.spacing == pytest.approx((3.0, 1.5, 1.0))
    assert v.meta["source_orientation"] == codes
    assert not v.warnings


@pytest.mark.parametrize("codes,deg,axis", [("LPS", 15, 2), ("PSR", -20, 0), ("LAS", 25, 1)])
def test_oblique_nifti(codes, deg, axis):
    ref = f.reference_image()
    v = load_volume(f.nifti_bytes(f.rotated(f.reoriented(ref, codes), deg, axis)))
    np.testing.assert_array_equal(v.array, ref_array(ref))
    assert v.spacing == pytest.approx((3.0, 1.5, 1.0))
    assert any("oblique" in w and f"{abs(deg)}\u00b0" in w for w in v.warnings)


def test_identifying_header_text_dropped():
    img = f.reference_image()
    img.header["descrip"] = b"Zebrowski^Quentin 19450317"
    img.header["aux_file"] = b"PHIID77321"
    img.header["db_name"] = b"Xylophone"
    img.header["intent_name"] = b"Quentin"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"PatientName=Zebrowski"))
    v = load_volume(f.nifti_bytes(img))
    text = repr(v.meta) + repr(v.warnings) + repr(v.series)
    for s in ("Zebrowski", "Quentin", "19450317", "PHIID77321", "Xylophone"):
        assert s not in text


def _float_img(n_bad, value=np.nan):
    data = np.ones((10, 10, 10), dtype=np.float32)
    data.flat[:n_bad] = value
    return f.nifti_bytes(nib.Nifti1Image(data, np.eye(4)))


def test_few_nonfinite_zeroed_with_warning():
    v = load_volume(_float_img(5))
    assert np.isfinite(v.array).all() and (v.array == 0).sum() == 5
    assert any("NaN" in w and "set to 0" in w for w in v.warnings)
    v = load_volume(_float_img(3, np.inf))
    assert np.isfinite(v.array).all()


def test_many_nonfinite_refused():
    with pytest.raises(VolumeLoadError, match="invalid voxel values"):
        load_volume(_float_img(50))


def test_voxel_limit_checked_from_header(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_VOXELS", "100")
    with pytest.raises(VolumeLoadError, match="voxels"):
        load_volume(f.nifti_bytes(f.reference_image()))


def test_huge_header_refused_before_reading():
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4000, 4000, 4000))
    hdr.set_data_dtype(np.float32)
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 1000  # header, extension flag, a little data
    with pytest.raises(VolumeLoadError, match="not read"):
        load_volume(raw)
    with pytest.raises(VolumeLoadError, match="not read"):
        load_volume(gzip.compress(raw))


@pytest.mark.parametrize("dims", [[3, 10, -4, 5, 1, 1, 1, 1], [3, 10, 0, 5, 1, 1, 1, 1], [9, 10, 10, 5, 1, 1, 1, 1]])
def test_absurd_dimensions(dims):
    raw = bytearray(f.reference_image().to_bytes())
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])), check=False)
    hdr["dim"] = dims
    raw[:348] = hdr.binaryblock
    with pytest.raises(VolumeLoadError, match="impossible image dimensions"):
        load_volume(bytes(raw))


def test_five_d_refused():
    img = nib.Nifti1Image(np.zeros((4, 4, 4, 2, 3), np.int16), np.eye(4))
    with pytest.raises(VolumeLoadError, match="not supported"):
        load_volume(f.nifti_bytes(img))


def test_truncated_gz_cut_in_half(fixtures_dir):
    data = (fixtures_dir / "tcia_btp_PGBM-010_post_t1post.nii.gz").read_bytes()
    with pytest.raises(VolumeLoadError, match="incomplete|cut short"):
        load_volume(data[: len(data) // 2], filename="half.nii.gz")


def test_truncated_uncompressed():
    raw = f.reference_image().to_bytes()
    with pytest.raises(VolumeLoadError, match="incomplete"):
        load_volume(raw[: len(raw) - 100])


def test_corrupt_gzip_stream(fixtures_dir):
    data = bytearray((fixtures_dir / "tcia_btp_PGBM-010_post_mask.nii.gz").read_bytes())
    data[200:400] = b"\xff" * 200
    with pytest.raises(VolumeLoadError, match="damaged|incomplete"):
        load_volume(bytes(data))


def test_no_orientation_in_header_warns():
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), None)
    v = load_volume(img.to_bytes())
    assert any("oriented" in w for w in v.warnings)


def test_degenerate_affine_refused():
    raw = bytearray(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)).to_bytes())
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])), check=False)
    hdr["qform_code"] = 0
    hdr["sform_code"] = 2
    hdr["srow_y"] = [0.0, 0.0, 0.0, 0.0]  # a zero voxel axis
    raw[:348] = hdr.binaryblock
    with pytest.raises(VolumeLoadError, match="geometry"):
        load_volume(bytes(raw))


@pytest.mark.parametrize("gz", [False, True])
def test_header_extensions_are_skipped_not_refused(gz):
    """Valid files with header extensions (IXI T1: data at byte 2912) load; the extensions (free
    text, DICOM headers: possibly identifying) are neither parsed nor kept."""
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0]))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Patient Zebrowski " * 140))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"\x08\x00\x05\x00junk"))  # broken DICOM
    raw = img.to_bytes()
    assert nib.Nifti1Header.from_fileobj(io.BytesIO(raw))["vox_offset"] > 2800
    v = load_volume(gzip.compress(raw) if gz else raw)
    assert v.shape == (6, 5, 4) and v.spacing == (3.0, 2.0, 1.0)
    np.testing.assert_array_equal(v.array, data.transpose(2, 1, 0).astype(np.float32))
    assert "Zebrowski" not in repr(v.meta) + repr(v.warnings)
