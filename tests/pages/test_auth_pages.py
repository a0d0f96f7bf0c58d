"""Sign-in through app.py (NEUROGRADE_AUTH=local, the default; off; oidc) and the Users page."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.auth_helpers import TEST_PASSWORD, ensure_user, sign_in

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")


def _app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=60)


def _no_page(at, page: str) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page)


def _submit(at, name: str, password: str):
    at.text_input(key="auth_name").input(name)
    at.text_input(key="auth_password").input(password)
    return at.button(key="FormSubmitter:sign_in-Sign in").click().run()


def test_signed_out_gets_only_the_sign_in_page_and_how_to_create_the_admin():
    at = _app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert "python -m core users add NAME --role admin" in at.info[0].value
    assert not at.file_uploader  # nothing of the app itself
    for page in ("pages/scan.py", "pages/review.py", "pages/train.py", "pages/models.py", "pages/users.py"):
        _no_page(at, page)


def test_sign_in_with_the_password_then_sign_out():
    ensure_user("root", "admin")
    ensure_user("ada", "reviewer")
    at = _submit(_app().run(), "ada", "wrong password here")
    assert "Wrong user name or password" in at.error[0].value
    assert [t.value for t in at.title] == ["Sign in"] and "auth_user" not in at.session_state
    assert not at.info  # an admin exists: no first-run hint
    at = _submit(at, "ada", TEST_PASSWORD)
    assert not at.exception
    assert [t.value for t in at.title] == ["Scan"]
    assert at.session_state["auth_password"] == ""  # the password is not kept
    assert "Signed in as ada (reviewer)" in [t.value for t in at.sidebar.text]
    _no_page(at, "pages/train.py")  # a reviewer has no training or users ...
    _no_page(at, "pages/users.py")
    at.sidebar.button(key="auth_sign_out").click().run()
    assert "auth_user" not in at.session_state  # (the browser test sees the form again)
    at = _submit(_app().run(), "ada", TEST_PASSWORD)
    at.switch_page("pages/review.py").run()  # ... but the queue
    assert [t.value for t in at.title] == ["Review queue"]


def test_a_clinician_sees_scan_models_research_only():
    at = sign_in(_app(), "Dr Cy", "clinician").run()
    assert not at.exception and at.title[0].value == "Scan"
    for page in ("pages/review.py", "pages/train.py", "pages/users.py"):
        _no_page(at, page)
    for page in ("pages/models.py", "pages/research.py"):
        at.switch_page(page).run()
        assert not at.exception


def test_sign_in_off_is_one_local_admin_without_a_form(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_AUTH", "off")
    at = _app().run()
    assert not at.exception and at.title[0].value == "Scan"
    assert any("Sign-in is off" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/users.py").run()
    assert not at.exception and at.title[0].value == "Users"


def test_oidc_mode_offers_the_provider_button_only(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_AUTH", "oidc")
    at = _app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert [b.key for b in at.button] == ["auth_oidc_login"]
    assert not at.text_input  # no local password form
    _no_page(at, "pages/scan.py")


def test_users_page_adds_and_changes_accounts_for_admins_only():
    from core import auth
    from core.store import Store, users

    at = sign_in(AppTest.from_file(str(REPO / "pages" / "users.py"), default_timeout=60), "root", "admin").run()
    assert not at.exception
    at.text_input(key="users_new_name").input("nurse bo")
    at.selectbox(key="users_new_role").set_value("clinician")
    at.text_input(key="users_new_password").input("long enough password")
    at.text_input(key="users_new_password2").input("long enough password")
    at.button(key="FormSubmitter:users_add-Add user").click().run()
    assert not at.exception and "Added nurse bo (clinician)" in at.success[0].value
    repo = Store.open()
    assert auth.authenticate(repo, "nurse bo", "long enough password").role == "clinician"
    at.selectbox(key="users_pick").set_value("nurse bo")
    at.selectbox(key="users_role").set_value("reviewer")
    at.button(key="users_set_role").click().run()
    assert users.get_user(repo, "nurse bo").role == "reviewer"
    at.selectbox(key="users_pick").set_value("root")
    at.button(key="users_disable").click().run()  # the last admin: refused
    assert "last enabled administrator" in at.error[0].value
    assert [a.actor for a in repo.audit.entries(entity="user", action="set_role")] == ["root"]

    at = sign_in(AppTest.from_file(str(REPO / "pages" / "users.py"), default_timeout=60), "nurse bo", "reviewer").run()
    assert "that needs admin" in at.info[0].value and not at.button
