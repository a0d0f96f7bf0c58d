"""pages.common: the models are built in the background when the app starts, once, and a page
asking for them gets that same Predictor (no second build)."""

import threading

import pytest

from core.inference import Predictor
from pages import common
from tests.pages.test_scan_page import MODELS, save_tiny


@pytest.fixture
def builds(monkeypatch):
    """The threads that built a Predictor (Predictor.from_refs), in order; fresh model caches."""
    names = []
    original = Predictor.from_refs.__func__
    monkeypatch.setattr(
        Predictor,
        "from_refs",
        classmethod(lambda cls, *a, **k: names.append(threading.current_thread().name) or original(cls, *a, **k)),
    )
    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    for cached in (common._warm_up_thread, common._predictor_for):
        cached.clear()
    yield names
    common._warm_up_thread.clear()


def test_warm_up_builds_the_active_models_in_the_background_once(builds, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_WARM_UP", "1")
    for task, (classes, bias, seq) in MODELS.items():
        save_tiny(task, "t1", classes, bias, seq)
    common.warm_up_models()
    common.warm_up_models()  # every rerun of app.py: still one build
    common._warm_up_thread().join(timeout=120)
    assert builds == ["neurograde-warm-up"]
    predictor, versions = common.get_predictor()
    assert builds == ["neurograde-warm-up"]  # the page gets the warm models
    assert dict(versions) == {"presence": "t1", "tumor_type": "t1", "grade": "t1"}
    assert sorted(predictor.models) == ["grade", "presence", "tumor_type"]


def test_warm_up_can_be_turned_off(builds):
    # NEUROGRADE_WARM_UP=0 is every test's setting (tests/conftest.py)
    common.warm_up_models()
    assert not any(t.name == "neurograde-warm-up" and t.is_alive() for t in threading.enumerate())
    assert builds == []
