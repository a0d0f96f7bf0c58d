"""Know when not to answer: a model that cannot be loaded or verified makes its task and every task
downstream "cannot assess"; a task whose model's card does not beat chance is "not validated"; a
no-tumour verdict has no contradicting rows; the JSON, the PDF and the CLI say the same thing.
(The scan page: tests/pages/test_scan_page.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from inference_helpers import (
    GRADE_CLASSES,
    PRESENCE_CLASSES,
    TYPE_CLASSES,
    auc_card,
    phantom,
    save_biased,
    stub_loaded,
    volume_of,
)
from PIL import Image

from core import report
from core.cli import main
from core.inference import Predictor
from core.inference.validity import model_validity
from core.inference.verdict import STATUS_TITLES, headline, task_rows
from core.tasks import TASKS

GRADE_SEQ = ["t1pre", "flair", "t1post"]
BIASES = {
    "presence": (PRESENCE_CLASSES, [-4.0, 4.0], None),
    "tumor_type": (TYPE_CLASSES, [6.0, 0.0, 0.0], None),
    "grade": (GRADE_CLASSES, [4.0, 0.0], GRADE_SEQ),
}
CLI_OPTS = ["--precision", "fp32", "--device", "cpu"]


@pytest.fixture
def tampered_presence(tamper):
    """Versions "v1" of the three tasks in this test's NEUROGRADE_HOME; presence's model.pt has one
    byte flipped. Returns the refs."""
    folders = {t: save_biased(t, "v1", *BIASES[t]) for t in TASKS}
    tamper(folders["presence"])
    return {t: f"{t}@v1" for t in TASKS}


def _png(path, img01):
    Image.fromarray((np.clip(img01, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def _rgb_volume(n=3):
    sl = phantom(n, bright=(1,))
    return volume_of(sl, channels={s: sl for s in GRADE_SEQ})


@pytest.fixture
def same_everywhere(pdf_text):
    """same_everywhere(pred) -> the headline and the per-task statuses as the verdict, the JSON and
    the PDF give them (with the JSON and the PDF text); fails when they disagree."""
    return lambda pred: _same_everywhere(pred, pdf_text)


def _same_everywhere(pred, pdf_text) -> dict:
    text = headline(pred)[0]
    data = report.build_json(pred)
    pdf = pdf_text(report.build_pdf(pred, compress=False))
    assert data["headline"] == text and f"Verdict: {text}" in pdf
    assert data["status"] == pred.status
    for row in task_rows(pred):
        assert data["tasks"][row.task]["status"] == row.status
        assert row.title in pdf and row.result in pdf
    return {"headline": text, "statuses": {t: d["status"] for t, d in data["tasks"].items()}, "pdf": pdf, "json": data}


# ------------------------------------------------------------------------------- fail closed
def test_a_tampered_presence_model_makes_the_whole_cascade_cannot_assess(tampered_presence, same_everywhere):
    predictor = Predictor.from_refs(tampered_presence, device="cpu", precision="fp32")
    assert "presence" not in predictor.models and "failed verification" in predictor.unavailable["presence"][1]
    pred = predictor.predict_volume(_rgb_volume())
    assert {t: r.status for t, r in pred.tasks.items()} == {t: "cannot_assess" for t in TASKS}
    for r in pred.tasks.values():
        assert r.probabilities == [] and r.label == "" and r.note
    assert "checksum" in pred.tasks["presence"].note
    assert "tumour presence" in pred.tasks["tumor_type"].note and "tumour presence" in pred.tasks["grade"].note
    assert pred.status == "cannot_assess" and pred.verdict == "cannot assess" and pred.refer
    assert pred.key_slices == [] and all("tumor_type" not in s for s in pred.slices)  # nothing ran
    seen = same_everywhere(pred)
    assert seen["headline"] == "Cannot assess"
    assert "failed verification" in seen["json"]["headline_reason"]
    assert seen["pdf"].count("Cannot assess") >= 4  # the verdict and the three tasks
    assert "probability" not in seen["pdf"]  # no probability table anywhere


def test_predict_exits_3_when_a_task_cannot_be_assessed_unless_allowed(tmp_path, tampered_presence, capsys):
    image = _png(tmp_path / "slice.png", phantom(1, 64, 64, bright=(0,))[0])
    models = [a for t, ref in tampered_presence.items() for a in ("--model", ref)]
    assert main(["predict", str(image), "--json", *models, *CLI_OPTS]) == 3
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert {t: r["status"] for t, r in d["tasks"].items()} == {t: "cannot_assess" for t in TASKS}
    assert d["status"] == "cannot_assess" and d["headline"] == "Cannot assess"
    assert "cannot assess presence, tumor_type, grade" in err and "--allow-incomplete" in err
    assert main(["predict", str(image), *models, *CLI_OPTS, "--allow-incomplete"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"{image}: Cannot assess (Tumour presence: The model presence@v1 failed verification")
    assert "[CANNOT ASSESS]" in out and "Tumour type (tumor_type@v1): Cannot assess" in out


def test_predict_help_documents_the_exit_status_and_slice_numbers(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 a task cannot be assessed" in text and "--allow-incomplete" in text
    assert "'slice k of N' counting from 1" in text and "slices[i].number" in text


# ---------------------------------------------------------------------------- validity gate
def test_model_validity_reads_the_held_out_auc_interval(shared_grade_card):
    ok, why = model_validity(shared_grade_card)  # the shipped grade 1.0.0
    assert not ok and "AUC 0.46" in why and "includes chance (0.5)" in why
    assert model_validity({"task": "grade", **auc_card(0.62, 0.81)}) == (True, "")
    assert not model_validity({"task": "grade", **auc_card(0.45, 0.81)})[0]
    assert "below chance" in model_validity({"task": "presence", **auc_card(0.2, 0.45, "presence")})[1]
    assert not model_validity({"informative": False, **auc_card(0.9, 0.95)})[0]
    test_only = {
        "task": "grade",
        "metrics": {
            "test": {"auc": 0.9, "ci95": {"auc": [0.8, 0.95]}, "patient": {"auc": 0.6, "ci95": {"auc": [0.3, 0.9]}}}
        },
    }
    assert "locked test patient-level AUC 0.60" in model_validity(test_only)[1]  # grade: patient level
    assert model_validity({"task": "grade"}) == (True, "")  # no interval: nothing shows chance


@pytest.fixture
def shared_grade_card():
    from model_zoo.versions import SHIPPED_ROOT

    path = SHIPPED_ROOT / "grade" / "1.0.0" / "card.json"
    if not path.is_file():
        pytest.skip("the shipped grade 1.0.0 is not in model_zoo/checkpoints")
    return json.loads(path.read_text())


def test_the_shipped_grade_model_is_not_validated(shared_grade_card):
    predictor = Predictor.from_refs({"grade": "grade@1.0.0"}, device="cpu", precision="fp32")
    pred = predictor.predict_volume(_rgb_volume(), tasks=["grade"])
    grade = pred.tasks["grade"]
    assert grade.status == "not_validated" and grade.probabilities == [] and grade.label == ""
    assert all("grade" not in s for s in pred.slices)  # the model did not even run
    assert json.loads(pred.to_json())["tasks"]["grade"]["status"] == "not_validated"


def _grade_predictor(grade_card: dict) -> Predictor:
    grade = stub_loaded("grade", GRADE_CLASSES, [3.0, 0.0], [0.0, 0.0], sequences=GRADE_SEQ)
    grade.card = {**grade.card, **grade_card}
    return Predictor(
        {
            "presence": stub_loaded("presence", PRESENCE_CLASSES, [-6.0, 6.0], [0.0, 0.0]),
            "tumor_type": stub_loaded("tumor_type", TYPE_CLASSES, [6.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            "grade": grade,
        },
        device="cpu",
        precision="fp32",
    )


def test_a_grade_model_at_chance_gives_no_grade_in_json_or_pdf(same_everywhere):
    pred = _grade_predictor(auc_card(0.24, 0.67)).predict_volume(_rgb_volume())
    assert pred.tasks["tumor_type"].label == "glioma" and pred.verdict == "glioma"
    grade = pred.tasks["grade"]
    assert grade.status == "not_validated" and grade.probabilities == [] and not grade.refer
    assert "includes chance" in grade.note
    seen = same_everywhere(pred)
    assert seen["headline"] == "Glioma" and seen["statuses"]["grade"] == "not_validated"
    assert "No validated model for Glioma grade" in seen["pdf"] and "Models page" in seen["pdf"]
    assert "WHO grade" not in seen["pdf"] and "G2" not in seen["pdf"]


def test_a_grade_model_whose_card_clears_the_gate_answers_again():
    pred = _grade_predictor(auc_card(0.62, 0.81)).predict_volume(_rgb_volume())
    assert pred.tasks["grade"].status == "ok" and pred.tasks["grade"].label == "G2"
    assert headline(pred)[0] == "Glioma · WHO grade II"


def test_promoting_a_validated_grade_version_brings_the_grade_back(shared_grade_card):
    from core.zoo import set_active

    before = Predictor.from_active(tasks=["grade"], device="cpu", precision="fp32")
    assert before.withheld()["grade"][0] == "not_validated"  # the shipped 1.0.0 is active
    save_biased("grade", "2.0.0", *BIASES["grade"], **auc_card(0.62, 0.81))
    set_active("grade", "2.0.0")  # what a promotion writes
    after = Predictor.from_active(tasks=["grade"], device="cpu", precision="fp32")
    assert after.model_versions == {"grade": "grade@2.0.0"} and "grade" not in after.withheld()


# ------------------------------------------------------------------- the verdict and its rows
def test_no_tumour_headline_has_no_contradicting_rows(same_everywhere):
    predictor = Predictor(
        {
            "presence": stub_loaded("presence", PRESENCE_CLASSES, [6.0, -6.0], [0.0, 0.0]),
            "tumor_type": stub_loaded("tumor_type", TYPE_CLASSES, [0.0, 0.0, 6.0], [0.0, 0.0, 0.0]),
        },
        device="cpu",
        precision="fp32",
    )
    default = predictor.predict_volume(volume_of(phantom(4)))
    assert same_everywhere(default)["statuses"] == {"presence": "ok"}  # the cascade stops at no tumour
    forced = predictor.predict_volume(volume_of(phantom(4)), tasks=["presence", "tumor_type"])
    seen = same_everywhere(forced)
    assert seen["headline"] == "No tumour detected"
    assert seen["statuses"] == {"presence": "ok", "tumor_type": "not_applicable"}
    assert "Not applicable: no tumour detected" in seen["pdf"] and "Pituitary" not in seen["pdf"]
    assert all(r.status != "ok" for t, r in forced.tasks.items() if t != "presence")


def test_pdf_and_cli_use_class_titles_and_one_slice_numbering(pdf_text):
    predictor = Predictor(
        {
            "presence": stub_loaded("presence", PRESENCE_CLASSES, [-6.0, 6.0], [0.0, 0.0]),
            "tumor_type": stub_loaded("tumor_type", TYPE_CLASSES, [0.0, 0.0, 6.0], [0.0, 0.0, 0.0]),
        },
        device="cpu",
        precision="fp32",
    )
    vol = volume_of(phantom(5, bright=(2,)))
    pred = predictor.predict_volume(vol)
    from core.preprocess import slices

    pdf = pdf_text(report.build_pdf(pred, slices(vol), compress=False))
    assert "Verdict: Pituitary tumour" in pdf and "Glioma" in pdf and "Meningioma" in pdf
    assert "pituitary" not in pdf and "no_tumor" not in pdf  # raw class names never shown
    assert all(f"slice {k + 1} of 5" in pdf for k in pred.key_slices)
    data = report.build_json(pred)
    assert [s["number"] for s in data["slices"]] == [1, 2, 3, 4, 5]
    assert data["key_slice_numbers"] == [k + 1 for k in data["key_slices"]]
    from core.commands.predict import _text

    text = _text("scan", pred)
    assert text.startswith("scan: Pituitary tumour") and "Pituitary tumour 1.00" in text
    assert "key slices: " + ", ".join(f"slice {k + 1} of 5" for k in pred.key_slices) in text
    assert STATUS_TITLES[pred.tasks["tumor_type"].status] in text
