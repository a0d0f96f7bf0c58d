"""DICOM acquisition evidence for the input gate: what the loader keeps in meta["acquisition"] and
what `assess_acquisition` makes of it, on pydicom's bundled files and on series written here."""

import json

import pydicom
import pytest
from pydicom.data import get_testdata_file

from core.io import load_volume
from core.io.acquisition import ANATOMICAL, NOT_ANATOMICAL, UNKNOWN, acquisition, assess_acquisition
from tests.io import dicom_factory as f

T1 = dict(
    ImageType=["ORIGINAL", "PRIMARY", "M", "ND", "NORM"],
    ScanningSequence="SE",
    SequenceVariant=["SK", "SP"],
    MRAcquisitionType="2D",
    FlipAngle=90,
    SequenceName="*se2d1",
)


def load_series(tmp_path, datasets):
    return load_volume(f.write_series(datasets, tmp_path / "series"))


def check(volume):
    return assess_acquisition(volume.meta["acquisition"])


# ------------------------------------------------------------------------- bundled files
def test_mr_small_is_anatomical():
    v = load_volume(get_testdata_file("MR_small.dcm"))
    acq = v.meta["acquisition"]
    assert acq["Modality"] == "MR" and acq["ImageType"] == ["DERIVED", "SECONDARY", "OTHER"]
    assert acq["EchoTime"] == 240.0 and acq["RepetitionTime"] == 4000.0 and acq["n_frames"] == 1
    assert acq["contrast_agent"] is False and acq["echo_planar"] is False
    assert json.loads(json.dumps(acq)) == acq  # plain JSON
    assert check(v).verdict == ANATOMICAL  # DERIVED\SECONDARY: not a reason


def test_ct_is_ct_not_mr():
    v = load_volume(get_testdata_file("CT_small.dcm"), allow_ct=True)
    result = check(v)
    assert result.verdict == NOT_ANATOMICAL and result.reasons == ["CT, not MR"]
    assert v.meta["acquisition"]["contrast_agent"] is True  # a yes, never the agent's name


def test_mpr_reformat_is_refused_for_its_body_part_only():
    v = load_volume(get_testdata_file("examples_overlay.dcm"))  # Siemens MPR of an abdomen
    acq = v.meta["acquisition"]
    assert "MPR" in acq["ImageType"] and acq["ImageType"][0] == "DERIVED"
    assert check(v).reasons == ["body part: ABDOMEN — the models read brain MRI"]
    brain = {**acq, "BodyPartExamined": "BRAIN"}
    assert assess_acquisition(brain).verdict == ANATOMICAL


# ---------------------------------------------------------------------- generated series
def test_anatomical_t1_passes_and_keeps_no_identity(tmp_path):
    v = load_series(tmp_path, f.with_header(f.series_from_image(f.reference_image(), phi=True), **T1))
    acq = v.meta["acquisition"]
    assert check(v) == assess_acquisition(acq) and check(v).verdict == ANATOMICAL
    assert acq["SeriesDescription"] == "T1 AX" and acq["BodyPartExamined"] == "BRAIN"
    assert acq["image_types"] == [T1["ImageType"]] and acq["n_frames"] == 6
    text = json.dumps(acq)
    assert not [s for s in f.PHI_STRINGS if s.lower() in text.lower()]


def test_description_naming_the_patient_is_dropped(tmp_path):
    named = f.with_header(f.series_from_image(f.reference_image(), phi=True), **T1, SeriesDescription="T1 AX Zebrowski")
    acq = load_series(tmp_path, named).meta["acquisition"]
    assert "SeriesDescription" not in acq and "Zebrowski" not in json.dumps(acq)


@pytest.mark.parametrize(
    "header,reason",
    [
        (
            dict(
                ImageType=["ORIGINAL", "PRIMARY", "P", "ND"],
                SequenceName="*fm2d2r",
                SeriesDescription="gre_field_mapping",
            ),
            "a phase image",
        ),
        (
            dict(ImageType=["ORIGINAL", "PRIMARY", "M", "ND", "NORM"], SequenceName="*fm2d2r", ScanningSequence="GR"),
            "a field map, not an anatomical image",
        ),
        (
            dict(
                ImageType=["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW", "ND"],
                DiffusionBValue=1000,
                SequenceName="*ep_b1000t",
                ScanningSequence="EP",
            ),
            "diffusion-weighted image (b = 1000 s/mm²)",
        ),
        (dict(ImageType=["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"]), "an ADC (apparent diffusion"),
        (dict(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), "a localizer (scout)"),
        (
            dict(ImageType=["ORIGINAL", "PRIMARY", "M", "ND"], SeriesDescription="AAHead_Scout"),
            "a localizer (scout), not a diagnostic series (series description)",
        ),
        (dict(ImageType=["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]), "a perfusion series"),
        (dict(ImageType=["DERIVED", "PRIMARY", "MIP_TRA"]), "a projection image"),
        (dict(BodyPartExamined="KNEE"), "body part: KNEE — the models read brain MRI"),
    ],
)
def test_non_anatomical_series_are_named(tmp_path, header, reason):
    datasets = f.with_header(f.series_from_image(f.reference_image()), **{**T1, **header})
    result = check(load_series(tmp_path, datasets))
    assert result.verdict == NOT_ANATOMICAL and any(reason in r for r in result.reasons), result


def test_siemens_private_b_value_alone_reveals_diffusion(tmp_path):
    datasets = f.with_siemens_b_value(f.with_header(f.series_from_image(f.reference_image()), **T1), 1000)
    v = load_series(tmp_path, datasets)
    assert v.meta["acquisition"]["vendor_b_value"] == 1000.0
    assert check(v).reasons == ["a diffusion-weighted image (b = 1000 s/mm²), not an anatomical image"]


def test_localizers_mixed_into_a_series_do_not_speak_for_it(tmp_path):
    t1 = f.with_header(f.series_from_image(f.reference_image()), **T1)
    scouts = f.series_from_image(f.rotated(f.reference_image(), 90, axis=0), seed="scout")[:2]
    f.with_header(scouts, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesInstanceUID=t1[0].SeriesInstanceUID)
    v = load_series(tmp_path, t1 + scouts)
    assert any("left out" in w for w in v.warnings)  # the stacker drops them too
    assert check(v).verdict == ANATOMICAL and v.meta["acquisition"]["n_frames"] == 6


@pytest.mark.parametrize(
    "frame_type,component,b_value,verdict,reason",
    [
        (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], "MAGNITUDE", None, ANATOMICAL, None),
        (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], "PHASE", None, NOT_ANATOMICAL, "a phase image"),
        (["DERIVED", "PRIMARY", "FIELD_MAP", "NONE"], "MAGNITUDE", None, NOT_ANATOMICAL, "a field map"),
        (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], "MAGNITUDE", 1000, NOT_ANATOMICAL, "b = 1000 s/mm²"),
    ],
)
def test_enhanced_frame_types(frame_type, component, b_value, verdict, reason):
    ds = f.with_frame_type(
        f.enhanced_from_image(f.reference_image()), frame_type, b_value=b_value, complex_component=component
    )
    v = load_volume(f.to_bytes(ds))
    acq = v.meta["acquisition"]
    assert v.source_format == "dicom-enhanced" and acq["n_frames"] == 6
    assert frame_type in acq["image_types"] and acq["ComplexImageComponent"] == [component]
    result = check(v)
    assert result.verdict == verdict and (reason is None or any(reason in r for r in result.reasons)), result


# -------------------------------------------------------------------------- not DICOM, hostile
def test_nifti_and_pictures_carry_no_acquisition(fixtures_dir):
    for name in ("figshare_glioma_209.jpg", "tcia_btp_PGBM-010_post_t1post.nii.gz"):
        v = load_volume(fixtures_dir / name)
        assert "acquisition" not in v.meta
        assert assess_acquisition(v.meta.get("acquisition")).verdict == UNKNOWN


@pytest.mark.parametrize(
    "acq",
    [
        None,
        "x",
        [],
        {},
        {"Modality": 5},
        {"Modality": None, "image_types": "P"},
        {"image_types": [[None, 3, {"a": 1}]], "ImageType": "P"},
        {"b_value": "nan", "SequenceName": 7},
        {"Modality": "OT"},
        {"error": "unreadable"},
        {"diffusion_directionality": "ISOTROPIC"},
        {"Modality": "MR", "b_value": float("inf"), "vendor_b_value": [1, 2]},
    ],
)
def test_odd_dicts_give_a_verdict_not_an_exception(acq):
    result = assess_acquisition(acq)
    assert result.verdict in (ANATOMICAL, NOT_ANATOMICAL, UNKNOWN)
    assert result.verdict != NOT_ANATOMICAL or result.reasons
    assert (result.verdict == ANATOMICAL) == (isinstance(acq, dict) and acq.get("Modality") == "MR")


def test_a_mapping_that_raises_is_unknown():
    class Hostile(dict):
        def get(self, *args):
            raise RuntimeError("boom")

    result = assess_acquisition(Hostile(Modality="MR"))
    assert result.verdict == UNKNOWN and "could not be interpreted" in result.reasons[0]


def test_extraction_never_raises():
    assert acquisition([], set()) == {"error": "the acquisition attributes could not be read"}
    assert assess_acquisition(acquisition([], set())).verdict == UNKNOWN
    not_a_dataset = acquisition([object()], set())
    assert "Modality" not in not_a_dataset and assess_acquisition(not_a_dataset).verdict == UNKNOWN


def test_undecodable_attributes_lose_only_themselves(tmp_path):
    """A b-value of the wrong length (stored as UN, decoded as FD on reading) and a garbage echo
    time: the load succeeds, those two are missing, the phase evidence is still read."""
    datasets = f.with_header(f.series_from_image(f.reference_image()), **T1)
    f.with_header(datasets, ImageType=["ORIGINAL", "PRIMARY", "P", "ND"])
    f.with_undecodable(datasets, 0x00189087, b"\x01\x02\x03\x04")  # DiffusionBValue (FD)
    f.with_undecodable(datasets, 0x00180081, b"\xff\xfe")  # EchoTime (DS)
    v = load_series(tmp_path, datasets)
    acq = v.meta["acquisition"]
    assert "b_value" not in acq and "EchoTime" not in acq
    assert check(v).verdict == NOT_ANATOMICAL and "a phase image" in check(v).reasons[0]
    with pytest.raises(Exception):  # noqa: B017 - pydicom itself raises on it (its type varies by version)
        _ = pydicom.dcmread(f.write_series(datasets[:1], tmp_path / "one")[0]).DiffusionBValue
