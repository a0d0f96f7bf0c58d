"""The verdict in words: headline, reasons to refer and the thresholds behind them.

Shared by the scan page and the PDF report so that both say the same thing.
"""
from __future__ import annotations

from core import inference as inf
from core.inference import NO_TUMOUR_VERDICT

TASK_TITLES = {"presence": "Tumour presence", "tumor_type": "Tumour type", "grade": "Glioma grade"}
CLASS_TITLES = {"no_tumor": "No tumour", "tumor": "Tumour", "glioma": "Glioma", "meningioma": "Meningioma",
                "pituitary": "Pituitary tumour", "G2": "WHO grade II", "G3": "WHO grade III"}


def pretty(label: str) -> str:
    """A class name as a clinician reads it."""
    return CLASS_TITLES.get(str(label), str(label).replace("_", " ").capitalize())


def headline(pred) -> tuple[str, str | None, float | None]:
    """(verdict headline, the task that decided it, its calibrated probability)."""
    tasks = pred.tasks
    if not tasks:
        return "No prediction", None, None
    if pred.verdict == NO_TUMOUR_VERDICT:
        res = tasks.get("presence")
        if res is not None:
            return "No tumour detected", "presence", float(max(res.probabilities))
        return "No tumour detected", None, None
    if "tumor_type" in tasks:
        res = tasks["tumor_type"]
        text = pretty(res.label)
        if "grade" in tasks:
            text += f" · {pretty(tasks['grade'].label)}"
        return text, "tumor_type", float(max(res.probabilities))
    first = next(iter(tasks))
    res = tasks[first]
    return pretty(res.label), first, float(max(res.probabilities))


def refer_messages(pred) -> list[str]:
    """The reasons to refer, each once: the input check first, then each task's own reasons."""
    out = []
    ood = pred.ood or {}
    if ood.get("is_ood"):
        out.append("**Input**: looks unlike the training data — " + ("; ".join(ood.get("reasons") or [])
                                                                   or "out-of-distribution score high"))
    for task, res in pred.tasks.items():
        for why in res.refer_reasons:
            if why.startswith("input looks unlike"):
                continue
            out.append(f"**{TASK_TITLES.get(task, task)}**: {why}")
    if pred.refer and not out:
        out.append("the model is not confident")
    return out


def thresholds_text() -> str:
    """The refer rule and the aggregation, with the numbers the code uses."""
    return (f"Refer to a human reader when the normalised entropy exceeds {inf.ENTROPY_REFER:g}, the "
            f"top-2 margin is below {inf.MARGIN_REFER:g}, MC-dropout BALD exceeds {inf.BALD_REFER:g} "
            f"(when enabled), or the input looks unlike brain MRI. A slice counts as showing tumour "
            f"when P(tumour) ≥ {inf.PRESENCE_THRESHOLD:g}; the volume verdict weights slices by "
            f"P(tumour)^{inf.RELEVANCE_SHARPEN:g}. Probabilities are calibrated (temperature scaling "
            f"from each model card).")
