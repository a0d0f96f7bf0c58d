import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own NEUROGRADE_HOME: no test reads or writes the user's."""
    monkeypatch.setenv("NEUROGRADE_HOME", str(tmp_path / "neurograde-home"))
    monkeypatch.delenv("NEUROGRADE_DB_URL", raising=False)
    monkeypatch.setenv("NEUROGRADE_WARM_UP", "0")  # no background model builds in tests


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
    import model_zoo.versions as ck

    shipped = tmp_path / "shipped-models"
    shipped.mkdir()
    monkeypatch.setattr(ck, "SHIPPED_ROOT", shipped)
    return shipped


@pytest.fixture(scope="session")
def pdf_text():
    """pdf_text(pdf_bytes) -> the text of an uncompressed fpdf2 PDF (build_pdf(..., compress=False)),
    wrapped lines joined by spaces."""
    import re

    def read(pdf: bytes) -> str:
        parts = re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", pdf)
        return " ".join(re.sub(rb"\\(.)", rb"\1", p).decode("latin-1") for p in parts)

    return read


@pytest.fixture(scope="session")
def tamper():
    """tamper(version folder): flip one byte in the middle of its model.pt, so that its sha256 no
    longer matches the card."""

    def flip(folder) -> None:
        path = Path(folder) / "model.pt"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return flip


@pytest.fixture
def sign_in():
    """sign_in(at, name="Dr Ada", role="admin") -> at: the account exists in this test's store and
    the AppTest session is signed in as it (what the sign-in form of app.py does)."""
    from tests.auth_helpers import sign_in as _sign_in

    return _sign_in
