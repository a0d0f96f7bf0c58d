"""Signing an AppTest session in, as app.py's sign-in form does (core.auth, pages.common)."""

from __future__ import annotations

TEST_PASSWORD = "correct horse battery"


def ensure_user(name: str = "Dr Ada", role: str = "admin", password: str = TEST_PASSWORD):
    """The account `name` with `role` in the current store (NEUROGRADE_HOME / NEUROGRADE_DB_URL)."""
    from core import auth
    from core.store import Store, users

    repo = Store.open()
    user = users.get_user(repo, name)
    if user is None:
        return auth.add_user(repo, name, role, password, "test")
    if user.role != role:
        return users.update_user(repo, name, "test", role=role)
    return user


def sign_in(at, name: str = "Dr Ada", role: str = "admin"):
    """Sign the AppTest session in as `name` (created with `role` when missing); returns `at`."""
    ensure_user(name, role)
    at.session_state["auth_user"] = {"name": name, "via": "local"}
    return at
