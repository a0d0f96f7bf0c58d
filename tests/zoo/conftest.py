import pytest


@pytest.fixture(autouse=True)
def _isolated_zoo(tmp_path, monkeypatch):
    """Shipped versions come from a per-test folder and the torch hub cache is empty, so tests
    neither see nor depend on real checkpoints or ImageNet files on this machine."""
    import model_zoo.versions as ck

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(ck, "SHIPPED_ROOT", shipped)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return shipped


@pytest.fixture(scope="session")
def big_models():
    """3-class models of each architecture, built once per session (the VGGs take seconds).
    Tests that change requires_grad or modes must restore them."""
    from model_zoo import create

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = create(name, 3)
        return cache[name]

    return get
