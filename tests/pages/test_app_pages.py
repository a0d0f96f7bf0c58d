"""app.py in AppTest: the navigation, the sidebar and every page render without an exception
(signed in as an administrator, who sees every page; tests/pages/test_auth_pages.py: the others)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.auth_helpers import sign_in

REPO = Path(__file__).resolve().parents[2]
PAGES = ["pages/scan.py", "pages/review.py", "pages/train.py", "pages/models.py", "pages/research.py", "pages/users.py"]


def _app() -> AppTest:
    return sign_in(AppTest.from_file(str(REPO / "app.py"), default_timeout=60), "Dr Ada", "admin")


def test_default_page_is_scan_with_sidebar(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    at = _app().run()
    assert not at.exception
    assert at.title[0].value == "Scan"
    assert at.file_uploader[0].accept_multiple_files
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Device: `cpu`" in captions
    assert "Signed in as Dr Ada (admin)" in [t.value for t in at.sidebar.text]
    assert at.sidebar.button(key="auth_sign_out")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    at = _app().run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert at.title, f"{page} has no title"


def test_signed_in_user_survives_page_switch(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    at = _app().run()
    at.switch_page("pages/review.py").run()
    assert not at.exception
    assert at.session_state["auth_user"]["name"] == "Dr Ada"
    assert at.title[0].value == "Review queue"  # (AppTest drops the sidebar after switch_page)


def test_bad_device_setting_does_not_break_the_app(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "quantum")
    at = _app().run()
    assert not at.exception
    assert any("cpu (" in c.value for c in at.sidebar.caption)
