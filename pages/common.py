"""What several pages share: the store connection and who is signed in (not a page itself: app.py
lists the pages explicitly).

Sign-in (core.auth; setting NEUROGRADE_AUTH): `local` keeps the signed-in account's name in this
session's state (server side) and re-reads its role from the store on every run, so a role change
or a disabled account takes effect at once; `oidc` reads Streamlit's `st.user` (st.login); `off`
is the single local user. Pages ask `current_user()` and show only what its role may do; the core
calls they make check the role again.

Models: one `core.inference.Predictor` per set of active versions (`st.cache_resource`), built in
the background when the app starts (`warm_up_models`, NEUROGRADE_WARM_UP) so the first scan does
not wait for it. `guarded` turns a section's unexpected error into a message, never a traceback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time

import streamlit as st

from core import auth, zoo
from core.config import get_settings
from core.inference import Predictor
from core.store import Store
from core.tasks import TASKS

log = logging.getLogger("neurograde.pages")

AUTH_KEY = "auth_user"  # session_state: {"name": ..., "via": "local"} after a sign-in
_FAILS = "_auth_failures"


@st.cache_resource(show_spinner=False)
def _repo_for(db_url: str):
    return Store.open(db_url)


def get_repo():
    """The store of the current settings (one per database URL, shared by the sessions)."""
    return _repo_for(str(get_settings().db_url))


def current_user() -> auth.Identity | None:
    """The signed-in Identity with its current role, or None (signed out, unknown or disabled)."""
    mode = auth.auth_mode()
    if mode == "off":
        return auth.local_identity()
    if mode == "oidc":
        if not _oidc_logged_in():
            return None
        try:
            return auth.oidc_identity(get_repo(), _oidc_claims())
        except auth.AuthError:
            return None
    signed = st.session_state.get(AUTH_KEY)
    if not signed:
        return None
    ident = auth.identity_for(get_repo(), signed.get("name", ""), "local")
    if ident is None:  # disabled or removed meanwhile: signed out
        st.session_state.pop(AUTH_KEY, None)
    return ident


def user_name() -> str:
    """The signed-in user's name ("" when nobody is): what labels and audit rows record."""
    user = current_user()
    return user.name if user else ""


def can(permission: str) -> bool:
    user = current_user()
    return bool(user and user.can(permission))


def role_note(permission: str) -> str:
    """A caption for a control the signed-in role may not use."""
    user = current_user()
    need = auth.PERMISSIONS[permission][0]
    if user is None:
        return f"Sign in (as {need} or above) to {auth.PERMISSIONS[permission][1]}."
    return f"Your role ({user.role}) may not {auth.PERMISSIONS[permission][1]}: that needs {need}."


def client_is_local() -> bool:
    """Whether this browser connects from this machine (Streamlit reports None for loopback)."""
    ip = st.context.ip_address
    if ip is None or not isinstance(ip, str):  # loopback (or AppTest, which has no connection)
        return True
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------- OIDC
def _oidc_logged_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # noqa: BLE001 - no [auth] secrets configured: nobody is signed in
        return False


def _oidc_claims() -> dict:
    return dict(st.user.to_dict()) if hasattr(st.user, "to_dict") else dict(st.user)


# ------------------------------------------------------------------------------- sign-in page
def _sign_in(name_key: str, password_key: str) -> None:
    """Form callback: check the password against the store; remember the name on success."""
    name = str(st.session_state.get(name_key) or "")
    password = str(st.session_state.get(password_key) or "")
    st.session_state[password_key] = ""
    fails = int(st.session_state.get(_FAILS, 0))
    if fails >= 3:  # slow down guessing in this session
        time.sleep(min(2.0 * (fails - 2), 10.0))
    try:
        ident = auth.authenticate(get_repo(), name, password)
    except auth.AuthError as exc:
        st.session_state[_FAILS] = fails + 1
        st.session_state["_auth_message"] = str(exc)
        return
    st.session_state.pop(_FAILS, None)
    st.session_state.pop("_auth_message", None)
    st.session_state[AUTH_KEY] = {"name": ident.name, "via": "local"}


def sign_out() -> None:
    """Button callback: forget the signed-in account and everything this session held (the
    current case, the pinned review item), so the next person at this browser starts afresh."""
    st.session_state.clear()
    if auth.auth_mode() == "oidc" and _oidc_logged_in():
        st.logout()


def sign_in_page() -> None:
    """The only page a signed-out browser gets."""
    st.title("Sign in")
    st.caption("NeuroGrade — decision support for brain-tumour MRI. Research use only.")
    mode = auth.auth_mode()
    if mode == "oidc":
        if _oidc_logged_in():  # signed in at the provider, but no (enabled) account here
            try:
                auth.oidc_identity(get_repo(), _oidc_claims())
            except auth.AuthError as exc:
                st.error(str(exc), icon=":material/person_off:")
            st.button("Sign out", key="auth_oidc_logout", on_click=st.logout)
            return
        st.button(
            "Sign in with your organisation",
            type="primary",
            key="auth_oidc_login",
            on_click=st.login,
            icon=":material/login:",
        )
        return
    if auth.needs_first_admin(get_repo()):
        st.info(
            "No administrator account yet. On the machine that runs NeuroGrade, create the first one:\n\n"
            "`python -m core users add NAME --role admin`\n\n(it asks for the password), then sign in here.",
            icon=":material/admin_panel_settings:",
        )
    msg = st.session_state.get("_auth_message")
    if msg:
        st.error(msg, icon=":material/lock:")
    with st.form("sign_in", enter_to_submit=True):
        st.text_input("User name", key="auth_name", autocomplete="username")
        st.text_input("Password", type="password", key="auth_password", autocomplete="current-password")
        st.form_submit_button("Sign in", type="primary", on_click=_sign_in, args=("auth_name", "auth_password"))


def local_only_page() -> None:
    st.title("Not available from this address")
    st.error(
        "Sign-in is off (NEUROGRADE_AUTH=off): NeuroGrade then serves only the machine it runs on. "
        "Turn sign-in on (NEUROGRADE_AUTH=local) to use it from the network.",
        icon=":material/lock:",
    )


reviewer_name = user_name  # the name pages used before sign-in existed


# ------------------------------------------------------------------------------- models
def active_versions() -> tuple[tuple[str, str], ...]:
    """((task, active version), ...) for the tasks that have a model; read on every run, so a
    promotion or a newly shipped version is picked up without a restart."""
    out = []
    for task in TASKS:
        try:
            version = zoo.active_version(task)
        except Exception as exc:  # noqa: BLE001 - one unreadable task must not hide the others
            log.warning("active version of %s unavailable: %s", task, exc)
            version = None
        if version:
            out.append((task, str(version)))
    return tuple(out)


@st.cache_resource(show_spinner="Loading the models...", max_entries=4)
def _predictor_for(versions: tuple[tuple[str, str], ...], home: str, device: str) -> Predictor:
    """One Predictor per (active versions, NEUROGRADE_HOME, device setting), shared by sessions."""
    refs = {task: f"{task}@{version}" for task, version in versions}
    try:
        return Predictor.from_refs(refs, device=device)
    except ValueError as exc:  # a bad NEUROGRADE_DEVICE: run on the CPU and say so
        return Predictor.from_refs(refs, device="cpu", notes=[f"device: {exc}; running on the CPU"])


def get_predictor() -> tuple[Predictor | None, tuple[tuple[str, str], ...]]:
    """(Predictor or None when no model is installed, active versions)."""
    versions = active_versions()
    if not versions:
        return None, versions
    settings = get_settings()
    return _predictor_for(versions, str(settings.home), str(settings.device or "auto")), versions


def _build_models() -> None:
    try:
        get_predictor()
    except Exception:  # noqa: BLE001 - a page that needs the models reports the error itself
        log.exception("warming up the models failed")


@st.cache_resource(show_spinner=False)
def _warm_up_thread() -> threading.Thread:
    thread = threading.Thread(target=_build_models, name="neurograde-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up_models() -> None:
    """Build the active models once per server process, in the background, when the app starts
    (NEUROGRADE_WARM_UP=0: on first use). A page asking for them meanwhile waits for the same
    build (st.cache_resource computes a value once)."""
    if get_settings().warm_up:
        _warm_up_thread()


# ------------------------------------------------------------------------------- sections
def first_line(exc: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), for a message on a page."""
    message = str(exc).strip()
    return message.splitlines()[0][:300] if message else type(exc).__name__


@contextlib.contextmanager
def guarded(what: str):
    """Runs a section; an unexpected error becomes an st.error with its message (logged with the
    traceback), never a traceback on the page. Streamlit's own control flow passes through."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - st.rerun / st.stop are BaseExceptions and pass
        log.exception("%s failed", what)
        st.error(f"{what} failed: {first_line(exc)}", icon=":material/error:")
