"""`python -m core cam-eval` on real Figshare images (data-marked: needs ../shared/data)."""

import json

import pytest

from core.cli import main

pytestmark = pytest.mark.data


def test_cam_eval_scores_the_held_out_fold_at_the_layer_asked(shared_data, monkeypatch, capsys):
    monkeypatch.setenv("NEUROGRADE_DATA_DIR", str(shared_data))
    assert (
        main(
            ["cam-eval", "--limit", "4", "--methods", "gradcam,layercam", "--layer", "features.block4.relu4", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["layer"] == "features.block4.relu4" and out["n_images"] == 4
    assert "never saw fold" in out["explained"]
    assert 0 < out["chance_box_area"] < 0.5
    for m in ("gradcam", "layercam"):
        r = out["methods"][m]
        assert r["n"] == 4 and 0 <= r["pointing_hit_rate"] <= 1 and 0 <= r["energy_in_box"] <= 1
    assert main(["cam-eval", "--limit", "1", "--layer", "features.block9"]) == 2
    assert "has no module" in capsys.readouterr().err
