import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own NEUROGRADE_HOME: no test reads or writes the user's."""
    monkeypatch.setenv("NEUROGRADE_HOME", str(tmp_path / "neurograde-home"))
    monkeypatch.delenv("NEUROGRADE_DB_URL", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from core.config import get_settings

    root = get_settings().data_dir
    if not (root / "figshare-cemri" / "manifest.csv").exists():
        pytest.skip(f"real data not found at {root} (set NEUROGRADE_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NEUROGRADE_SKIP_BROWSER"):
        skip = pytest.mark.skip(reason="NEUROGRADE_SKIP_BROWSER is set")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def no_shipped_models(tmp_path, monkeypatch):
    """An empty shipped-model folder, so a test's own versions (e.g. "1.0.0") neither collide with
    nor lose to the models committed in model_zoo/checkpoints/."""
    import model_zoo.checkpoints as ck

    shipped = tmp_path / "shipped-models"
    shipped.mkdir()
    monkeypatch.setattr(ck, "SHIPPED_ROOT", shipped)
    return shipped
