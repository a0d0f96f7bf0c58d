"""Research: the studies behind NeuroGrade's methods, on real data, each with its chart, its table,
the command that reproduces it and a button that re-runs it as a background job.

Thin page: results are JSON files (core.research.studies: committed under research/results/,
re-runs under NEUROGRADE_HOME/research/), figures come from core.viz, jobs from core.store.
"""

from __future__ import annotations

import datetime as dt

import streamlit as st

from core import viz
from core.research import studies
from pages.common import can, current_user, get_repo

ACTIVE = ("queued", "running")
TASKS = {
    "al": ("grade", "tumor_type"),
    "transferability": ("grade", "tumor_type"),
    "acgan": ("tumor_type",),
    "grade_baseline": ("grade",),
}


def pick_result(study: str) -> dict | None:
    found = studies.list_results(study)
    if not found:
        return None
    labels = [f"{r['name']} ({r['origin']}, {dt.datetime.fromtimestamp(r['mtime']):%Y-%m-%d %H:%M})" for r in found]
    i = st.selectbox("Result", range(len(found)), format_func=labels.__getitem__, key=f"res_{study}")
    try:
        return studies.load_result(found[i]["path"])
    except (OSError, ValueError) as exc:
        st.error(f"Cannot read {found[i]['path']}: {exc}")
        return None


def show_command(result: dict) -> None:
    if result.get("command"):
        st.caption("Reproduce with:")
        st.code(result["command"], language="bash")
    meta = [
        f"created {result['created']}" if result.get("created") else None,
        f"{result['seconds']:.0f} s" if result.get("seconds") is not None else None,
    ]
    bb = result.get("backbone") or {}
    if bb.get("ref"):
        meta.append(f"features: {bb['ref']}" + (f" - {bb['why']}" if bb.get("why") else ""))
    st.caption(" · ".join(m for m in meta if m))


def rerun_form(study: str) -> None:
    if not can("train"):  # a re-run is a training-scale job: trainer and admin only
        return
    with st.expander("Re-run as a background job"):
        with st.form(f"rerun_{study}", enter_to_submit=False):
            task = st.selectbox("Task", TASKS[study], key=f"rerun_task_{study}")
            params: dict = {"task": task}
            if study == "al":
                params["seeds"] = str(st.number_input("Seeds", 1, 20, 5, key="rerun_al_seeds"))
                params["strategies"] = ",".join(
                    st.multiselect(
                        "Strategies",
                        ["entropy", "margin", "least_confidence", "bald", "coreset", "random"],
                        default=["entropy", "margin", "least_confidence", "bald", "coreset", "random"],
                        key="rerun_al_strats",
                    )
                )
            elif study == "acgan":
                params["minority"] = st.selectbox(
                    "Minority class (cut in training only)", ["meningioma", "pituitary"], key="rerun_acgan_min"
                )
                params["fraction"] = st.number_input(
                    "Fraction of its patients kept", 0.05, 1.0, 0.1, 0.05, key="rerun_acgan_frac"
                )
                params["seeds"] = str(st.number_input("Seeds", 1, 10, 3, key="rerun_acgan_seeds"))
            elif study == "transferability":
                cap = st.number_input("Cap slices (whole patients; 0 = all)", 0, 10000, 0, 100, key="rerun_tr_cap")
                params["max_slices"] = int(cap) or None
            st.caption(
                "`"
                + studies.command_line(
                    studies.study_argv(study, params, f"<home>/research/{studies.STUDIES[study]['prefix']}{task}.json")
                )
                + "`"
            )
            go = st.form_submit_button("Start", type="primary")
        if go:
            try:
                job_id, out = studies.launch_study(study, params, actor=current_user(), repo=get_repo())
            except (ValueError, OSError) as exc:
                st.error(f"Could not start: {exc}")
            else:
                st.success(f"Job {job_id} started; it writes {out}.")


def al_section() -> None:
    st.markdown(
        "Transfer learning + active learning (Hao et al. 2020): a frozen backbone of another task "
        "gives features once; each round a logistic head is trained on the labelled slices and the "
        "strategy picks the next slices from the pool, whose labels stay hidden until queried. "
        "Scored on a fixed patient-disjoint test set."
    )
    result = pick_result("al")
    if result is None:
        st.info("No active-learning result yet.", icon=":material/science:")
    else:
        level = st.radio(
            "AUC level",
            ["patient_auc", "slice_auc"],
            horizontal=True,
            key="al_level",
            format_func=lambda v: "patient" if v == "patient_auc" else "slice",
        )
        for line in studies.al_headline(result, level):
            st.markdown("- " + line)
        st.plotly_chart(viz.al_curve_figure(result, level), key="al_chart", config={"displayModeBar": False})
        st.dataframe(studies.al_table(result, level), hide_index=True)
        show_command(result)
        with st.expander("Protocol"):
            st.json({k: result.get(k) for k in ("protocol", "pool", "test", "backbone") if k in result}, expanded=False)
    rerun_form("al")


def transferability_section() -> None:
    st.markdown(
        "Which base model transfers best? LogME, H-score (features) and LEEP, NCE (source head) are "
        "computed before any fine-tuning and checked against head-only fine-tuned accuracy "
        "(patient-grouped CV) with Kendall / Spearman."
    )
    result = pick_result("transferability")
    if result is None:
        st.info("No transferability result yet.", icon=":material/science:")
    else:
        score = st.radio("Score", ["logme", "h_score", "leep", "nce"], horizontal=True, key="tr_score")
        st.plotly_chart(viz.transferability_figure(result, score), key="tr_chart", config={"displayModeBar": False})
        st.dataframe(studies.agreement_table(result), hide_index=True)
        st.dataframe(studies.transferability_table(result), hide_index=True)
        if result.get("advice"):
            top = result["advice"][0]
            st.markdown(
                f"Advice (by {top['by']}): start from **{top['init']}** ({top['candidate']}), "
                f"{top['suggested_strategy']} fine-tuning, unfreeze {top['suggested_unfreeze_blocks']} block(s)."
            )
            if not any(a.get("beats_random_init") for a in result["advice"]):
                st.warning(
                    "No MRI-trained backbone scores above random-init features here: expect little "
                    "from transfer on this task with these models."
                )
        show_command(result)
    rerun_form("transferability")


def acgan_section() -> None:
    st.markdown(
        "Feature ACGAN for class imbalance: one class cut to a fraction of its patients in the training "
        "split only; real only / class-weighted loss / oversampling / ACGAN synthetic features, "
        "balanced accuracy and per-class sensitivity over seeds on the untouched test split."
    )
    result = pick_result("acgan")
    if result is None:
        st.info("No ACGAN result yet.", icon=":material/science:")
    else:
        cfg = result.get("config") or {}
        st.caption(
            f"Minority: {cfg.get('minority')} kept at {cfg.get('fraction', 0):.0%} of its training patients; "
            f"seeds {cfg.get('seeds')}; test counts {result.get('test_counts')}"
        )
        st.plotly_chart(viz.imbalance_figure(result), key="acgan_chart", config={"displayModeBar": False})
        st.dataframe(studies.imbalance_table(result), hide_index=True)
        show_command(result)
    rerun_form("acgan")


def grade_baseline_section() -> None:
    st.markdown(
        "Is there a WHO grade II/III signal in TCGA-LGG that a simple reader finds? No network: from the "
        "tumour masks, tumour size and the intensity inside the tumour relative to the brain on each "
        "sequence (contrast enhancement shows on t1post), each feature's AUC on its own and a logistic "
        "regression's patient-level cross-validated AUC. A yardstick for the grade model: it needs the "
        "mask, so it is not a product model."
    )
    result = pick_result("grade_baseline")
    if result is None:
        st.info("No grade signal check yet.", icon=":material/science:")
    else:
        st.caption(
            f"{result.get('n_patients')} patients: {result.get('n_g2')} grade II, {result.get('n_g3')} grade III"
        )
        st.dataframe(studies.grade_baseline_table(result), hide_index=True)
        show_command(result)
    rerun_form("grade_baseline")


@st.fragment(run_every=5)
def jobs_panel() -> None:
    repo = get_repo()
    repo.jobs.reap_dead()
    jobs = repo.jobs.recent(kind="research", limit=8)
    if not jobs:
        return
    st.subheader("Research jobs")
    for j in jobs:
        p = j.params
        st.markdown(
            f"#{j.id} · {p.get('study')} · {p.get('task')} · **{j.status}**"
            + (f" ({j.progress:.0%})" if j.status in ACTIVE else "")
            + (f" → `{p.get('output')}`" if j.status == "succeeded" else "")
        )
        if j.status == "failed" and j.log_tail:
            st.code(j.log_tail[-800:])


st.title("Research")
st.caption(
    "Reproductions of the methods NeuroGrade rests on, on the real data at hand. Every figure comes "
    "from a JSON file written by the command shown under it."
)
tab_al, tab_tr, tab_gan, tab_grade = st.tabs(
    ["Active learning", "Transferability", "ACGAN class balancing", "Grade signal check"]
)
with tab_al:
    al_section()
with tab_tr:
    transferability_section()
with tab_gan:
    acgan_section()
with tab_grade:
    grade_baseline_section()
jobs_panel()
