"""NeuroGrade: Streamlit entry point. Navigation over pages/ and the sidebar shared by all pages.

Run with `streamlit run app.py`. Pages are thin: they read widgets, call `core`, draw the result.
"""
from __future__ import annotations

import importlib

# Imported here, once, before any page runs: Streamlit runs a page and its polling fragments on
# different threads, and two threads importing pandas lazily (plotly does, on first figure) can
# meet a half-initialised module ("partially initialized module 'pandas'").
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import streamlit as st

from core.config import get_settings
from core.devices import describe_device, select_device

TASKS = ("presence", "tumor_type", "grade")

st.set_page_config(page_title="NeuroGrade", page_icon=":material/neurology:", layout="wide",
                   initial_sidebar_state="expanded")

PAGES = [
    st.Page("pages/scan.py", title="Scan", icon=":material/radiology:", default=True),
    st.Page("pages/review.py", title="Review queue", icon=":material/fact_check:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
    st.Page("pages/research.py", title="Research", icon=":material/science:"),
]


@st.cache_resource(show_spinner=False)
def device_label(setting: str) -> str:
    """The device the models run on, resolved once per setting."""
    try:
        return describe_device(select_device(setting))
    except ValueError as exc:  # a bad NEUROGRADE_DEVICE: say so, run on the CPU
        return f"cpu ({exc})"


def model_versions() -> list[str]:
    """One line per task with a model version, or [] when the zoo has none to list yet."""
    lister = active = None
    for module_name in ("model_zoo.registry", "model_zoo.checkpoints"):
        module = importlib.import_module(module_name)
        lister = lister or getattr(module, "list_checkpoints", None)
        active = active or getattr(module, "active_version", None)
    if lister is None:
        return []
    lines = []
    for task in TASKS:
        versions = [c.version for c in lister(task)]
        if not versions:
            continue
        current = active(task) if active else versions[-1]
        lines.append(f"**{task}**: {current}" + (f" ({len(versions)} versions)" if len(versions) > 1 else ""))
    return lines


def _keep_reviewer() -> None:
    st.session_state["reviewer_name"] = st.session_state["_reviewer_input"].strip()


def sidebar() -> None:
    settings = get_settings()
    with st.sidebar:
        # The widget's own key is dropped by Streamlit on runs where it is not drawn; the name the
        # other pages read is the plain session_state entry "reviewer_name".
        st.session_state.setdefault("reviewer_name", "")
        st.session_state["_reviewer_input"] = st.session_state["reviewer_name"]
        st.text_input("Reviewer", key="_reviewer_input", on_change=_keep_reviewer,
                      placeholder="your name", help="Recorded with every label you confirm or correct.")
        st.caption(f"Device: `{device_label(settings.device)}`")
        st.caption("Models")
        try:
            lines = model_versions()
        except Exception as exc:  # noqa: BLE001 - the sidebar must never break a page
            st.caption(f"model list unavailable: {exc}")
        else:
            if lines:
                st.markdown("\n\n".join(lines))
            else:
                st.caption("no models yet")
        st.caption("Decision support only; not a diagnosis.")


page = st.navigation(PAGES)
sidebar()
page.run()
