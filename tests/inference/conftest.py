import pytest
from inference_helpers import GRADE_CLASSES, PRESENCE_CLASSES, TYPE_CLASSES, tiny_loaded  # noqa: F401


@pytest.fixture
def tiny_predictor():
    from core.inference import Predictor

    return Predictor(
        {
            "presence": tiny_loaded("presence", PRESENCE_CLASSES, seed=1),
            "tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES, seed=2),
            "grade": tiny_loaded("grade", GRADE_CLASSES, ["t1pre", "flair", "t1post"], seed=3),
        },
        device="cpu",
        precision="fp32",
    )
