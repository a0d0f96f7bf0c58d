"""Review queue: one item at a time, most informative first; confirm / correct / skip / flag.

Thin page: the queue order comes from core.active_learning, the decisions go through core.review
(optimistic versioning in core.store). The item on screen is pinned in session_state with the
version the reviewer saw, so a label saved by someone else in the meantime is reported as a
conflict with the current label, never silently overwritten.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from core import auth, review, viz
from core.active_learning import STRATEGIES
from core.config import get_settings
from core.markup import text
from core.tasks import class_title
from pages.common import current_user, get_repo, role_note, user_name

STRATEGY_LABELS = {
    "entropy": "entropy",
    "margin": "margin",
    "least_confidence": "least confidence",
    "bald": "BALD (MC dropout)",
    "random": "random",
    "coreset": "core-set (batch-aware)",
}
PIN = "review_current"
MESSAGE = "review_message"


@st.cache_resource(show_spinner="Loading the model for Grad-CAM...", max_entries=4)
def _cam_model(task: str, model_version: str, models_dir: str):
    return review.load_model(task, model_version)


def cam_model(task: str, model_version: str):
    """The model that made the item's prediction, cached per (task, version, zoo folder)."""
    return _cam_model(task, model_version, str(get_settings().models_dir))


def pinned_item(repo, task: str, strategy: str) -> review.ReviewItem | None:
    """The item on screen: the pinned one (with the version the reviewer saw) or the next in line."""
    pin = st.session_state.get(PIN)
    if pin and pin["task"] == task and pin["strategy"] == strategy:
        item = review.load_item(repo, pin["item_id"], task, strategy, pin.get("score"))
        return dataclasses.replace(item, version=pin["version"])
    item = review.next_item(repo, task, strategy, reviewer=user_name() or None)
    if item is not None:
        st.session_state[PIN] = {
            "task": task,
            "strategy": strategy,
            "item_id": item.item_id,
            "version": item.version,
            "score": item.score,
        }
    else:
        st.session_state.pop(PIN, None)
    return item


def _decide(action: str, label_key: str, comment_key: str) -> None:
    """Form callback: runs before the rerun, with the form's values in session_state."""
    pin = st.session_state.get(PIN)
    if not pin:
        return
    repo = get_repo()
    item = dataclasses.replace(
        review.load_item(repo, pin["item_id"], pin["task"], pin["strategy"]), version=pin["version"]
    )
    out = review.decide(
        repo,
        item,
        action,
        current_user(),
        value=st.session_state.get(label_key),
        comment=st.session_state.get(comment_key),
    )
    st.session_state[MESSAGE] = dataclasses.asdict(out)
    if out.ok:
        st.session_state.pop(PIN, None)
    elif out.conflict:  # keep the item on screen, now against the version the reviewer has been shown
        st.session_state[PIN] = {**pin, "version": out.current_version}


def _next() -> None:
    st.session_state.pop(PIN, None)
    st.session_state.pop(MESSAGE, None)


def show_message() -> None:
    msg = st.session_state.get(MESSAGE)
    if not msg:
        return
    if msg["conflict"]:  # messages quote labels and reviewer names: shown as text, never as Markdown
        st.error(text(msg["message"]), icon=":material/sync_problem:")
        st.markdown(
            f"Current label: **{text(msg['current_label'] or 'none')}**"
            + (f" — by {text(msg['current_reviewer'])}" if msg.get("current_reviewer") else "")
        )
    elif msg["ok"]:
        st.success(text(msg["message"]), icon=":material/check:")
    else:
        st.warning(text(msg["message"]), icon=":material/warning:")


def show_progress(repo, task: str) -> None:
    prog = repo.queue.progress(task)
    cols = st.columns(5)
    for col, key in zip(cols, ("total", "pending", "labelled", "flagged", "disputed")):
        col.metric(key.capitalize(), prog[key])
    if prog["by_class"]:
        st.caption("Labelled by class")
        st.bar_chart(prog["by_class"], horizontal=True, height=40 + 28 * len(prog["by_class"]))


def show_item(repo, item: review.ReviewItem, show_cam: bool) -> None:
    img01 = review.item_image01(repo, item.item_id)
    picture = img01 if img01.ndim == 2 else viz.to_uint8(img01)
    left, right = st.columns([3, 2])
    with left:
        title = f"item {item.item_id} · case {item.case_id} · slice {item.slice_index + 1}"
        if show_cam:
            loaded = cam_model(item.task, item.model_version) if item.model_version else None
            if loaded is None:
                st.caption(
                    f"No Grad-CAM: the model that made this prediction ({text(item.model_version or 'none')}) "
                    "is not in the zoo."
                )
            else:
                cls = item.classes.index(item.predicted) if item.predicted in item.classes else None
                picture, cls_name = review.item_cam(loaded, img01, item.task, cls)
                title += f" · Grad-CAM for {class_title(cls_name)}"  # a plotly title: text, not Markdown
        st.plotly_chart(
            viz.slice_figure(picture, title=title, height=420),
            key=f"review_fig_{item.item_id}",
            config={"displayModeBar": False},
        )
    with right:
        if item.probabilities:
            st.markdown(
                f"**Model**: {text(item.task)}@{text(item.model_version)} — suggests "
                f"**{text(class_title(item.predicted))}**"
            )
            st.plotly_chart(
                viz.probability_bars([class_title(c) for c in item.classes], item.probabilities),
                key="review_probs",
                config={"displayModeBar": False},
            )
        else:
            st.info("No prediction stored for this item yet.")
        facts = [f"queue status: {item.status}", f"version {item.version}"]
        if item.score is not None:
            facts.append(f"{STRATEGY_LABELS.get(item.strategy, item.strategy)} score {item.score:.3f}")
        if item.readings_required > 1:
            facts.append(f"double reading ({item.readings_required} readers)")
        if item.current_label:
            facts.append(f"current label: {item.current_label}")
        st.caption(" · ".join(text(f) for f in facts))
    strip = review.case_strip(repo, item.case_id, item.item_id)
    if len(strip) > 1:
        st.caption("Other slices of this case")
        st.image(
            [img for _, _, img in strip],
            width=84,
            caption=[("▶ " if i == item.item_id else "") + f"slice {s + 1}" for i, s, _ in strip],
        )


def decision_form(item: review.ReviewItem, reviewer: str) -> None:
    label_key, comment_key = f"review_label_{item.item_id}", f"review_comment_{item.item_id}"
    default = item.classes.index(item.predicted) if item.predicted in item.classes else 0
    with st.form("review_form", clear_on_submit=False, enter_to_submit=True, border=True):
        st.radio(
            "Label",
            item.classes,
            index=default,
            key=label_key,
            horizontal=True,
            format_func=lambda c: text(class_title(c)),
            help="Pre-set to the model's suggestion: Save confirms it, pick another class to correct it.",
        )
        st.text_input("Comment", key=comment_key, placeholder="optional; required to flag")
        c1, c2, c3 = st.columns(3)
        disabled = not reviewer
        c1.form_submit_button(
            "Save label",
            type="primary",
            disabled=disabled,
            use_container_width=True,
            on_click=_decide,
            args=("label", label_key, comment_key),
        )
        c2.form_submit_button(
            "Skip", disabled=disabled, use_container_width=True, on_click=_decide, args=("skip", label_key, comment_key)
        )
        c3.form_submit_button(
            "Flag", disabled=disabled, use_container_width=True, on_click=_decide, args=("flag", label_key, comment_key)
        )


def double_reading(repo, task: str, reviewer: str) -> None:
    with st.expander("Double reading and adjudication"):
        st.caption("Two reviewers read each item independently; disagreements are listed here.")
        if st.button("Require two readings for the pending items", key="review_double", disabled=not reviewer):
            n = repo.queue.set_double_reading(task, readings=2, actor=auth.authorize(current_user(), "label"))
            st.success(f"{n} pending items now need two readings.")
        rows = repo.queue.disagreements(task)
        if rows:
            st.dataframe(
                [
                    {
                        "item": r["item_id"],
                        "case": r["case_id"],
                        "readings": ", ".join(f"{k}: {v}" for k, v in r["readings"].items()),
                    }
                    for r in rows
                ],
                hide_index=True,
            )
        else:
            st.caption("No disagreements.")
        flagged = repo.queue.flagged(task)
        if flagged:
            st.caption("Flagged")
            st.dataframe([{"item": e.item_id, "comment": e.comment} for e in flagged], hide_index=True)


def main() -> None:
    st.title("Review queue")
    repo = get_repo()
    user = current_user()
    if user is None or not user.can("label"):  # the queue is for those who may label
        st.info(role_note("label"), icon=":material/lock:")
        return
    reviewer = user.name
    known = repo.queue.tasks()
    tasks = [t for t in review.TASKS if t in known] + [t for t in review.TASKS if t not in known]
    c1, c2, c3 = st.columns([2, 2, 1])
    task = c1.selectbox("Task", tasks, key="review_task")
    strategy = c2.selectbox(
        "Order by", STRATEGIES, key="review_strategy", format_func=lambda s: STRATEGY_LABELS.get(s, s)
    )
    show_cam = c3.toggle("Grad-CAM", key="review_cam", help="heat map of what drove the model's suggestion")
    show_progress(repo, task)
    show_message()
    item = pinned_item(repo, task, strategy)
    if item is None:
        st.info(
            f"Nothing left to review for {task}"
            + (f", {text(reviewer)}" if reviewer else "")
            + ". Import a pool (`python -m core queue import PATH`) or send scans from the Scan page.",
            icon=":material/inbox:",
        )
    else:
        show_item(repo, item, show_cam)
        decision_form(item, reviewer)
        if st.session_state.get(MESSAGE, {}).get("conflict"):
            st.button("Next item", on_click=_next, key="review_next")
    double_reading(repo, task, reviewer)


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
