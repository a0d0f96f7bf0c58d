import pytest


@pytest.fixture(autouse=True)
def _own_model_zoo(request):
    """These tests make their own champion versions; the real-data loop uses the shipped ones."""
    if "data" not in request.keywords:
        request.getfixturevalue("no_shipped_models")
