"""app.py in AppTest: the navigation, the sidebar and every page render without an exception."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
PAGES = ["pages/scan.py", "pages/review.py", "pages/train.py", "pages/models.py", "pages/research.py"]


def _app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=60)


def test_default_page_is_scan_with_sidebar(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    at = _app().run()
    assert not at.exception
    assert at.title[0].value == "Scan"
    assert at.file_uploader[0].accept_multiple_files
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Device: `cpu`" in captions
    assert at.sidebar.text_input(key="_reviewer_input").label == "Reviewer"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    at = _app().run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert at.title, f"{page} has no title"


def test_reviewer_name_survives_page_switch(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    at = _app().run()
    at.sidebar.text_input(key="_reviewer_input").input(" Dr Ada ").run()
    assert at.session_state["reviewer_name"] == "Dr Ada"
    at.switch_page("pages/review.py").run()
    assert not at.exception
    assert at.session_state["reviewer_name"] == "Dr Ada"


def test_bad_device_setting_does_not_break_the_app(monkeypatch):
    monkeypatch.setenv("NEUROGRADE_DEVICE", "quantum")
    at = _app().run()
    assert not at.exception
    assert any("cpu (" in c.value for c in at.sidebar.caption)
