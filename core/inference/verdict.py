"""The verdict in words: headline, one row per task, reasons to refer and the thresholds behind them.

Shared by the scan page, the PDF report and the CLI so that all say the same thing. Slices are
named "slice k of N", counted from 1 (`slice_label`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import core.inference.slice_votes as slice_votes
from core.inference.referral import operating_point_text
from core.inference.results import CANNOT_ASSESS, NO_TUMOUR_VERDICT, NOT_APPLICABLE, NOT_VALIDATED, Cause
from core.inference.uncertainty import BALD_REFER, ENTROPY_REFER, MARGIN_REFER
from core.tasks import TASKS, class_title, task_title

STATUS_TITLES = {
    "ok": "ok",
    "refer": "refer",
    CANNOT_ASSESS: "cannot assess",
    NOT_VALIDATED: "not validated",
    NOT_APPLICABLE: "not applicable",
}


@dataclass(frozen=True)
class TaskRow:
    """One task of a prediction as every view shows it."""

    task: str
    title: str  # "Tumour type"
    result: str  # "Glioma" | "Cannot assess" | "No validated model for Glioma grade" | ...
    probability: float | None  # of the result; None when the task gave no answer
    status: str  # TaskResult.status
    reason: str = ""  # why there is no answer
    read_on: str = ""  # the sequence(s) the model read, e.g. "FLAIR"

    @property
    def status_title(self) -> str:
        return STATUS_TITLES.get(self.status, self.status)


def task_row(res) -> TaskRow:
    title = task_title(res.task)
    if res.answered:
        return TaskRow(
            res.task, title, class_title(res.label), float(max(res.probabilities)), res.status, read_on=res.read_on
        )
    if res.status == NOT_VALIDATED:
        card = f"the model card of {res.model_version}" if res.model_version else "the model cards"
        return TaskRow(
            res.task,
            title,
            f"No validated model for {title}",
            None,
            res.status,
            f"{_sentence(res.note)} See {card} on the Models page.",
        )
    if res.status == NOT_APPLICABLE:
        return TaskRow(res.task, title, f"Not applicable: {res.note or NO_TUMOUR_VERDICT}", None, res.status)
    return TaskRow(res.task, title, "Cannot assess", None, res.status, _sentence(res.note))


def task_rows(pred) -> list[TaskRow]:
    return [task_row(res) for res in pred.tasks.values()]


def _sentence(text: str) -> str:
    text = str(text or "").strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def _lead(pred):
    """The first task of the cascade in the prediction (the one the verdict rests on)."""
    return next((pred.tasks[t] for t in TASKS if t in pred.tasks), next(iter(pred.tasks.values()), None))


def headline(pred) -> tuple[str, str | None, float | None]:
    """(verdict headline, the task that decided it, its calibrated probability)."""
    tasks = pred.tasks
    if not tasks:
        return "No prediction", None, None
    if pred.status == CANNOT_ASSESS:
        return "Cannot assess", _lead(pred).task, None
    presence = tasks.get("presence")
    if pred.verdict == NO_TUMOUR_VERDICT:
        if presence is not None and presence.answered:
            return "No tumour detected", "presence", float(max(presence.probabilities))
        return "No tumour detected", None, None
    typed = tasks.get("tumor_type")
    # a referred answer is not shown in large letters: the rows below still give it, small
    if presence is not None and presence.status == "refer":
        return "Possible tumour · uncertain, refer to a human reader", "presence", None
    if typed is not None and typed.status == "refer":
        return "Tumour detected · type uncertain, refer to a human reader", "tumor_type", None
    if typed is not None and typed.answered:
        text = class_title(typed.label)
        grade = tasks.get("grade")
        if grade is not None and grade.answered:
            text += f" · {class_title(grade.label)}"
        return text, "tumor_type", float(max(typed.probabilities))
    first = next((r for r in tasks.values() if r.answered), None)
    if first is None:
        return "No prediction", None, None
    return class_title(first.label), first.task, float(max(first.probabilities))


def headline_reason(pred) -> str:
    """Why there is no verdict ("" when there is one)."""
    if pred.status != CANNOT_ASSESS or not pred.tasks:
        return ""
    lead = _lead(pred)
    return f"{task_title(lead.task)}: {task_row(lead).reason or task_row(lead).result}"


def refer_messages(pred) -> list[str]:
    """The reasons to refer, each once, as plain text (views escape or style it): the input gate
    first, then each task's own reasons."""
    out = []
    ood = pred.ood or {}
    if ood.get("is_ood"):
        out.append(
            "Input: not an image these models can read — "
            + ("; ".join(ood.get("reasons") or []) or "out-of-distribution score high")
        )
    for task, res in pred.tasks.items():
        if res.cause == Cause.INPUT_REFUSED:  # said once above
            continue
        out += [f"{task_title(task)}: {why}" for why in res.refer_reasons]
    if pred.refer and not out:
        out.append("the model is not confident")
    return out


def slice_label(index: int, n: int) -> str:
    """The one way slices are named for people: "slice k of N", counted from 1."""
    return f"slice {int(index) + 1} of {int(n)}"


def thresholds_text(cards: Mapping[str, dict] | None = None) -> str:
    """The refer rule and the aggregation, with the numbers the code uses; with the active models'
    cards, each calibrated referral rule's measured operating point."""
    calibrated = {t: operating_point_text(c) for t, c in (cards or {}).items() if operating_point_text(c)}
    rule = " ".join(f"{task_title(t)}: {text}" for t, text in calibrated.items())
    fixed = (
        f"Refer to a human reader when the normalised entropy exceeds {ENTROPY_REFER:g}, the "
        f"top-2 margin is below {MARGIN_REFER:g}, MC-dropout BALD exceeds {BALD_REFER:g} "
        f"(when enabled)"
    )
    if calibrated:
        fixed = "Models without a calibrated rule refer " + fixed[len("Refer to a human reader ") :]
    return (
        f"{rule + ' ' if rule else ''}{fixed}. Inputs that the input gate does not recognise as "
        f"anatomical brain MRI are not assessed. "
        f"{slice_votes.rule_text(slice_votes.PRESENCE_THRESHOLD)} Type and grade weight those slices by "
        f"their evidence^{slice_votes.RELEVANCE_SHARPEN:g}. Probabilities are calibrated (temperature "
        f"scaling from each model card)."
    )
