"""Models: the zoo's versions with their cards; promote a challenger or roll back.

Thin page: versions and cards come from model_zoo, promotion and rollback go through
core.promotion (the one path: it compares on the shared locked test split, records the champion,
history and audit in the store and derives the zoo's active.json, which inference reads, from it);
then core.review re-scores the review queue. The Scan page reads the active version on its next
run, without a restart.
"""

from __future__ import annotations

import streamlit as st

from core import review, viz
from core.cards import ModelCard
from core.inference.referral import gate_text, operating_point_text
from core.inference.validity import model_validity
from core.markup import text
from core.promotion import PromotionError, PromotionRefused, compare, history, promote, rollback
from core.tasks import primary_metric, task_title
from core.training.card_text import results_summary
from core.zoo import active_version, list_checkpoints
from pages.common import can, current_user, get_repo, role_note

TASKS = ("tumor_type", "presence", "grade")
MESSAGE = "models_message"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else ""


def metric_rows(card: ModelCard) -> list[dict]:
    """Locked-test metrics (slice and patient level) and the CV mean, each with its 95% CI."""
    primary, level = primary_metric(str(card.task))
    rows = []
    test = card.metrics.test or {}
    for lvl, block in (("slice", test), ("patient", test.get("patient") or {})):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
            if isinstance(block.get(key), (int, float)):
                rows.append(
                    {
                        "split": "locked test" + (" (patient)" if lvl == "patient" else ""),
                        "metric": key + (" ★" if key == primary and lvl == level else ""),
                        "value": _fmt(block[key]),
                        "95% CI": _ci((block.get("ci95") or {}).get(key)),
                    }
                )
    cv = card.metrics.cv or {}
    for key, value in (cv.get("mean") or {}).items() if isinstance(cv.get("mean"), dict) else []:
        if isinstance(value, (int, float)):
            rows.append(
                {
                    "split": f"cross-validation ({cv.get('folds', '?')} folds)",
                    "metric": key,
                    "value": _fmt(value),
                    "95% CI": _ci((cv.get("ci95") or {}).get(key)),
                }
            )
    return rows


def show_safety(task: str, ckpt) -> None:
    """The referral rule's and the input gate's measured operating points."""
    card = ModelCard.of(ckpt)
    point, gate = operating_point_text(card), gate_text(card)
    if point:
        st.markdown(f"**When it refers.** {point}")
        st.plotly_chart(
            viz.risk_coverage_figure([dict(p) for p in card.referral.risk_coverage], card.referral.max_percentile),
            key=f"models_rc_{task}_{ckpt.version}",
            config={"displayModeBar": False},
        )
    if gate:
        st.markdown(f"**What it refuses.** {gate}")
    command = (card.referral or card.gate).command if point or gate else None
    if command:
        st.code(command, language="bash")


def show_card(task: str, ckpt, active: str | None) -> None:
    card = ModelCard.of(ckpt)
    flag = " · **active**" if ckpt.version == active else ""
    st.markdown(f"### {text(task)}@{text(ckpt.version)}{flag}")
    st.caption(
        text(
            f"{card.architecture} · {card.input.size} px · {card.input.channels} channel(s) · classes "
            f"{', '.join(card.classes)} · created {(card.created or '')[:19]} · parent {card.parent or '-'} · "
            f"{ckpt.source}"
        )
    )
    valid, why = model_validity(card)
    if not valid:  # the Scan page's "No validated model" points here
        st.warning(
            f"**Not validated.** While this version is active the Scan page shows no "
            f"{task_title(task).lower()} result: {text(why)}.",
            icon=":material/block:",
        )
    rows = metric_rows(card)
    if rows:
        st.dataframe(rows, hide_index=True)
    else:
        st.caption("No held-out metrics in this card.")
    test = card.metrics.test or {}
    if test.get("confusion"):
        st.plotly_chart(
            viz.confusion_figure(test["confusion"], list(card.classes), "locked test"),
            key=f"models_cm_{task}_{ckpt.version}",
            config={"displayModeBar": False},
        )
    show_safety(task, ckpt)
    summary = results_summary(card)
    if summary:
        st.markdown("**Held-out results.**\n" + "\n".join(f"- {text(x)}" for x in summary))
    if card.intended_use:  # card text (a user-trained card too): shown as text
        st.markdown(f"**Intended use.** {text(card.intended_use, limit=4000)}")
    if card.limitations:
        st.markdown("**Limitations.**\n" + "\n".join(f"- {text(x)}" for x in card.limitations))
    if card.training_data:
        st.caption(
            "Training data: "
            + text(
                "; ".join(f"{d.name} ({d.n_images} images, {d.n_patients} patients)" for d in card.training_data), None
            )
        )
    if card.command:
        st.code(card.command, language="bash")


def _promote(task: str, version: str, force: bool) -> None:
    reason = st.session_state.get(f"models_reason_{task}", "")
    try:
        res = promote(task, version, current_user(), force=force, reason=reason or None, repo=get_repo())
    except PromotionRefused as exc:
        st.session_state[MESSAGE] = ("error", f"{task}@{version} was not promoted — {exc}")
    except PromotionError as exc:
        st.session_state[MESSAGE] = ("error", str(exc))
    else:
        rescore = review.refresh_queue_scores(task, res.version, get_repo())
        st.session_state[MESSAGE] = (
            "success",
            f"{task}@{res.version} is now active (was {res.previous or '-'})"
            + (" — forced" if res.forced else "")
            + ". "
            + review.rescore_note(rescore),
        )


def _rollback(task: str) -> None:
    try:
        res = rollback(
            task, current_user(), reason=st.session_state.get(f"models_reason_{task}") or None, repo=get_repo()
        )
    except PromotionError as exc:
        st.session_state[MESSAGE] = ("error", str(exc))
    else:
        rescore = review.refresh_queue_scores(task, res.version, get_repo())
        st.session_state[MESSAGE] = (
            "success",
            f"{task} rolled back: {res.version} is active again (was {res.previous}). " + review.rescore_note(rescore),
        )


def promotion_panel(task: str, version: str, active: str | None) -> None:
    if version == active:
        st.caption("This is the active version.")
    else:
        try:
            cmp = compare(task, version, active, repo=get_repo())
        except PromotionError as exc:
            st.warning(text(exc, None))
            cmp = None
        if cmp is not None and cmp.comparable:
            st.markdown(f"**Against the active version {text(task)}@{text(active)}** — {text(cmp.split)}")
            st.plotly_chart(
                viz.metric_comparison_figure(cmp.metrics),
                key=f"models_cmp_{task}_{version}",
                config={"displayModeBar": False},
            )
        if cmp is not None:
            (st.success if cmp.beats else st.warning)(text(cmp.reason, None))
        if can("promote"):  # only the roles that may promote see the controls
            st.button(
                f"Promote {version}",
                type="primary",
                key=f"models_promote_{task}",
                on_click=_promote,
                args=(task, version, False),
            )
        if can("force_promote"):
            with st.expander("Promote anyway (override)"):
                st.caption("A forced promotion needs a reason; both are kept in the audit log.")
                st.text_input("Reason", key=f"models_reason_{task}")
                st.button("Force promotion", key=f"models_force_{task}", on_click=_promote, args=(task, version, True))
    if not can("promote"):
        st.caption(role_note("promote"))


def history_panel(task: str) -> None:
    repo = get_repo()
    stack = repo.models.champion_history(task)
    if can("rollback"):
        st.button(
            "Roll back to the previous champion",
            key=f"models_rollback_{task}",
            disabled=len(stack) < 2,
            on_click=_rollback,
            args=(task,),
            help=f"back to {stack[-2]}" if len(stack) >= 2 else "no earlier promoted version",
        )
    rows = history(task, repo)
    if rows:
        st.dataframe(
            [
                {
                    "when": str(r["at"])[:19],
                    "who": r["actor"],
                    "action": r["action"],
                    "from": r["from"],
                    "to": r["to"],
                    "reason": r["reason"],
                }
                for r in rows
            ],
            hide_index=True,
        )
    else:
        st.caption("No promotions recorded yet.")


def main() -> None:
    st.title("Models")
    msg = st.session_state.pop(MESSAGE, None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(text(msg[1], None))
    task = st.selectbox("Task", TASKS, key="models_task")
    ckpts = list_checkpoints(task)
    if not ckpts:
        st.info(
            f"No {task} versions yet: train one (`python -m core train --recipe {task}`) or retrain on the Train page.",
            icon=":material/deployed_code:",
        )
        return
    active = active_version(task)
    st.dataframe(
        [
            {
                "active": "●" if c.version == active else "",
                "version": c.version,
                "architecture": c.architecture,
                "source": c.source,
                "created": c.created[:19],
                "parent": ModelCard.of(c).parent,
            }
            for c in ckpts
        ],
        hide_index=True,
    )
    names = [c.version for c in ckpts]
    challengers = [v for v in names if v != active]
    default = challengers[-1] if challengers else active
    version = st.selectbox(
        "Version",
        names,
        index=names.index(default),
        key=f"models_version_{task}",
        format_func=lambda v: f"{v} (active)" if v == active else v,
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        show_card(task, next(c for c in ckpts if c.version == version), active)
    with right:
        st.markdown("#### Promotion")
        promotion_panel(task, version, active)
        st.markdown("#### History")
        history_panel(task)


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
