"""The input gate and the calibrated referral rule with the shipped presence and tumor_type models."""

import shutil

import numpy as np
import pytest

from core.inference import Predictor
from core.inference.verdict import headline
from core.io import load_volume
from core.research.ood_sets import generated
from core.tasks import class_title


@pytest.fixture(scope="module")
def shipped():
    return Predictor.from_active(tasks=("presence", "tumor_type"), device="cpu")


def test_shipped_cards_carry_measured_operating_points(shipped):
    for task in ("presence", "tumor_type"):
        card = shipped.model(task).card
        r = card["referral"]
        assert 0 < r["max_percentile"] < 1 and r["cross_fitted"]["splits"] >= 20
        assert len(r["risk_coverage"]) > 10 and "calibrate" in r["command"]
        assert shipped.model(task).referral is not None
    gate = shipped.model("presence").card["gate"]
    assert gate["auroc"] > 0.9 and gate["false_refusal"]["mean"] < 0.05 and gate["n_ood"] >= 30


@pytest.mark.parametrize("name", ["noise", "checkerboard", "smooth-noise", "gradient", "stripes"])
def test_generated_pictures_are_not_assessed(shipped, name):
    picture = dict(generated())[f"generated:{name}"]
    pred = shipped.predict_volume(picture)
    assert pred.status == "cannot_assess", (name, pred.ood)
    assert all(r.status == "cannot_assess" and r.probabilities == [] for r in pred.tasks.values())
    assert pred.ood["reasons"]


def test_the_product_refuses_what_the_card_measured_as_refused(shipped):
    """The calibration's measurement and the runtime gate read pictures the same way."""
    measured = shipped.model("presence").card["gate"]["ood_items"]
    for name, picture in generated():
        pred = shipped.predict_volume(picture)
        assert pred.ood["gate"]["feature_distance"] == pytest.approx(measured[name]["distance"], abs=0.05)
        if measured[name]["refused"]:
            assert pred.status == "cannot_assess"


def test_real_brain_mri_passes_the_gate(shipped, fixtures_dir):
    for name in ("figshare_meningioma_1.jpg", "figshare_pituitary_709.jpg", "tcia_btp_PGBM-010_post_t1post.nii.gz"):
        pred = shipped.predict_volume(load_volume(fixtures_dir / name))
        assert not pred.ood["is_ood"], (name, pred.ood)
        assert pred.tasks["presence"].status in ("ok", "refer")
        assert "familiarity_percentile" in pred.tasks["presence"].uncertainty


def test_unfamiliar_type_input_is_referred(shipped, fixtures_dir):
    """A TCGA FLAIR/T1 slice read by the type model (trained on Figshare T1 post-contrast only)."""
    vol = load_volume(fixtures_dir / "tcga_lgg_CS_4941_013.jpg", sequences=["t1pre", "flair", "t1post"])
    pred = shipped.predict_volume(vol)
    res = pred.tasks["tumor_type"]
    assert res.refer and any("less familiar" in why for why in res.refer_reasons)
    text, _task, probability = headline(pred)  # no tumour type in large letters
    assert "uncertain" in text and probability is None and class_title(res.label) not in text


def test_an_altered_referral_density_makes_the_task_cannot_assess(tmp_path, monkeypatch):
    import model_zoo.versions as ck

    root = tmp_path / "shipped"
    shutil.copytree(ck.SHIPPED_ROOT / "presence", root / "presence")
    monkeypatch.setattr(ck, "SHIPPED_ROOT", root)
    density = root / "presence" / "1.1.0" / "feature_density.pt"
    density.write_bytes(density.read_bytes()[:-8] + b"\0" * 8)
    predictor = Predictor.from_active(tasks=("presence",), device="cpu")
    assert "presence" in predictor.unavailable and "cannot be verified" in predictor.unavailable["presence"][1]
    pred = predictor.predict_volume(np.zeros((1, 64, 64), np.float32) + 0.5)
    assert pred.tasks["presence"].status == "cannot_assess"


# --- the cases end to end: header evidence refuses what the pixels cannot tell apart
def _field_map_series():
    from tests.io import dicom_factory as f

    return f.with_header(
        f.series_from_image(f.reference_image(shape=(64, 64, 12))),
        ImageType=["ORIGINAL", "PRIMARY", "M", "ND", "NORM"],
        SequenceName="*fm2d2r",
        ScanningSequence="GR",
        SeriesDescription="gre_field_mapping",
    )


def test_a_gre_field_map_series_is_not_assessed(shipped, tmp_path):
    from tests.io import dicom_factory as f

    f.write_series(_field_map_series(), tmp_path)
    pred = shipped.predict_volume(load_volume(tmp_path))
    assert pred.status == "cannot_assess"
    assert any("a field map, not an anatomical image" in why for why in pred.ood["reasons"])
    assert all(r.label == "" for r in pred.tasks.values())


def test_an_enhanced_phantom_field_map_is_not_assessed(shipped):
    from tests.io import dicom_factory as f

    ds = f.with_frame_type(
        f.enhanced_from_image(f.reference_image(shape=(64, 64, 8))), ["DERIVED", "PRIMARY", "FIELD_MAP", "NONE"]
    )
    pred = shipped.predict_volume(load_volume(f.to_bytes(ds)))
    assert pred.status == "cannot_assess" and any("field map" in why for why in pred.ood["reasons"])


def test_predict_cli_refuses_a_field_map_and_exits_non_zero(tmp_path, capsys):
    import json

    from core.cli import main
    from tests.io import dicom_factory as f

    f.write_series(_field_map_series(), tmp_path / "series")
    assert main(["predict", str(tmp_path / "series"), "--json", "--device", "cpu"]) != 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "cannot_assess" and all(t["probabilities"] == [] for t in out["tasks"].values())


def test_each_view_says_which_sequence_each_task_read(shipped, fixtures_dir, pdf_text):
    from core.inference.verdict import task_rows
    from core.report import build_pdf

    vol = load_volume(fixtures_dir / "tcga_lgg_CS_4941_013.jpg", sequences=["t1pre", "flair", "t1post"])
    pred = shipped.predict_volume(vol)
    rows = {r.task: r for r in task_rows(pred)}
    assert rows["presence"].read_on == "FLAIR"
    assert "read on FLAIR" in pdf_text(build_pdf(pred, compress=False))
