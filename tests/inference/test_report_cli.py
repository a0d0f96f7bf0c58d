"""PDF/JSON report and `python -m core predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from inference_helpers import GRADE_CLASSES, PRESENCE_CLASSES, TYPE_CLASSES, phantom, volume_of
from PIL import Image

from core import explain, report
from core.cli import main


def test_pdf_contains_verdict_refer_and_disclaimer(tiny_predictor):
    vol = volume_of(phantom(5, bright=(2,)))
    pred = tiny_predictor.predict_volume(vol)
    from core.preprocess import slices

    sl = slices(vol)
    cams = {i: explain.cam(tiny_predictor, sl[i], "gradcam", pred.class_index("tumor_type")) for i in pred.key_slices}
    cards = {
        t: dict(m.card, version="t1", intended_use="research", limitations=["tiny test model"])
        for t, m in tiny_predictor.models.items()
    }
    pdf = report.build_pdf(pred, sl, cams, cards, meta={"PatientName": "Doe^Jane", "Modality": "MR"}, compress=False)
    assert pdf.startswith(b"%PDF")
    from core.inference.verdict import headline

    text, _task, _prob = headline(pred)  # the same words as the scan page
    assert f"Verdict: {text}".encode() in pdf
    assert b"Refer to a human reader when the normalised entropy exceeds" in pdf
    assert b"Research use only" in pdf and b"not a medical device" in pdf
    assert b"Doe^Jane" not in pdf
    assert pdf.count(b"/Subtype /Image") >= len(pred.key_slices)
    if pred.refer:
        assert b"REFER TO A HUMAN READER" in pdf
    compressed = report.build_pdf(pred, sl, cams, cards)
    assert compressed.startswith(b"%PDF") and len(compressed) < len(pdf)


def test_json_export_is_deidentified(tiny_predictor):
    pred = tiny_predictor.predict_volume(volume_of(phantom(3)))
    data = report.build_json(pred, meta={"PatientID": "123", "PatientName": "x", "Modality": "MR"})
    json.dumps(data)
    assert data["meta"] == {"Modality": "MR"} and data["tasks"] and "disclaimer" in data


@pytest.fixture
def saved_models():
    from core.zoo import save_checkpoint
    from model_zoo import create

    refs = []
    for task, classes, seq in (
        ("presence", PRESENCE_CLASSES, None),
        ("tumor_type", TYPE_CLASSES, None),
        ("grade", GRADE_CLASSES, ["t1pre", "flair", "t1post"]),
    ):
        save_checkpoint(
            create("vgg19_slim", len(classes)),
            {"architecture": "vgg19_slim", "classes": classes, "input": {"size": 32, "sequences": seq}},
            task,
            "cli1",
        )
        refs += ["--model", f"{task}@cli1"]
    return refs + ["--precision", "fp32", "--device", "cpu"]


def _png(path, img01):
    Image.fromarray((np.clip(img01, 0, 1) * 255).astype(np.uint8)).save(path)


REQUIRED = {"classes", "probabilities", "label", "uncertainty", "refer"}


def test_predict_each_with_one_bad_file(tmp_path, saved_models, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "a.png", phantom(1, 64, 64, bright=(0,))[0])
    _png(folder / "b.png", phantom(1, 64, 64, seed=3)[0])
    (folder / "broken.png").write_bytes(b"not a png at all")
    single = tmp_path / "c.png"
    _png(single, phantom(1, 64, 64, seed=5)[0])
    rc = main(
        ["predict", str(folder), str(single), "--each", "--json", "--tasks", "presence,tumor_type", *saved_models]
    )
    out, err = capsys.readouterr()
    assert rc == 2
    lines = [json.loads(x) for x in out.strip().splitlines()]
    # JSON names inputs by position (file names can name the patient); the terminal's stderr may echo
    # the path the user typed
    assert [x["source"] for x in lines] == ["file 1 of 4", "file 2 of 4", "file 4 of 4"]
    assert "broken.png" in err and "a.png" not in out and "imgs" not in out
    for d in lines:
        assert {"presence", "tumor_type"} <= set(d["tasks"])
        for t in d["tasks"].values():
            assert REQUIRED <= set(t)
        assert len(d["slices"]) == 1 and "presence" in d["slices"][0] and "tumor_type" in d["slices"][0]
        assert d["model_versions"]["presence"] == "presence@cli1"
        assert "total" in d["timings_ms"]


def test_predict_tasks_and_sequences(tmp_path, saved_models, capsys):
    rgb = np.stack([phantom(1, 64, 64, seed=s)[0] for s in (1, 2, 3)], -1)
    path = tmp_path / "lgg.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    rc = main(
        [
            "predict",
            str(path),
            "--json",
            "--tasks",
            "grade,tumor_type",
            "--sequences",
            "t1pre,flair,t1post",
            *saved_models,
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert set(d["tasks"]) == {"grade", "tumor_type"}
    assert d["source"] == "input" and "lgg" not in out and "grade" in d["slices"][0]
    assert not any("substitute" in r for r in d["tasks"]["grade"]["refer_reasons"])


def test_predict_bad_input_exits_2(tmp_path, saved_models, capsys):
    bad = tmp_path / "x.nii.gz"
    bad.write_bytes(b"garbage")
    rc = main(["predict", str(bad), "--json", *saved_models])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.strip()
    assert main(["predict", str(bad), "--tasks", "nonsense", *saved_models]) == 2
