"""Multi-sequence studies: several NIfTI files or DICOM series -> one Volume with named channels on
one grid (core.io.study, core.io.recognise)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from core.io import VolumeLoadError, load_study, load_volume, rename_channels
from core.io.recognise import case_of, from_acquisition, from_filename
from tests.io import dicom_factory as f

BLOB_WORLD = np.array([12.0, -8.0, 20.0])  # RAS mm: a bright blob every sequence shows


def head(zooms, shape, origin, value, seed=0, blob=BLOB_WORLD) -> nib.Nifti1Image:
    """A RAS grid with background noise and a bright 3-voxel blob at the world point `blob`."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 50, shape).astype(np.float32)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = origin
    ijk = np.round(np.linalg.solve(affine, [*blob, 1.0])[:3]).astype(int)
    lo, hi = np.maximum(ijk - 1, 0), ijk + 2
    data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = value
    return nib.Nifti1Image(data, affine)


def three_sequences():
    """T1 post at 1 mm (the finest, the reference), FLAIR at 2 mm with another origin, T2 at
    1.5 x 1.5 x 3 mm stored LPS: all covering the same head."""
    t1post = head((1.0, 1.0, 1.0), (60, 64, 56), (-30.0, -40.0, -10.0), 1000, seed=1)
    flair = head((2.0, 2.0, 2.0), (32, 34, 30), (-31.0, -41.0, -11.0), 800, seed=2)
    t2 = f.reoriented(head((1.5, 1.5, 3.0), (42, 44, 20), (-31.0, -40.5, -12.0), 600, seed=3), "LPS")
    return t1post, flair, t2


def _centre(data: np.ndarray, affine: np.ndarray, zyx: bool) -> np.ndarray:
    """World centre (RAS mm) of the bright blob: the intensity-weighted centroid above half its peak."""
    data = np.asarray(data, dtype=float)
    mask = data > data.max() / 2
    index = np.argwhere(mask).astype(float)
    weights = data[mask]
    centre = (index * weights[:, None]).sum(0) / weights.sum()
    ijk = centre[::-1] if zyx else centre
    return (affine @ [*ijk, 1.0])[:3]


def _write(tmp_path, names_images, gz=True):
    paths = []
    for name, img in names_images:
        path = tmp_path / name
        path.write_bytes(f.nifti_bytes(img, gz=gz))
        paths.append(path)
    return paths


def _check_aligned(v, sources: dict):
    """Each channel on the 1 mm grid of the T1 post, its blob where its source image has it."""
    assert list(v.channels) == list(sources)
    assert v.spacing == pytest.approx((1.0, 1.0, 1.0))
    for name, img in sources.items():
        assert v.channels[name].shape == v.shape
        expected = _centre(np.asanyarray(img.dataobj), img.affine, zyx=False)
        assert np.linalg.norm(expected - BLOB_WORLD) < 2.5  # the blob is there
        assert np.linalg.norm(_centre(v.channels[name], v.affine, zyx=True) - expected) < 0.5, name


def test_bids_three_sequence_study(tmp_path):
    t1post, flair, t2 = three_sequences()
    paths = _write(
        tmp_path, [("sub-01_ce-gd_T1w.nii.gz", t1post), ("sub-01_FLAIR.nii.gz", flair), ("sub-01_T2w.nii", t2)]
    )
    v = load_study(paths)
    _check_aligned(v, {"t1post": t1post, "flair": flair, "t2": t2})
    assert v.active_channel == "t1post" and v.meta["study"]["reference"] == "t1post"
    rows = {r["channel"]: r for r in v.series}
    assert rows["t1post"]["reference"] and not rows["t1post"]["resampled"]
    assert rows["flair"]["resampled"] and rows["t2"]["resampled"]
    assert rows["t1post"]["recognised_from"] == "BIDS name (ce-gd_T1w)"
    assert "sub-01" not in repr(v.series) + repr(v.meta) + repr(v.warnings)  # file names never kept
    assert any("resampled" in w and "FLAIR" in w and "T2" in w for w in v.warnings)
    assert any("no T1 pre-contrast" in w for w in v.warnings)  # missing sequence
    # several NIfTI files given to load_volume are the same study (they used to be refused)
    assert list(load_volume(paths).channels) == ["t1post", "flair", "t2"]


def test_brats_names_and_the_segmentation_is_left_out(tmp_path):
    t1post, flair, t2 = three_sequences()
    seg = nib.Nifti1Image((np.asanyarray(t1post.dataobj) > 900).astype(np.uint8), t1post.affine)
    paths = _write(
        tmp_path,
        [
            ("BraTS19_TCIA01_131_1_flair.nii.gz", flair),
            ("BraTS19_TCIA01_131_1_t1ce.nii.gz", t1post),
            ("BraTS19_TCIA01_131_1_t2.nii.gz", t2),
            ("BraTS19_TCIA01_131_1_seg.nii.gz", seg),
        ],
    )
    v = load_study(tmp_path)  # a folder works like a list
    _check_aligned(v, {"flair": flair, "t1post": t1post, "t2": t2})
    left = [r for r in v.series if r.get("left_out")]
    assert len(left) == 1 and "segmentation" in left[0]["left_out"]
    assert len(paths) == 4


def test_files_of_different_cases_are_refused(tmp_path):
    t1post, flair, _ = three_sequences()
    paths = _write(
        tmp_path, [("BraTS19_TCIA01_131_1_t1ce.nii.gz", t1post), ("BraTS19_TCIA02_222_1_flair.nii.gz", flair)]
    )
    with pytest.raises(VolumeLoadError, match="2 different subjects"):
        load_study(paths)
    with pytest.raises(VolumeLoadError, match="2 different subjects"):
        load_study(_write(tmp_path, [("sub-01_T1w.nii.gz", t1post), ("sub-02_FLAIR.nii.gz", flair)]))


def test_series_that_do_not_overlap_are_refused(tmp_path):
    t1post, flair, _ = three_sequences()
    far = nib.Nifti1Image(np.asanyarray(flair.dataobj), flair.affine.copy())
    far.affine[:3, 3] += [0.0, 0.0, 400.0]  # 40 cm above the head
    paths = _write(tmp_path, [("t1_post.nii.gz", t1post), ("flair.nii.gz", far)])
    with pytest.raises(VolumeLoadError, match="do not overlap.*file 2 of 2 \\(FLAIR\\) shares 0%"):
        load_study(paths)


def test_renaming_channels(tmp_path):
    t1post, flair, t2 = three_sequences()
    paths = _write(tmp_path, [("a.nii.gz", t1post), ("flair.nii.gz", flair), ("b.nii.gz", t2)])
    v = load_study(paths)
    assert list(v.channels) == ["unknown", "flair", "unknown_2"]
    assert sum("was not recognised" in w for w in v.warnings) == 2  # reported, never guessed
    named = load_study(paths, sequences={"unknown": "t1post", 2: "T2"})
    assert list(named.channels) == ["t1post", "flair", "T2"]
    assert not any("was not recognised" in w for w in named.warnings)
    assert list(load_study(paths, sequences=["T1Gd", "FLAIR", "t2"]).channels) == ["T1Gd", "FLAIR", "t2"]
    renamed = rename_channels(v, {"unknown": "t1post", "file-3": "t2"})
    assert list(renamed.channels) == ["t1post", "flair", "t2"]
    assert renamed.channels["t2"] is v.channels["unknown_2"]  # no copy
    assert renamed.active_channel == "t1post" and renamed.meta["study"]["reference"] == "t1post"
    with pytest.raises(VolumeLoadError, match="same name"):
        rename_channels(v, {"unknown": "flair"})
    with pytest.raises(VolumeLoadError, match="3 series .* 2 sequence name"):
        load_study(paths, sequences=["t1post", "flair"])


def test_grid_is_bounded_by_the_voxel_limit(tmp_path, monkeypatch):
    t1post, flair, t2 = three_sequences()
    paths = _write(tmp_path, [("t1ce.nii.gz", t1post), ("flair.nii.gz", flair), ("t2.nii.gz", t2)])
    monkeypatch.setenv("NEUROGRADE_MAX_VOXELS", str(300_000))
    v = load_study(paths)
    assert 3 * int(np.prod(v.shape)) <= 300_000 and v.spacing[0] > 1.0
    assert any("coarsened" in w for w in v.warnings)
    for name, img in zip(v.channels, (t1post, flair, t2)):
        expected = _centre(np.asanyarray(img.dataobj), img.affine, zyx=False)
        assert np.linalg.norm(_centre(v.channels[name], v.affine, zyx=True) - expected) < 1.0, name


# ------------------------------------------------------------------------------ DICOM
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def _dicom_series(img, seed, number, description, **header):
    datasets = f.series_from_image(img, seed=seed, series_number=number, description=description, phi=True)
    return f.with_header(datasets, StudyInstanceUID=STUDY_UID, FrameOfReferenceUID=STUDY_UID + ".9", **header)


def _dicom_study(tmp_path):
    t1post, flair, t2 = three_sequences()
    as_int = lambda img: nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.int16), img.affine)  # noqa: E731
    series = [
        _dicom_series(
            as_int(f.reoriented(t1post, "LPS")),
            "t1c",
            3,
            "AX T1 MPRAGE",
            RepetitionTime=2300,
            EchoTime=3,
            InversionTime=900,
            ContrastBolusAgent="Gadobutrol",
        ),
        _dicom_series(
            as_int(f.reoriented(flair, "LPS")),
            "fl",
            2,
            "Ax 3D",  # no sequence word
            RepetitionTime=9000,
            EchoTime=120,
            InversionTime=2500,
        ),
        _dicom_series(as_int(t2), "t2", 1, "T2W_TSE", RepetitionTime=4000, EchoTime=100),
        _dicom_series(
            as_int(f.reoriented(t1post, "LPS")), "loc", 4, "LOCALIZER", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]
        )[:3],
    ]
    folder = tmp_path / "study"
    for k, datasets in enumerate(series):
        f.write_series(datasets, folder / f"s{k}")
    return folder


def test_dicom_multi_series_study(tmp_path):
    folder = _dicom_study(tmp_path)
    v = load_study(folder)
    t1post, flair, t2 = three_sequences()
    _check_aligned(v, {"t2": t2, "flair": flair, "t1post": t1post})  # in series-number order
    rows = {r.get("channel"): r for r in v.series}
    assert "contrast agent" in rows["t1post"]["recognised_from"]
    assert rows["flair"]["recognised_from"].startswith("header timing (TR 9000 ms, TE 120 ms, TI 2500 ms")
    assert rows["t2"]["recognised_from"] == "series description (t2w)"
    assert [r["left_out"] for r in v.series if r.get("left_out")] == ["a localizer (scout), not a diagnostic series"]
    text = repr(v.series) + repr(v.meta) + repr(v.warnings)
    assert not [s for s in f.PHI_STRINGS if s in text]
    assert STUDY_UID not in text
    # a folder of one study's series: load_volume combines them too; series= still picks one
    assert list(load_volume(folder).channels) == ["t2", "flair", "t1post"]
    one = load_volume(folder, series=2)
    assert list(one.channels) == ["image"] and any("series #2 was loaded" in w for w in one.warnings)


def test_dicom_series_of_two_studies_or_not_overlapping(tmp_path):
    folder = _dicom_study(tmp_path)
    other = f.with_header(
        f.series_from_image(f.reference_image(), seed="x", description="FLAIR"), StudyInstanceUID=STUDY_UID + ".2"
    )
    f.write_series(other, folder / "other")
    with pytest.raises(VolumeLoadError, match="2 different studies"):
        load_study(folder)
    v = load_volume(folder)  # as before: the largest series
    assert len(v.channels) == 1 and any("DICOM series" in w for w in v.warnings)

    far = tmp_path / "far"
    t1post, flair, _ = three_sequences()
    moved = nib.Nifti1Image(np.asanyarray(flair.dataobj).astype(np.int16), flair.affine.copy())
    moved.affine[:3, 3] += [300.0, 0.0, 0.0]
    f.write_series(
        _dicom_series(
            nib.Nifti1Image(np.asanyarray(t1post.dataobj).astype(np.int16), t1post.affine), "a", 1, "T1 post"
        ),
        far / "a",
    )
    f.write_series(_dicom_series(moved, "b", 2, "FLAIR"), far / "b")
    with pytest.raises(VolumeLoadError, match="do not overlap"):
        load_study(far)
    v = load_volume(far)
    assert len(v.channels) == 1 and any("not combined" in w and "do not overlap" in w for w in v.warnings)


# ------------------------------------------------------------------------------ recognition
@pytest.mark.parametrize(
    "name,sequence",
    [
        ("sub-01_T1w.nii.gz", "t1pre"),
        ("sub-01_ce-gd_T1w.nii.gz", "t1post"),
        ("sub-01_ses-2_FLAIR.nii", "flair"),
        ("sub-01_T2w.nii.gz", "t2"),
        ("sub-01_acq-tse_T2w.nii.gz", "t2"),
        ("sub-01_T1map.nii.gz", "unknown"),
        ("BraTS19_TCIA01_131_1_t1ce.nii.gz", "t1post"),
        ("BraTS19_TCIA01_131_1_t1.nii.gz", "t1pre"),
        ("BraTS19_TCIA01_131_1_flair.nii.gz", "flair"),
        ("BraTS19_TCIA01_131_1_t2.nii.gz", "t2"),
        ("BraTS-GLI-00000-000-t1c.nii.gz", "t1post"),
        ("BraTS-GLI-00000-000-t1n.nii.gz", "t1pre"),
        ("BraTS-GLI-00000-000-t2f.nii.gz", "flair"),
        ("BraTS-GLI-00000-000-t2w.nii.gz", "t2"),
        ("IXI002-Guys-0828-PD.nii.gz", "pd"),
        ("post_t1post.nii.gz", "t1post"),
        ("T1_MPRAGE_post.nii", "t1post"),
        ("t1_flair_sag.nii", "t1pre"),
        ("T2_FLAIR.nii.gz", "flair"),
        ("scan.nii.gz", "unknown"),
        ("BraTS19_TCIA01_131_1_seg.nii.gz", "label"),
        ("pre_mask.nii.gz", "label"),
    ],
)
def test_sequence_from_file_name(name, sequence):
    assert from_filename(name).sequence == sequence


@pytest.mark.parametrize(
    "acq,sequence,doubt",
    [
        ({"SeriesDescription": "AX T1 POST GD"}, "t1post", False),
        ({"SeriesDescription": "Ax T1+C", "RepetitionTime": 500, "EchoTime": 12}, "t1post", False),
        ({"SeriesDescription": "t1_mprage_sag", "contrast_agent": True}, "t1post", False),
        ({"SeriesDescription": "T1 pre", "contrast_agent": True}, "t1pre", True),
        ({"SeriesDescription": "AX T2 FLAIR", "RepetitionTime": 9000, "EchoTime": 120}, "flair", False),
        ({"SeriesDescription": "Sag T1 FLAIR"}, "t1pre", False),
        ({"SeriesDescription": "T2* GRE"}, "t2star", False),
        ({"SeriesDescription": "T2 AX", "RepetitionTime": 500, "EchoTime": 12}, "t2", True),
        ({"RepetitionTime": 9000, "EchoTime": 120, "InversionTime": 2500}, "flair", False),
        ({"RepetitionTime": 2300, "EchoTime": 3, "InversionTime": 900, "contrast_agent": True}, "t1post", False),
        ({"RepetitionTime": 4000, "EchoTime": 100}, "t2", False),
        ({"RepetitionTime": 3000, "EchoTime": 20}, "pd", False),
        ({"RepetitionTime": 600, "EchoTime": 20, "FlipAngle": 20, "ScanningSequence": ["GR"]}, "t2star", False),
        ({"RepetitionTime": 5000, "EchoTime": 40, "InversionTime": 150}, "unknown", False),  # STIR
        ({"SeriesDescription": "Ax 3D"}, "unknown", False),
        ({}, "unknown", False),
    ],
)
def test_sequence_from_dicom_header(acq, sequence, doubt):
    found = from_acquisition(acq)
    assert found.sequence == sequence and bool(found.doubt) == doubt, found


def test_case_of_file_names():
    assert case_of("sub-01_ses-2_ce-gd_T1w.nii.gz") == "sub-01_ses-2"
    assert case_of("BraTS19_TCIA01_131_1_t1ce.nii.gz") == case_of("BraTS19_TCIA01_131_1_seg.nii.gz")
    assert case_of("T2_FLAIR.nii.gz") is None and case_of("flair.nii") is None


# ------------------------------------------------------------------------------ real data
@pytest.mark.data
def test_real_three_sequence_study_reaches_the_grade_model(shared_data, tmp_path):
    """A TCGA-LGG patient's slices (T1 pre, FLAIR, T1 post as R, G, B) as three NIfTI files with
    BraTS names: the study loads, and the shipped grade model reads its three declared sequences."""
    import csv

    from PIL import Image

    from core.inference import Predictor
    from core.tasks import TASK_TABLE

    rows = list(csv.DictReader(open(shared_data / "tcga-lgg" / "manifest.csv")))
    patient = rows[0]["patient"]
    mine = sorted((r for r in rows if r["patient"] == patient), key=lambda r: int(r["slice"]))
    rgb = np.stack(
        [np.asarray(Image.open(shared_data / "tcga-lgg" / r["image"]).convert("RGB")) for r in mine]
    )  # (z, y, x, 3)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    for c, suffix in enumerate(("t1", "flair", "t1ce")):
        data = np.ascontiguousarray(rgb[..., c].transpose(2, 1, 0)[:, ::-1])  # (x, y, z), anterior up
        (tmp_path / f"TCGA_case01_{suffix}.nii.gz").write_bytes(
            gzip.compress(nib.Nifti1Image(data.astype(np.uint8), affine).to_bytes())
        )
    v = load_study(tmp_path)
    assert sorted(v.channels) == ["flair", "t1post", "t1pre"] and v.shape[0] == len(mine)
    assert not any(r.get("resampled") for r in v.series)
    grade = Predictor.from_refs({"grade": "grade@1.0.0"}, device="cpu", precision="fp32")
    assert grade.task_channels("grade", v, forced=False) == (["t1pre", "flair", "t1post"], "")
    assert set(TASK_TABLE["grade"].prefers) <= set(v.channels)
