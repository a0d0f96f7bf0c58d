"""int8 inference: calibration (`python -m core quantize`), the int8 Predictor path and its guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from inference_helpers import TYPE_CLASSES, phantom, tiny_loaded
from PIL import Image

from core import explain, quantize
from core.cli import main
from core.inference import Predictor, TaskModel, runtime

pytestmark = pytest.mark.skipif(not quantize.available(), reason="no x86 int8 kernels in this torch build")


def test_int8_model_follows_fp32_on_the_images_it_was_calibrated_for():
    tm = TaskModel(tiny_loaded("tumor_type", TYPE_CLASSES, seed=2), "cpu", precision="fp32")
    from core.preprocess import model_input

    x = model_input(phantom(24, bright=(3, 9, 15)), tm.spec)
    observers = quantize.calibrate(tm.fp32, x)
    assert observers and all("activation_post_process" in k for k in observers)
    q = quantize.quantized(tm.fp32, observers, x[:1])
    with torch.no_grad():
        ref, got = tm.fp32(x), q(x)
    assert got.shape == ref.shape and torch.isfinite(got).all()
    assert (got - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3
    with pytest.raises(ValueError, match="does not fit"):
        quantize.quantized(tm.fp32, {}, x[:1])


@pytest.fixture
def calibrated(tmp_path):
    """A saved tumor_type version whose recipe data is a generated image folder, quantized."""
    from core.zoo import save_checkpoint
    from model_zoo import create

    data = tmp_path / "images"
    for k, cls in enumerate(TYPE_CLASSES):
        (data / cls).mkdir(parents=True)
        for i, img in enumerate(phantom(6, 48, 48, bright=(1, 4), seed=10 * k)):
            Image.fromarray((img * 255).astype(np.uint8)).save(data / cls / f"{i}.png")
    torch.manual_seed(0)
    folder = save_checkpoint(
        create("vgg19_slim", 3),
        {
            "architecture": "vgg19_slim",
            "classes": TYPE_CLASSES,
            "input": {"size": 32},
            "recipe": {"data": str(data), "tta": True},
        },
        "tumor_type",
        "q1",
    )
    assert main(["quantize", "tumor_type@q1", "--images", "10", "--check", "8"]) == 0
    return folder


def test_quantize_command_records_the_calibration_and_the_predictor_runs_int8(calibrated):
    card = json.loads((calibrated / "card.json").read_text())
    info = card["int8"]
    assert (calibrated / info["file"]).is_file() and len(info["sha256"]) == 64
    assert info["calibration"]["n_images"] == 10 and info["agreement_with_fp32"]["n_images"] == 8
    assert 0 <= info["agreement_with_fp32"]["identical_labels"] <= 1

    p = Predictor.from_refs({"tumor_type": "tumor_type@q1"}, device="cpu", precision="int8")
    tm = p.model("tumor_type")
    assert tm.precision == "int8" and tm.tta_flip
    sl = phantom(3, bright=(1,))
    probs = p.predict_slices("tumor_type", sl)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    res = explain.cam(p, sl[1], "gradcam", 0, use_cache=False)  # CAM runs on the fp32 twin
    assert res.heatmap.shape == sl[1].shape and explain.hook_count(tm.fp32) == 0


def test_int8_guards_altered_calibration_and_low_agreement(calibrated, monkeypatch):
    from model_zoo import write_card

    monkeypatch.setattr(runtime, "_bf16_cpu_ok", lambda: False)  # without int8, "auto" is fp32 (no AMX)
    card = json.loads((calibrated / "card.json").read_text())
    auto = Predictor.from_refs({"tumor_type": "tumor_type@q1"}, device="cpu", precision="auto").model("tumor_type")
    measured = card["int8"]["agreement_with_fp32"]["identical_labels"]
    assert auto.precision == ("int8" if measured >= 0.995 else "fp32")

    write_card(calibrated, {**card, "int8": {**card["int8"], "agreement_with_fp32": {"identical_labels": 0.9}}})
    low = Predictor.from_refs({"tumor_type": "tumor_type@q1"}, device="cpu", precision="auto").model("tumor_type")
    assert low.precision == "fp32" and "90.0% of fp32 labels" in low.note

    (calibrated / card["int8"]["file"]).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        TaskModel(__import__("core.zoo").zoo.load_checkpoint("tumor_type@q1"), "cpu", precision="int8")
