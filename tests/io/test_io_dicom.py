"""DICOM loading: bundled pydicom files and series written here with pydicom."""

import gzip
import json
import os
import random

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from core.io import VolumeLoadError, load_volume
from core.io.dicom import series_key
from tests.io import dicom_factory as f

# Only names bundled in the pydicom wheel (others would trigger a download).
MR_SMALL_VARIANTS = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
]


def ref_array(img):
    return np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float32)


@pytest.fixture(scope="module")
def mr_small():
    return load_volume(get_testdata_file("MR_small.dcm"))


def test_single_file(mr_small):
    v = mr_small
    assert v.shape == (1, 64, 64) and v.modality == "MR" and v.source_format == "dicom"
    assert v.spacing == pytest.approx((0.8, 0.3125, 0.3125))
    assert v.meta["Manufacturer"] and v.meta["source_orientation"] == "LPS"
    assert len(v.series) == 1 and v.series[0]["selected"] and v.series[0]["n_slices"] == 1
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    # canonical RAS flips rows (P->A) and columns (L->R) of an axial LPS slice
    np.testing.assert_array_equal(v.array[0], ds.pixel_array[::-1, ::-1].astype(np.float32))


def test_gzip_compressed_dicom_file_is_unpacked(mr_small, tmp_path, monkeypatch):
    """Some archives keep DICOM files as `*.dcm.gz` (nibabel's philips_mprage.dcm.gz): unpacked
    within NEUROGRADE_MAX_DECODED_MB, refused past it."""
    path = tmp_path / "IM0001.dcm.gz"
    path.write_bytes(gzip.compress(open(get_testdata_file("MR_small.dcm"), "rb").read()))
    v = load_volume(path)
    np.testing.assert_array_equal(v.array, mr_small.array)
    monkeypatch.setenv("NEUROGRADE_MAX_DECODED_MB", "0")
    with pytest.raises(VolumeLoadError, match="unpacks to more than"):
        load_volume(path)


@pytest.mark.parametrize("name", MR_SMALL_VARIANTS[1:])
def test_compressed_and_encoded_variants_match(name, mr_small):
    v = load_volume(get_testdata_file(name))
    np.testing.assert_array_equal(v.array, mr_small.array)


def test_jpeg2000_transfer_syntax_reported():
    v = load_volume(get_testdata_file("MR_small_jp2klossless.dcm"))
    assert "JPEG 2000" in v.meta["transfer_syntax"]


def test_ct_refused_unless_allowed():
    with pytest.raises(VolumeLoadError, match="CT.*not an MR scan"):
        load_volume(get_testdata_file("CT_small.dcm"))
    v = load_volume(get_testdata_file("CT_small.dcm"), allow_ct=True)
    assert v.modality == "CT" and any("CT" in w for w in v.warnings)
    assert v.array.min() < -500  # rescale intercept (Hounsfield units) applied


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("test-SR.dcm", "no images.*structured report"),
        ("rtstruct.dcm", "no images.*structure set"),
        ("rtplan.dcm", "no images"),
        ("liver_1frame.dcm", "segmentation"),
        ("rtdose_1frame.dcm", "dose"),
    ],
)
def test_non_image_and_non_mr_objects(name, fragment):
    with pytest.raises(VolumeLoadError, match=fragment):
        load_volume(get_testdata_file(name))


def test_truncated_bundled_file():
    with pytest.raises(VolumeLoadError, match="cut short|damaged"):
        load_volume(get_testdata_file("MR_truncated.dcm"))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_dicom_cut_short(fraction):
    data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    with pytest.raises(VolumeLoadError, match="cut short|damaged|incomplete"):
        load_volume(data[: int(len(data) * fraction)], filename="IM1.dcm")


@pytest.fixture(scope="module")
def ref():
    return f.reference_image()


def test_series_shuffled_files_and_instance_numbers(ref, tmp_path):
    datasets = f.series_from_image(f.reoriented(ref, "LPS"), instance_numbers=[5, 1, 6, 2, 4, 3])
    blobs = [f.to_bytes(d) for d in datasets]
    order = list(range(len(blobs)))
    random.Random(1).shuffle(order)
    # file names sort in the wrong order too
    paths = f.write_series(
        [datasets[i] for i in order], tmp_path / "series", names=[f"z{9 - n}.dcm" for n in range(len(order))]
    )
    expected = ref_array(ref)
    for source in (
        [blobs[i] for i in order],
        tmp_path / "series",
        [str(p) for p in paths],
        f.zip_bytes({f"a/{n}.dcm": blobs[i] for n, i in enumerate(order)}),
    ):
        v = load_volume(source)
        np.testing.assert_array_equal(v.array, expected)
        assert v.spacing == pytest.approx((3.0, 1.5, 1.0))
        assert not v.warnings


@pytest.mark.parametrize("codes", ["LPS", "LAS", "PSR", "RAS", "IPL"])
def test_dicom_orientations(codes, ref):
    v = load_volume([f.to_bytes(d) for d in f.series_from_image(f.reoriented(ref, codes))])
    np.testing.assert_array_equal(v.array, ref_array(ref))
    assert v.spacing == pytest.approx((3.0, 1.5, 1.0))


@pytest.mark.parametrize("codes,deg,axis", [("LPS", 20, 2), ("PSR", 15, 0), ("LAS", -25, 1)])
def test_oblique_dicom(codes, deg, axis, ref):
    img = f.rotated(f.reoriented(ref, codes), deg, axis)
    v = load_volume([f.to_bytes(d) for d in f.series_from_image(img)])
    np.testing.assert_array_equal(v.array, ref_array(ref))
    assert v.spacing == pytest.approx((3.0, 1.5, 1.0), abs=1e-4)
    assert any("oblique" in w for w in v.warnings)
    assert np.allclose(v.affine[:3, :3], img.affine[:3, :3] @ _perm(img, v), atol=1e-4)


def _perm(img, v):
    """Matrix mapping canonical voxel axes to the source's (signed permutation)."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    ornt = io_orientation(img.affine)
    return inv_ornt_aff(ornt, img.shape)[:3, :3]


def test_rescale_slope_intercept(ref):
    v = load_volume([f.to_bytes(d) for d in f.series_from_image(ref, slope=0.5, intercept=-100.0)])
    np.testing.assert_allclose(v.array, ref_array(ref))


def test_rle_compressed_series(ref):
    datasets = f.series_from_image(f.reoriented(ref, "LPS"))
    for ds in datasets:
        ds.compress(RLELossless)
    v = load_volume([f.to_bytes(d) for d in datasets])
    np.testing.assert_array_equal(v.array, ref_array(ref))
    assert v.meta["transfer_syntax"] == "RLE Lossless"


def test_enhanced_multiframe(ref):
    img = f.rotated(f.reoriented(ref, "PSR"), 10, 1)
    v = load_volume(f.to_bytes(f.enhanced_from_image(img)))
    assert v.source_format == "dicom-enhanced"
    np.testing.assert_array_equal(v.array, ref_array(ref))  # per-frame rescale applied
    assert v.spacing == pytest.approx((3.0, 1.5, 1.0), abs=1e-4)
    assert v.series[0]["n_slices"] == img.shape[2]


def test_missing_slice_loads_with_warning_naming_gap(ref):
    datasets = f.series_from_image(f.reoriented(ref, "LPS"))
    del datasets[3]  # positions 10,13,16,[19],22,25 mm
    v = load_volume([f.to_bytes(d) for d in datasets])
    assert v.shape[0] == ref.shape[2] - 1
    gap = [w for w in v.warnings if "Missing slice" in w]
    assert gap and "16.0 mm and 22.0 mm" in gap[0] and "6.0 mm" in gap[0]
    assert v.spacing[0] == pytest.approx(3.0)


def test_inconsistent_spacing_warns(ref):
    datasets = f.series_from_image(f.reoriented(ref, "LPS"))
    ipp = datasets[2].ImagePositionPatient
    datasets[2].ImagePositionPatient = [ipp[0], ipp[1], float(ipp[2]) + 0.8]
    v = load_volume([f.to_bytes(d) for d in datasets])
    assert any("inconsistent" in w for w in v.warnings)


def test_duplicate_positions_become_channels_or_are_dropped(ref):
    base = f.series_from_image(ref, seed="echo")
    second = f.series_from_image(ref, seed="echo")
    for ds in second:
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber += 100
    v = load_volume([f.to_bytes(d) for d in base + second])
    assert list(v.channels) == ["t0", "t1"]
    v = load_volume([f.to_bytes(d) for d in base + second[:2]])
    assert len(v.channels) == 1 and any("repeat a slice position" in w for w in v.warnings)


def _two_series_zip(ref):
    small = f.series_from_image(f.reoriented(ref, "LPS"), seed="a", description="T1 AX", series_number=1)[:4]
    big = f.series_from_image(f.reoriented(ref, "PSR"), seed="b", description="FLAIR SAG", series_number=2)
    ct = f.series_from_image(ref, seed="c", modality="CT", series_number=3, description="CT HEAD")
    members = {}
    for prefix, items in (("s1", small), ("s2", big), ("s3", ct)):
        for i, ds in enumerate(items):
            members[f"{prefix}/IM{i}"] = f.to_bytes(ds)
    members["DICOMDIR_README.txt"] = b"not an image"
    return f.zip_bytes(members), small[0].SeriesInstanceUID, big[0].SeriesInstanceUID


def test_several_series_default_largest_mr_and_choice(ref):
    data, uid_small, uid_big = _two_series_zip(ref)
    v = load_volume(data, filename="study.zip")
    # Series are named by a pseudonym of their UID (UIDs can identify a patient); the raw UID
    # never appears, but still selects the series.
    assert [s["uid"] for s in v.series][:2] == [series_key(uid_small), series_key(uid_big)]
    assert uid_small not in repr(v.series) and uid_big not in repr(v.series)
    chosen = [s for s in v.series if s["selected"]]
    assert len(chosen) == 1 and chosen[0]["uid"] == series_key(uid_big) and v.shape[0] == ref.shape[2]
    assert {"uid", "description", "modality", "n_slices", "number", "index"} <= set(v.series[0])
    assert v.series[0]["n_slices"] == 4 and v.series[2]["modality"] == "CT"
    assert any("3 DICOM series" in w for w in v.warnings)
    assert any("not DICOM were ignored" in w for w in v.warnings)
    v = load_volume(data, series=uid_small)
    assert v.shape[0] == 4 and v.series[0]["selected"]
    assert load_volume(data, series=series_key(uid_small)).shape[0] == 4
    v = load_volume(data, series=0)
    assert v.shape[0] == 4
    with pytest.raises(VolumeLoadError, match="CT"):
        load_volume(data, series=2)
    assert load_volume(data, series=2, allow_ct=True).modality == "CT"
    with pytest.raises(VolumeLoadError, match="not in this upload"):
        load_volume(data, series="1.2.3.4")


def test_phi_never_leaves_the_loader(ref, tmp_path, capsys):
    datasets = f.series_from_image(f.reoriented(ref, "LPS"), phi=True, description="T1 Zebrowski")
    blobs = [f.to_bytes(d) for d in datasets]
    assert all(b"Zebrowski" in b for b in blobs)
    v = load_volume(blobs)
    text = json.dumps({"meta": v.meta, "series": v.series, "warnings": v.warnings}, default=str)
    for phi in f.PHI_STRINGS:
        assert phi.lower() not in text.lower(), phi
    assert v.meta["Manufacturer"] == "TestVendor" and v.meta["RepetitionTime"] == 500
    assert "PatientSex" not in v.meta and "PatientAge" not in v.meta
    assert v.series[0]["description"].startswith("[removed")
    # the CLI JSON too
    from core.cli import main

    f.write_series(datasets, tmp_path / "phi")
    assert main(["inspect", str(tmp_path / "phi"), "--json"]) == 0
    out, err = capsys.readouterr()
    for phi in f.PHI_STRINGS:
        assert phi.lower() not in (out + err).lower(), phi


def test_series_voxel_limit(ref, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_VOXELS", "300")
    with pytest.raises(VolumeLoadError, match="voxels"):
        load_volume([f.to_bytes(d) for d in f.series_from_image(ref)])


def test_damaged_file_in_series_skipped(ref):
    blobs = [f.to_bytes(d) for d in f.series_from_image(ref)]
    blobs.append(blobs[0][:1000])
    blobs.append(blobs[1][:-50])
    v = load_volume(blobs)
    assert v.shape[0] == ref.shape[2] and any("damaged" in w for w in v.warnings)


def test_real_multi_series_folder_from_pydicom_wheel():
    """pydicom's dicomdirtests: 3 patients, MR/CT/CR series, DICOMDIR indexes, header-only files."""
    folder = os.path.join(os.path.dirname(get_testdata_file("MR_small.dcm")), "dicomdirtests")
    v = load_volume(folder)
    assert len(v.series) == 13 and v.modality == "MR"
    chosen = [s for s in v.series if s["selected"]][0]
    assert chosen["modality"] == "MR" and chosen["n_slices"] == max(
        s["n_slices"] for s in v.series if s["modality"] == "MR"
    )
    assert {s["modality"] for s in v.series} == {"MR", "CT", "CR"}
    assert any("different orientation" in w for w in v.warnings)
    assert any("could not be read" in w for w in v.warnings)
    ct = next(s for s in v.series if s["modality"] == "CT")
    with pytest.raises(VolumeLoadError, match="CT"):
        load_volume(folder, series=ct["uid"])
    with pytest.raises(VolumeLoadError, match="DICOMDIR"):
        load_volume(os.path.join(folder, "DICOMDIR"))


def test_phi_not_in_logs_or_python_warnings(ref, caplog, recwarn):
    import logging
    import warnings

    datasets = f.series_from_image(ref, phi=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ds in datasets:  # invalid values make pydicom warn/log, quoting them
            ds.PatientAge = "78 years Zebrowski"
            ds.PatientBirthDate = "not a date Quentin"
        blobs = [f.to_bytes(d) for d in datasets]
    recwarn.clear()
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    v = load_volume(blobs)
    text = caplog.text + " ".join(str(w.message) for w in recwarn) + repr(v.meta) + repr(v.warnings)
    for phi in ("Zebrowski", "Quentin", "78 years"):
        assert phi not in text
