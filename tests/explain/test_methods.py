"""The method classes and the explainable-model interface, on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from core import explain
from core.explain.methods import QuietScoreCAM
from tests.inference.inference_helpers import TYPE_CLASSES, phantom, tiny_loaded


def _tiny():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    ).eval()
    x = torch.rand(1, 3, 16, 16)
    return net, x


def test_quiet_scorecam_matches_the_library_and_draws_no_progress_bar(capfd):
    net, x = _tiny()
    targets = [ClassifierOutputTarget(1)]
    with ScoreCAM(model=net, target_layers=[net[1]]) as lib:
        expected = lib(input_tensor=x, targets=targets)
    capfd.readouterr()
    with QuietScoreCAM(model=net, target_layers=[net[1]]) as quiet:
        got = quiet(input_tensor=x, targets=targets)
    assert capfd.readouterr().err == ""
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_method_names_as_people_write_them():
    assert explain.method_key("Grad-CAM++") == "gradcam++" and explain.method_key("Layer_CAM") == "layercam"
    with pytest.raises(ValueError, match="unknown CAM method"):
        explain.method_key("nosuchcam")
    for m in explain.METHODS.values():  # every engine class records the raw maximum
        assert issubclass(m.engine_class(), (explain.methods.RawMax, m.cam_class))


def test_a_zoo_model_is_explained_through_the_same_interface():
    loaded = tiny_loaded("tumor_type", TYPE_CLASSES, seed=2)
    model = explain.LoadedExplainable(loaded)
    assert model.explainable("tumor_type") is model and model.task == "tumor_type"
    assert all(not p.requires_grad for p in loaded.model.parameters())
    res = explain.cam(model, phantom(1, bright=(0,))[0], "gradcam", 1, use_cache=False)
    assert res.class_name == "meningioma" and res.heatmap.shape == (48, 40)
    assert explain.hook_count(loaded.model) == 0
