"""Train: fine-tune a model on the confirmed review labels as a background job, with live curves,
cancel, and the challenger beside the champion when it finishes.

Thin page: jobs are rows in the store (core.store), the worker is `python -m core train-job ID`
(core.training.job), the comparison is core.promotion.compare. Everything shown comes from the
store, so leaving and reopening the page (or restarting the server) shows each job where it is.
"""

from __future__ import annotations

import streamlit as st

from core import auth, viz
from core.markup import text
from core.promotion import MINIMUMS, PromotionError, compare
from core.research.transfer_study import advise_for_training
from core.tasks import label_classes
from core.training import job as training_job
from core.zoo import active_version, list_checkpoints
from pages.common import current_user, get_repo, role_note

TASKS = ("tumor_type", "presence", "grade")
STRATEGIES = {
    "head": "head only (seconds: backbone frozen)",
    "blockwise": "block-wise (head, then the top blocks one by one)",
    "full": "full network (slowest)",
}
ACTIVE_STATUSES = ("queued", "running")
SELECTED = "train_job_id"


def versions(task: str) -> tuple[list[str], str | None]:
    return [c.version for c in list_checkpoints(task)], active_version(task)


def start_form(repo) -> None:
    st.subheader("New training run")
    user = current_user()
    can_train = bool(user and user.can("train"))
    task = st.selectbox("Task", TASKS, key="train_task")
    names, active = versions(task)
    prog = repo.queue.progress(task)
    st.caption(
        text(
            f"{prog['labelled']} confirmed labels for {task}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in prog['by_class'].items())})" if prog["by_class"] else ""),
            None,
        )
    )
    _small_sample_note(task, prog)
    advisor(repo, task)
    options = names or ["(none: random initialisation)"]
    if st.session_state.get("train_base") not in options:  # another task's choice, or none yet
        st.session_state.pop("train_base", None)
    base_kw = {} if "train_base" in st.session_state else {"index": names.index(active) if active in names else 0}
    with st.form("train_form", enter_to_submit=False):
        base = st.selectbox(
            "Base model",
            options,
            key="train_base",
            format_func=lambda v: f"{v} (active)" if v == active else v,
            **base_kw,
        )
        strategy = st.radio("Fine-tuning", list(STRATEGIES), format_func=STRATEGIES.get, key="train_strategy")
        epochs = st.number_input("Epochs", min_value=1, max_value=200, value=3, step=1, key="train_epochs")
        balance = (
            st.checkbox(
                "Balance with synthetic features",
                key="train_balance_synthetic",
                help="Head only: before the head trains, feature-ACGAN vectors top up the minority "
                "classes of the training split (never the held-out data).",
            )
            if st.session_state.get("train_strategy", "head") == "head"
            else False
        )
        submitted = st.form_submit_button("Start training", type="primary", disabled=not can_train)
    if not can_train:
        st.caption(role_note("train"))
    if submitted:
        params = {"task": task, "base": base if base in names else None, "strategy": strategy, "epochs": int(epochs)}
        if strategy == "head" and balance:
            params["balance_synthetic"] = True
        try:
            job_id = training_job.create_training_job(repo, params, current_user())
            training_job.launch_training_job(job_id, repo=repo)
        except (ValueError, OSError) as exc:
            st.error(text(f"Could not start: {exc}", None))
            return
        st.session_state[SELECTED] = job_id
        st.success(f"Job {job_id} started.")


def _small_sample_note(task: str, prog: dict) -> None:
    """Say before a run when the labels are too few for its result to be compared (core.promotion)."""
    counts = {c: int(prog["by_class"].get(c, 0)) for c in label_classes(task)[:8]}
    short = {c: n for c, n in counts.items() if n < MINIMUMS.labels_per_class}
    if short:
        st.warning(
            text(
                f"Too few labels to compare a retrained model with the champion: a comparison needs "
                f"{MINIMUMS.labels_per_class} confirmed labels of each class and {MINIMUMS.held_out} "
                f"held-out items ({MINIMUMS.held_out_per_class} of each class); below that a run "
                "trains but its result is not compared and no metrics are shown.",
                None,
            ),
            icon=":material/warning:",
        )


def _run_advisor(repo, task: str) -> None:
    """Button callback (runs before the page reruns, so it may pre-fill the form's widgets)."""
    try:
        result = advise_for_training(task, repo)
    except (ValueError, OSError) as exc:
        st.session_state[f"train_advice_{task}"] = {"error": str(exc)}
        return
    st.session_state[f"train_advice_{task}"] = result
    best = result.get("best")
    if result.get("best_version"):
        st.session_state["train_base"] = result["best_version"]
    if best and best.get("suggested_strategy") in STRATEGIES:
        st.session_state["train_strategy"] = best["suggested_strategy"]


def advisor(repo, task: str) -> None:
    """Which base model, and how many blocks to unfreeze: LogME ranking, on click only."""
    key = f"train_advice_{task}"
    result = st.session_state.get(key)
    with st.expander("Advisor: which base model, how many blocks", expanded=result is not None):
        st.caption(
            "Ranks this task's zoo versions and random initialisation by LogME of their frozen "
            "features on your confirmed labels (or the task's shared data when there are too few), "
            "at most 300 images, before any fine-tuning."
        )
        st.button(
            "Rank base models", key="train_advise", icon=":material/insights:", on_click=_run_advisor, args=(repo, task)
        )
        if result is None:
            return
        if "error" in result:
            st.warning(text(f"No advice: {result['error']}", None))
            return
        st.caption(text(f"Scored on {result['source']} ({result['n_images']} images).", None))
        st.dataframe(
            [
                {
                    "candidate": r["candidate"],
                    "LogME": round(r["score"], 4),
                    "suggested strategy": r["suggested_strategy"],
                    "blocks to unfreeze": r["suggested_unfreeze_blocks"],
                }
                for r in result["rows"]
                if r.get("rank") is not None
            ],
            hide_index=True,
        )
        best = result.get("best")
        if best is None:
            st.warning("No candidate could be scored.")
        elif result.get("best_version"):
            st.success(
                f"Suggested: base {text(task)}@{text(result['best_version'])}, {text(best['suggested_strategy'])}"
                + (
                    f", unfreeze {best['suggested_unfreeze_blocks']} block(s)"
                    if best["suggested_unfreeze_blocks"]
                    else ""
                )
                + " (pre-filled below)."
            )
        else:
            st.info(
                "Random initialisation scores highest: the zoo's features add little on this data. "
                "The form keeps its base model; expect little from transfer."
            )


def _job_label(job) -> str:
    p = job.params
    return f"#{job.id} · {p.get('task')} · {p.get('strategy')} · {p.get('epochs')} ep · {job.status}" + (
        f" ({job.progress:.0%})" if job.status == "running" else ""
    )


def pick_job(repo):
    jobs = repo.jobs.recent(kind="train", limit=30)
    if not jobs:
        st.info("No training runs yet.", icon=":material/model_training:")
        return None
    ids = [j.id for j in jobs]
    chosen = st.session_state.get(SELECTED)
    if chosen not in ids:
        chosen = next((j.id for j in jobs if j.status in ACTIVE_STATUSES), ids[0])
    by_id = {j.id: j for j in jobs}
    job_id = st.selectbox(
        "Run", ids, index=ids.index(chosen), format_func=lambda i: _job_label(by_id[i]), key="train_pick"
    )
    st.session_state[SELECTED] = job_id
    return job_id


def show_comparison(job) -> None:
    task, version = job.params.get("task"), job.metrics.get("version")
    if not version:
        return
    try:
        cmp = compare(task, version, job.metrics.get("champion"), repo=get_repo())
    except PromotionError as exc:
        st.warning(text(f"Cannot compare: {exc}", None))
        return
    st.markdown(f"#### Challenger {text(task)}@{text(version)} vs champion {text(task)}@{text(cmp.champion or '-')}")
    if not cmp.comparable:  # e.g. too few held-out items (core.promotion.MINIMUMS): no metrics at all
        st.warning(text(cmp.reason, None))
        return
    st.caption(text(f"Both scored on: {cmp.split} (split fingerprint {str(cmp.fingerprint)[:12]})", None))
    st.plotly_chart(
        viz.metric_comparison_figure(cmp.metrics), key=f"train_cmp_{job.id}", config={"displayModeBar": False}
    )
    st.dataframe(
        [
            {
                "metric": r["metric"]
                + (" (patient)" if r["level"] == "patient" else "")
                + (" ★" if r["primary"] else ""),
                "challenger": r["challenger"],
                "95% CI": _ci(r["challenger_ci"]),
                "champion": r["champion"],
                "95% CI ": _ci(r["champion_ci"]),
                "delta": r["delta"],
            }
            for r in cmp.metrics
        ],
        hide_index=True,
    )
    if cmp.per_class:
        st.dataframe(
            [{"class": c, **{f"Δ {k}": v["delta"] for k, v in m.items()}} for c, m in cmp.per_class.items()],
            hide_index=True,
        )
    classes = cmp.confusion.get("classes") or []
    c1, c2 = st.columns(2)
    c1.plotly_chart(
        viz.confusion_figure(cmp.confusion.get("challenger"), classes, "challenger"),
        key=f"train_cm_a_{job.id}",
        config={"displayModeBar": False},
    )
    c2.plotly_chart(
        viz.confusion_figure(cmp.confusion.get("champion"), classes, "champion"),
        key=f"train_cm_b_{job.id}",
        config={"displayModeBar": False},
    )
    (st.success if cmp.beats else st.warning)(
        ("Beats the champion: " if cmp.beats else "Does not beat the champion: ") + cmp.reason
    )
    st.caption("Promote it (or not) on the **Models** page: the active model changes only by promotion.")


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else ""


def _cancel(job_id: int) -> None:
    get_repo().jobs.request_cancel(job_id, actor=auth.authorize(current_user(), "train"))


def job_panel(job_id: int) -> None:
    """Everything about one job, read fresh from the store."""
    repo = get_repo()
    repo.jobs.reap_dead()
    job = repo.jobs.get(job_id)
    phase = job.metrics.get("phase", "")
    st.progress(job.progress, text=f"{job.status}" + (f" · {phase}" if phase else "") + f" · {job.progress:.0%}")
    if job.status in ACTIVE_STATUSES:
        if job.cancel_requested:
            st.caption("Cancel requested: the run stops at its next step.")
        else:
            st.button(
                "Cancel run",
                key=f"train_cancel_{job.id}",
                icon=":material/stop_circle:",
                on_click=_cancel,
                args=(job.id,),
            )
    history = job.metrics.get("history") or []
    if history:
        st.plotly_chart(viz.training_curves(history), key=f"train_curves_{job.id}", config={"displayModeBar": False})
    if job.status == "failed":
        st.error(
            f"The run failed: {text(job.metrics.get('error') or 'the worker stopped without a result', None)}. "
            "The active model is unchanged."
        )
    elif job.status == "cancelled":
        st.info("The run was cancelled. The active model is unchanged.")
    elif job.status == "succeeded":
        show_comparison(job)
    with st.expander("Log", expanded=job.status == "failed"):
        st.code(job.log_tail[-3000:] or "(empty)", language=None)


@st.fragment(run_every=2)
def live_job_panel(job_id: int) -> None:
    job_panel(job_id)
    job = get_repo().jobs.get(job_id)
    if job.status not in ACTIVE_STATUSES and st.session_state.get("_train_was_live") == job_id:
        st.session_state.pop("_train_was_live", None)
        st.rerun()  # the run ended: redraw the whole page once (job list, comparison)


def main() -> None:
    st.title("Train")
    user = current_user()
    if user is None or not user.can("train"):
        st.info(role_note("train"), icon=":material/lock:")
        return
    repo = get_repo()
    left, right = st.columns([1, 2], gap="large")
    with left:
        start_form(repo)
    with right:
        st.subheader("Runs")
        job_id = pick_job(repo)
        if job_id is not None:
            if repo.jobs.get(job_id).status in ACTIVE_STATUSES:
                st.session_state["_train_was_live"] = job_id
                live_job_panel(job_id)
            else:
                job_panel(job_id)


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
