"""Bulk-imported items have no prediction: `queue refresh` scores them with the active model."""

import json

import numpy as np
from queue_ui_helpers import TYPE_CLASSES


def test_refresh_predicts_unscored_items_with_the_active_model(capsys):
    import torch

    from core.cli import main
    from core.review import predict_items
    from core.store import Store
    from core.zoo import save_checkpoint, set_active
    from model_zoo import create

    torch.manual_seed(0)
    save_checkpoint(
        create("vgg19_slim", 3),
        {"architecture": "vgg19_slim", "classes": TYPE_CLASSES, "input": {"size": 32}, "temperature": 2.0},
        "tumor_type",
        "u1",
    )
    set_active("tumor_type", "u1")
    repo = Store.open()
    rng = np.random.default_rng(0)
    case = repo.cases.save(
        {"modality": "MR", "shape": (3, 40, 40), "source_format": "image"},
        rng.random((3, 40, 40)).astype(np.float32),
        tasks=["tumor_type"],
    )
    ids = [i.id for i in repo.cases.items(case)]
    assert not repo.cases.latest_predictions("tumor_type", item_ids=ids)

    preds = predict_items(repo, "tumor_type", ids)
    assert len(preds) == 3 and all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in preds)

    assert main(["queue", "refresh", "--task", "tumor_type"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["model_version"] == "u1" and counts["predicted"] == 3 and counts["stale"] == 0
    stored = repo.cases.latest_predictions("tumor_type", item_ids=ids)
    assert sorted(stored) == sorted(ids) and {p.model_version for p in stored.values()} == {"u1"}
    np.testing.assert_allclose(stored[ids[0]].probabilities, preds[0]["probabilities"], rtol=1e-5)
    assert main(["queue", "refresh", "--task", "tumor_type"]) == 0  # second time: nothing to redo
    assert json.loads(capsys.readouterr().out)["kept"] == 3
