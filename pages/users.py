"""Users (administrators only): the accounts, their roles, and what each role may do.

Thin page: every change goes through core.auth (which checks the signed-in role again, hashes
passwords and never leaves the store without an enabled administrator) and is audited.
"""

from __future__ import annotations

import streamlit as st

from core import auth
from core.store import users
from pages.common import current_user, get_repo, role_note

MESSAGE = "users_message"


def _add() -> None:
    s = st.session_state
    name, role = s.get("users_new_name", ""), s.get("users_new_role", "clinician")
    pw, pw2 = s.get("users_new_password", ""), s.get("users_new_password2", "")
    s["users_new_password"] = s["users_new_password2"] = ""
    if pw != pw2:
        s[MESSAGE] = ("error", "The two passwords differ.")
        return
    try:
        auth.add_user(get_repo(), name, role, pw, current_user())
    except (auth.AuthError, auth.PermissionDenied, ValueError) as exc:
        s[MESSAGE] = ("error", str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. UserExists from the store
        s[MESSAGE] = ("error", str(exc))
    else:
        s[MESSAGE] = ("success", f"Added {name.strip()} ({role}).")


def _change(action: str) -> None:
    s = st.session_state
    name = s.get("users_pick")
    try:
        if action == "role":
            auth.set_role(get_repo(), name, s.get("users_role"), current_user())
            s[MESSAGE] = ("success", f"{name} is now {s.get('users_role')}.")
        elif action in ("disable", "enable"):
            auth.set_disabled(get_repo(), name, action == "disable", current_user())
            s[MESSAGE] = ("success", f"{name} is {action}d.")
        elif action == "password":
            pw = s.get("users_reset_password", "")
            s["users_reset_password"] = ""
            auth.set_password(get_repo(), name, pw, current_user())
            s[MESSAGE] = ("success", f"{name}'s password is changed.")
    except Exception as exc:  # noqa: BLE001 - AuthError, PermissionDenied, NotFound: all shown as messages
        s[MESSAGE] = ("error", str(exc))


def main() -> None:
    st.title("Users")
    user = current_user()
    if user is None or not user.can("manage_users"):
        st.info(role_note("manage_users"), icon=":material/lock:")
        return
    msg = st.session_state.pop(MESSAGE, None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(msg[1])
    repo = get_repo()
    rows = users.list_users(repo)
    st.dataframe(
        [
            {
                "name": u.name,
                "role": u.role,
                "status": "disabled" if u.disabled else "active",
                "sign-in": "password" if u.has_password else "organisation (OIDC)",
                "last sign-in": str(u.last_login_at or "")[:19],
            }
            for u in rows
        ],
        hide_index=True,
    )
    left, right = st.columns(2, gap="large")
    with left, st.form("users_add", clear_on_submit=False, enter_to_submit=False):
        st.markdown("#### Add a user")
        st.text_input("User name", key="users_new_name")
        st.selectbox("Role", auth.ROLES, key="users_new_role")
        st.text_input(
            "Password",
            type="password",
            key="users_new_password",
            help=f"at least {auth.MIN_PASSWORD_LENGTH} characters",
        )
        st.text_input("Password again", type="password", key="users_new_password2")
        st.form_submit_button("Add user", type="primary", on_click=_add)
    with right:
        st.markdown("#### Change a user")
        names = [u.name for u in rows]
        if names:
            st.selectbox("User", names, key="users_pick")
            c1, c2 = st.columns([2, 1])
            c1.selectbox("Role", auth.ROLES, key="users_role")
            c2.button("Set role", key="users_set_role", on_click=_change, args=("role",))
            c1, c2 = st.columns(2)
            c1.button("Disable", key="users_disable", on_click=_change, args=("disable",))
            c2.button("Enable", key="users_enable", on_click=_change, args=("enable",))
            st.text_input("New password", type="password", key="users_reset_password")
            st.button("Set password", key="users_set_password", on_click=_change, args=("password",))
    st.markdown("#### What each role may do")
    st.dataframe(
        [
            {"permission": r["meaning"], **{role: "✓" if r[role] else "" for role in auth.ROLES}}
            for r in auth.permissions_table()
        ],
        hide_index=True,
    )
    st.caption(
        "Accounts are disabled, never deleted: the audit log keeps naming who did what. "
        "The same from a shell: `python -m core users --help`."
    )


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
