"""The verdict card and the slice-by-slice strip of the scan page (a panel, not a navigation page:
app.py lists pages). They draw a `core.case.Case`'s prediction in the words of `core.inference.verdict`.
"""

from __future__ import annotations

import streamlit as st

from core import viz
from core.case import Case
from core.inference import CANNOT_ASSESS, NOT_VALIDATED, PRESENCE_THRESHOLD
from core.inference.referral import operating_point_text
from core.inference.verdict import headline, headline_reason, refer_messages, task_rows, thresholds_text
from core.markup import text
from core.tasks import class_title, task_title
from pages.viewer_panel import axial_key

DISCLAIMER = (
    "Research use only — not a medical device. NeuroGrade supports, and never replaces, "
    "the judgement of a qualified clinician."
)

# ----------------------------------------------------------------------------------- verdict
STATUS_FLAGS = {
    "ok": ":green[ok]",
    "refer": ":orange[refer]",
    CANNOT_ASSESS: ":red[cannot assess]",
    NOT_VALIDATED: ":gray[not validated]",
    "not_applicable": ":gray[not applicable]",
}


def _task_table(pred) -> str:
    """One row per task, in the words of core.inference.verdict (no numbers for a task without an answer)."""
    rows = ["| | Result | Probability | Entropy | Margin | Read on | |", "|---|---|---:|---:|---:|---|---|"]
    for row, res in zip(task_rows(pred), pred.tasks.values()):
        u = res.uncertainty
        numbers = (
            f"{row.probability:.1%} | {u.get('entropy_norm', 0.0):.2f} | {u.get('margin', 0.0):.2f}"
            if row.probability is not None
            else "— | — | —"
        )
        rows.append(
            f"| {row.title} | {row.result} | {numbers} | {row.read_on or '—'} | "
            f"{STATUS_FLAGS.get(row.status, row.status)} |"
        )
    return "\n".join(rows)


def _badge(pred) -> str:
    if pred.status == CANNOT_ASSESS:
        return ":red-badge[:material/block: Cannot assess]"
    if pred.refer:
        return ":orange-badge[:material/front_hand: Refer to a human reader]"
    return ":green-badge[:material/check_circle: Within the confidence thresholds]"


def render_task_answers(pred) -> None:
    """Per task: its probability bars, or why it gives no answer (a task without a validated model
    points to its card on the Models page)."""
    for row, r in zip(task_rows(pred), pred.tasks.values()):
        st.markdown(
            f"**{row.title}** <span style='color:#6b7785;font-size:0.8em'>{text(r.model_version)}</span>",
            unsafe_allow_html=True,
        )
        if r.answered:
            fig = viz.probability_bars(
                [class_title(c) for c in r.classes],
                r.probabilities,
                highlight=class_title(r.label),
                height=36 + 30 * len(r.classes),
            )
            st.plotly_chart(fig, key=f"bars_{r.task}", config={"displayModeBar": False})
        elif r.status == NOT_VALIDATED:
            st.info(f"**{row.result}.** {row.reason}", icon=":material/block:")
        else:
            st.caption(row.result + (f" — {row.reason}" if row.reason else ""))


def render_technical_details(pred, predictor=None) -> None:
    """Model versions, precision, device, timing, the thresholds and the notes: collapsed."""
    with st.expander("Technical details", expanded=False):
        versions = (
            " · ".join(
                f"`{v}`" if "`" not in str(v) else text(v)  # a code span shows text as is
                for v in pred.model_versions.values()
            )
            or "none"
        )
        precision = ", ".join(sorted(set(pred.precision.values()))) or "fp32"
        st.caption(
            f"Models: {versions} · {precision} on {pred.device} · "
            f"{pred.timings_ms.get('total', 0.0) / 1e3:.2f} s for {pred.n_slices} "
            f"slice{'s' if pred.n_slices != 1 else ''}"
        )
        st.caption(thresholds_text({t: m.card for t, m in predictor.models.items()} if predictor else None))
        for note in pred.notes:
            note = note.replace(
                "name the channels of multi-channel input with sequences=",
                "for a multi-channel image, name its channels above",
            )
            st.caption(f":material/info: {note}")  # the predictor's own words (core), not user text


def render_verdict(case: Case) -> None:
    """Verdict card: the refer banner with its reasons, the verdict (or why there is none) with its
    calibrated probability and uncertainty, a row per task, each task's answer, then the
    technical details (collapsed)."""
    pred, predictor = case.prediction, case.predictor
    st.subheader("Verdict")
    if pred.refer:
        why = (
            "the models cannot assess this scan"
            if pred.status == CANNOT_ASSESS
            else "the model is unsure or the scan is unlike its training data"
        )
        st.warning(
            f"**Refer to a human reader.** {why[0].upper() + why[1:]}:\n\n"
            + "\n".join(f"- {text(m)}" for m in refer_messages(pred)),
            icon=":material/front_hand:",
        )
    title, task, prob = headline(pred)
    with st.container(border=True):
        left, right = st.columns([1.15, 1], gap="large")
        with left:
            st.markdown(f"## {text(title)}\n{_badge(pred)}")
            reason = headline_reason(pred)
            if reason:  # may quote the file's header (e.g. its body part)
                st.error(text(reason, None), icon=":material/block:")
            res = pred.tasks.get(task) if task else None
            if res is not None and prob is not None:
                u = res.uncertainty
                m1, m2, m3 = st.columns(3)
                point = (
                    operating_point_text(predictor.model(task).card) if predictor and task in predictor.models else None
                )
                m1.metric(
                    "Probability",
                    f"{prob:.1%}",
                    help=f"{task_title(task)}: calibrated probability of '{class_title(res.label)}' "
                    "(temperature scaling from the model card). " + (point or ""),
                )
                m2.metric(
                    "Entropy",
                    f"{u.get('entropy_norm', 0.0):.2f}",
                    help="uncertainty: predictive entropy / log(number of classes); 0 = certain, 1 = uniform",
                )
                m3.metric("Margin", f"{u.get('margin', 0.0):.2f}", help="top-1 minus top-2 class probability")
            if pred.tasks:
                st.markdown(_task_table(pred))
        with right:
            render_task_answers(pred)
        st.caption(DISCLAIMER)
    render_technical_details(pred, predictor)


def _strip_selected(strip_key: str, pos_key: str, n: int) -> None:
    """on_select callback: the clicked slice becomes the viewer's axial slice (before the rerun,
    so the axial slider is created with it)."""
    i = viz.selected_slice(st.session_state.get(strip_key), n)
    if i is not None:
        st.session_state[pos_key] = i + 1


def render_slice_strip(case: Case, vkey: str) -> None:
    """P(tumour) and class probabilities per axial slice; a click moves the viewer there."""
    pred = case.prediction
    n = len(pred.slices)
    if n <= 1:
        return
    pos_key = axial_key(vkey)
    current = int(st.session_state.get(pos_key, n // 2 + 1)) - 1
    task = next((t for t in ("tumor_type", "grade") if pred.slices and t in pred.slices[0]), None)
    classes = [class_title(c) for c in case.classes(task)] if task else None
    fig = viz.slice_strip(
        pred.slices,
        task=task,
        classes=classes,
        current=current,
        key_slices=pred.key_slices,
        threshold=PRESENCE_THRESHOLD,
    )
    st.markdown("**Slice by slice**")
    strip_key = f"strip_{vkey}"
    st.plotly_chart(
        fig,
        key=strip_key,
        on_select=lambda: _strip_selected(strip_key, pos_key, n),
        selection_mode="points",
        config={"displayModeBar": False},
    )
    st.caption(
        f"Bars: P(tumour) per axial slice (the slice's weight in the verdict; dotted line "
        f"{PRESENCE_THRESHOLD:g}). Lines: {task_title(task).lower() if task else 'class'} "
        f"probabilities on the slices that weigh in the verdict (the type and grade models read "
        f"only those). ★ key slices. Click a slice to show it in the viewer."
    )
