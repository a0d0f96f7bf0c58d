"""Grad-CAM family: every method on every registered architecture at a small size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core import explain
from core.inference import Predictor
from tests.inference.inference_helpers import TYPE_CLASSES, phantom, tiny_loaded

SMALL = {"vgg19_slim": 32, "vgg19_slim_w": 32}


def _arch_predictor(arch: str) -> Predictor:
    from model_zoo import LoadedModel, create, get_spec

    torch.manual_seed(0)
    size = SMALL.get(arch, 64)
    spec = dataclasses.replace(get_spec(arch), input_size=size)
    model = create(arch, 3).eval()
    card = {
        "task": "tumor_type",
        "version": arch,
        "classes": TYPE_CLASSES,
        "architecture": arch,
        "input": {"size": size},
    }
    lm = LoadedModel(
        model=model, spec=spec, card=card, classes=TYPE_CLASSES, temperature=1.0, task="tumor_type", version=arch
    )
    return Predictor({"tumor_type": lm}, device="cpu", precision="fp32")


def _archs():
    from model_zoo import list_models

    big = {"vgg19", "vgg19_bn", "resnet50", "densenet121"}  # seconds to build at random init
    return [pytest.param(a, marks=pytest.mark.slow) if a in big else a for a in list_models()]


@pytest.mark.parametrize("arch", _archs())
def test_every_method_on_every_architecture(arch):
    p = _arch_predictor(arch)
    tm = p.model("tumor_type")
    hooks = explain.hook_count(tm.model)
    sl = phantom(1, h=50, w=38, bright=(0,))[0]
    methods = [m for m in explain.METHODS if not explain.METHODS[m].slow or arch == "vgg19_slim"]
    for method in methods:
        res = explain.cam(p, sl, method, class_index=1, use_cache=False)
        assert res.heatmap.shape == sl.shape and res.heatmap.dtype == np.float32
        assert np.isfinite(res.heatmap).all()
        assert res.heatmap.min() >= 0.0 and res.heatmap.max() <= 1.0
        assert res.method == method and res.class_index == 1 and res.class_name == "meningioma"
        assert res.raw_max >= 0.0
    assert explain.hook_count(tm.model) == hooks
    assert all(not prm.requires_grad for prm in tm.model.parameters())


def test_scorecam_is_flagged_slow():
    assert explain.METHODS["scorecam"].slow
    assert not any(m.slow for k, m in explain.METHODS.items() if k != "scorecam")


def test_no_hook_leak_after_many_calls_and_bf16():
    p = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES)}, device="cpu", precision="bf16")
    tm = p.model("tumor_type")
    hooks = explain.hook_count(tm.model)
    rng = np.random.default_rng(0)
    for i in range(12):
        sl = phantom(1, seed=i)[0] * rng.uniform(0.5, 1.0)
        res = explain.cam(p, sl, ["gradcam", "layercam", "eigencam", "hirescam"][i % 4], use_cache=False)
        assert res.heatmap.shape == sl.shape
    assert explain.hook_count(tm.model) == hooks
    # predictions still work and match after CAMs (no stale hooks changing outputs)
    a = p.predict_slices("tumor_type", phantom(2))
    b = p.predict_slices("tumor_type", phantom(2))
    np.testing.assert_array_equal(a, b)


def test_heatmap_follows_slice_geometry_and_target_class():
    """A stub whose class-1 logit is the sum of the lesion region: Grad-CAM must point there."""
    from model_zoo import LoadedModel, ModelSpec

    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)
            with torch.no_grad():
                self.conv.weight.fill_(1.0)
                self.conv.bias.zero_()

        def forward(self, x):
            f = self.conv(x)
            return torch.stack([torch.zeros_like(f.sum((1, 2, 3))), torch.relu(f).sum((1, 2, 3))], 1)

    spec = ModelSpec(
        name="local", builder=lambda *a: None, input_size=32, mean=(0, 0, 0), std=(1, 1, 1), cam_layer="conv"
    )
    lm = LoadedModel(
        model=Local().eval(), spec=spec, card={"input": {}}, classes=["a", "b"], temperature=1.0, task="t", version="1"
    )
    p = Predictor({"t": lm}, device="cpu", precision="fp32")
    sl = np.zeros((40, 64), np.float32)
    sl[5:15, 45:60] = 1.0  # lesion at the top right of a wide image
    res = explain.cam(p, sl, "gradcam", class_index=1, task="t")
    iy, ix = np.unravel_index(np.argmax(res.heatmap), sl.shape)
    assert 3 <= iy <= 17 and 43 <= ix <= 62
    assert explain.pointing_hit(res.heatmap, ((45 + 60) / 2 / 64, 10 / 40, 15 / 64, 10 / 40))
    assert explain.energy_in_box(res.heatmap, ((45 + 60) / 2 / 64, 10 / 40, 20 / 64, 14 / 40)) > 0.5


def test_cache_hits_and_keys():
    explain.clear_cache()
    p = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES)}, device="cpu", precision="fp32")
    sl = phantom(1, bright=(0,))[0]
    a = explain.cam(p, sl, "gradcam", class_index=0)
    b = explain.cam(p, sl, "gradcam", class_index=0)
    assert not a.cached and b.cached and b.ms == 0.0
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    c = explain.cam(p, sl, "gradcam", class_index=2)  # other class: a miss
    d = explain.cam(p, sl, "eigencam", class_index=0)  # other method: a miss
    assert not c.cached and not d.cached
    e = explain.cam(p, sl, "gradcam", class_index=0, case_key="case1", slice_index=3)
    f = explain.cam(p, sl * 0.5, "gradcam", class_index=0, case_key="case1", slice_index=3)
    assert not e.cached and f.cached  # the case key wins over pixels
    info = explain.cache_info()
    assert info["hits"] == 2 and info["misses"] == 4


def test_default_class_is_argmax_and_unknown_method_rejected():
    p = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES)}, device="cpu", precision="fp32")
    sl = phantom(1)[0]
    res = explain.cam(p, sl, "Grad-CAM++")
    assert res.method == "gradcam++"
    assert res.class_index == int(np.argmax(p.predict_slices("tumor_type", sl[None])[0]))
    with pytest.raises(ValueError):
        explain.cam(p, sl, "nosuchcam")
