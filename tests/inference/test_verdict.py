"""The verdict's words on crafted predictions (no model needed)."""

from core.inference import ENTROPY_REFER, NO_TUMOUR_VERDICT, Cause, TaskResult, VolumePrediction
from core.inference.verdict import headline, refer_messages, thresholds_text
from core.tasks import class_title

TASK_OF = {"no_tumor": "presence", "glioma": "tumor_type", "G2": "grade"}


def _res(classes, probs, refer_reasons=()):
    return TaskResult(
        task=TASK_OF[classes[0]],
        classes=classes,
        probabilities=probs,
        label=classes[max(range(len(probs)), key=probs.__getitem__)],
        uncertainty={},
        refer=bool(refer_reasons),
        refer_reasons=list(refer_reasons),
    )


def _pred(tasks, verdict="glioma", refer=False, ood=None):
    return VolumePrediction(
        tasks=tasks,
        slices=[],
        key_slices=[],
        verdict=verdict,
        refer=refer,
        refer_reasons=[],
        ood=ood or {},
        model_versions={},
        timings_ms={},
    )


def test_headline_combines_type_and_grade_with_the_type_probability():
    pred = _pred(
        {
            "presence": _res(["no_tumor", "tumor"], [0.1, 0.9]),
            "tumor_type": _res(["glioma", "meningioma", "pituitary"], [0.7, 0.2, 0.1]),
            "grade": _res(["G2", "G3"], [0.4, 0.6]),
        }
    )
    assert headline(pred) == ("Glioma · WHO grade III", "tumor_type", 0.7)


def test_headline_without_tumour_reports_the_presence_probability():
    pred = _pred(
        {
            "presence": _res(["no_tumor", "tumor"], [0.8, 0.2]),
            "tumor_type": _res(["glioma", "meningioma", "pituitary"], [0.4, 0.3, 0.3]),
        },
        verdict=NO_TUMOUR_VERDICT,
    )
    assert headline(pred) == ("No tumour detected", "presence", 0.8)
    assert headline(_pred({}, verdict="")) == ("No prediction", None, None)


def test_refer_messages_put_the_input_check_first_and_never_repeat_it():
    refused = TaskResult.unavailable(
        "presence", "cannot_assess", "the input was refused: colour image", cause=Cause.INPUT_REFUSED
    )
    pred = _pred(
        {
            "presence": refused,
            "tumor_type": _res(["glioma", "meningioma", "pituitary"], [0.4, 0.3, 0.3], ["high entropy"]),
        },
        refer=True,
        ood={"is_ood": True, "reasons": ["colour image"]},
    )
    msgs = refer_messages(pred)
    assert msgs == ["Input: not an image these models can read — colour image", "Tumour type: high entropy"]
    assert refer_messages(_pred({}, refer=True)) == ["the model is not confident"]


def test_thresholds_text_quotes_the_constants_the_code_uses():
    assert f"exceeds {ENTROPY_REFER:g}" in thresholds_text()
    assert class_title("pituitary") == "Pituitary tumour" and class_title("some_class") == "Some class"
