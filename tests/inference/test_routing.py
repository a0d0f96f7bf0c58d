"""Channel routing flags substitute inputs, and the cascade reads the flag, not the note's words."""

from __future__ import annotations

import dataclasses

from inference_helpers import GRADE_CLASSES, phantom, stub_loaded, volume_of

from core.inference import cascade
from core.inference.routing import route


def test_a_forced_multi_sequence_model_without_its_sequences_reads_flagged_substitutes():
    want = ["t1pre", "flair", "t1post"]
    assert route("grade", want, ["t1pre", "flair", "t1post"], "t1pre", forced=False).substitute is False
    missing = route("grade", want, ["image"], "image", forced=False)
    assert missing.channels is None and not missing.substitute and "missing" in missing.note
    forced = route("grade", want, ["image"], "image", forced=True)
    assert forced.channels == ["image"] and forced.substitute
    rgb = route("grade", want, ["grey", "red", "green", "blue"], "grey", forced=True)
    assert rgb.channels == ["red", "green", "blue"] and rgb.substitute


def test_the_grade_step_refers_on_the_flag_whatever_the_note_says(monkeypatch):
    real = cascade.route
    monkeypatch.setattr(cascade, "route", lambda *a, **k: dataclasses.replace(real(*a, **k), note="reworded"))
    p = cascade.Predictor(
        {"grade": stub_loaded("grade", GRADE_CLASSES, [3.0, 0.0], [0.0, 0.0], sequences=["t1pre", "flair", "t1post"])},
        device="cpu",
        precision="fp32",
    )
    res = p.predict_volume(volume_of(phantom(5, bright=(2,))), tasks=["grade"]).tasks["grade"]
    assert res.refer and "grade ran on substitute inputs (declared sequences missing)" in res.refer_reasons
