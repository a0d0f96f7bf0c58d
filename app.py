"""NeuroGrade: Streamlit entry point. Navigation over pages/ and the sidebar shared by all pages.

Run with `streamlit run app.py`. Pages are thin: they read widgets, call `core`, draw the result.
"""

from __future__ import annotations

# Imported here, once, before any page runs: Streamlit runs a page and its polling fragments on
# different threads, and two threads importing pandas lazily (plotly does, on first figure) can
# meet a half-initialised module ("partially initialized module 'pandas'").
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import streamlit as st

from core.config import get_settings
from core.devices import describe_device, select_device
from core.markup import text
from core.zoo import active_version, list_checkpoints
from pages.common import client_is_local, current_user, local_only_page, sign_in_page, sign_out, warm_up_models

TASKS = ("presence", "tumor_type", "grade")

st.set_page_config(
    page_title="NeuroGrade", page_icon=":material/neurology:", layout="wide", initial_sidebar_state="expanded"
)
warm_up_models()  # in the background, once per server: the first scan does not wait ~20 s for the models

# (page file, title, icon, the permission a role needs to see it in the navigation)
PAGES = [
    ("pages/scan.py", "Scan", ":material/radiology:", "scan"),
    ("pages/review.py", "Review queue", ":material/fact_check:", "label"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/models.py", "Models", ":material/deployed_code:", "scan"),
    ("pages/research.py", "Research", ":material/science:", "scan"),
    ("pages/users.py", "Users", ":material/manage_accounts:", "manage_users"),
]


def pages_for(user) -> list:
    """The pages this user's role may open (the navigation lists nothing else)."""
    if user is None:
        return [st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="signin", default=True)]
    return [
        st.Page(path, title=title, icon=icon, default=i == 0)
        for i, (path, title, icon, permission) in enumerate(PAGES)
        if user.can(permission)
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
    lines = []
    for task in TASKS:
        versions = [c.version for c in list_checkpoints(task)]
        if not versions:
            continue
        current = active_version(task)
        lines.append(f"**{task}**: {text(current)}" + (f" ({len(versions)} versions)" if len(versions) > 1 else ""))
    return lines


def sidebar(user) -> None:
    settings = get_settings()
    with st.sidebar:
        if user is None:
            st.caption("Decision support only; not a diagnosis.")
            return
        st.text(f"Signed in as {user.name} ({user.role})")  # plain text: a name is never markup
        if user.via == "off":
            st.caption("Sign-in is off (NEUROGRADE_AUTH=off): this machine only.")
        else:
            st.button("Sign out", key="auth_sign_out", on_click=sign_out, icon=":material/logout:")
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


if get_settings().auth == "off" and not client_is_local():
    page = st.navigation([st.Page(local_only_page, title="NeuroGrade", url_path="local-only")], position="hidden")
    page.run()
    st.stop()
user = current_user()
page = st.navigation(pages_for(user), position="sidebar" if user is not None else "hidden")
sidebar(user)
page.run()
