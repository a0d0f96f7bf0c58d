"""Fine-tuning strategies: which parameters train at each stage, and the augmentation."""

import numpy as np
import pytest
import torch

import model_zoo as zoo
from core.training import strategies
from core.training.augment import AugmentConfig, augment_batch
from core.training.experiment import model_spec
from core.training.loop import FitConfig
from core.training.strategies import Data, run_strategy
from tests.training._factories import blob_image

SPEC = model_spec("vgg19_slim", 32)


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (
        np.stack(
            [
                np.asarray(
                    torch.nn.functional.interpolate(
                        torch.from_numpy(blob_image(c, rng)).float()[None, None], size=32, mode="bilinear"
                    )[0, 0]
                )
                for c in y
            ]
        )
        .clip(0, 255)
        .astype(np.uint8)
    )
    return Data(x[:18], y[:18], x[18:], y[18:], 3)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def _block_of(name):
    return name.split(".")[1] if name.startswith("features.") else "head"


CFG = FitConfig(epochs=1, batch_size=6, lr=1e-2, augment=False, log_every=1, seed=0)


def test_blockwise_unfreezes_top_down_and_reports_every_stage(monkeypatch):
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 3)
    calls, changed_per_stage = [], []
    real = zoo.freeze_all_but
    real_fit = strategies.fit
    real_head = strategies.train_head

    def spy_freeze(m, spec, n, train_head=True):
        calls.append(n)
        return real(m, spec, n, train_head)

    def spy_fit(m, *a, **kw):
        before = _snapshot(m)
        out = real_fit(m, *a, **kw)
        changed_per_stage.append({_block_of(n) for n in _changed(before, m)})
        return out

    def spy_head(m, *a, **kw):
        before = _snapshot(m)
        out = real_head(m, *a, **kw)
        changed_per_stage.append({_block_of(n) for n in _changed(before, m)})
        return out

    monkeypatch.setattr(zoo, "freeze_all_but", spy_freeze)
    monkeypatch.setattr(strategies, "fit", spy_fit)
    monkeypatch.setattr(strategies, "train_head", spy_head)
    report = run_strategy("blockwise", model, SPEC, _data(), CFG, max_blocks=2, lr_decay=0.5)

    assert calls[:3] == [0, 1, 2]  # head, then block 5, then blocks 4-5
    assert changed_per_stage == [{"head"}, {"head", "block5"}, {"head", "block4", "block5"}]
    assert [s["stage"] for s in report["stages"]] == ["head", "block5", "block4"]
    assert [s["lr"] for s in report["stages"]] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    assert all(s["val_accuracy"] is not None for s in report["stages"])
    assert report["kept_stage"] in {"head", "block5", "block4"}


def test_blockwise_keeps_the_best_stage_on_validation(monkeypatch):
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 3)
    scores = iter([0.5, 0.9, 0.2])  # head epoch, head stage, block-5 stage: head best -> head weights kept
    monkeypatch.setattr(strategies, "_val_score", lambda *a, **k: next(scores))
    after_head = {}
    real_head = strategies.train_head

    def spy_head(m, *a, **kw):
        out = real_head(m, *a, **kw)
        after_head.update(_snapshot(m))
        return out

    monkeypatch.setattr(strategies, "train_head", spy_head)
    report = run_strategy("blockwise", model, SPEC, _data(), CFG, max_blocks=1)
    assert report["kept_stage"] == "head"
    assert not _changed(after_head, model)


def test_head_strategy_trains_only_the_head():
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 3)
    before = _snapshot(model)
    run_strategy("head", model, SPEC, _data(), FitConfig(epochs=3, batch_size=6, lr=1e-2))
    assert {_block_of(n) for n in _changed(before, model)} == {"head"}
    bn = model.features.block1.bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # backbone BN untouched


def test_full_strategy_trains_every_block():
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 3)
    before = _snapshot(model)
    run_strategy("full", model, SPEC, _data(), CFG)
    assert {_block_of(n) for n in _changed(before, model)} == {f"block{i}" for i in range(1, 6)} | {"head"}


def test_top_strategy_trains_the_top_blocks_and_head_together_and_keeps_frozen_bn_statistics():
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 3)
    before = _snapshot(model)
    bn = model.features.block3.bn1
    stats = bn.running_mean.clone()
    report = run_strategy("top", model, SPEC, _data(), CFG, max_blocks=2)
    assert {_block_of(n) for n in _changed(before, model)} == {"block4", "block5", "head"}
    assert torch.equal(bn.running_mean, stats)  # frozen block: BN in eval
    assert report["trainable_blocks"] == 2 and len(report["history"]) == 1
    assert all(p.requires_grad for p in model.parameters())  # ready for Grad-CAM afterwards


def test_unknown_strategy_and_imagenet_init_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy"):
        run_strategy("lora", None, SPEC, _data(), CFG)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(zoo.ImageNetWeightsUnavailable):
        zoo.create("vgg19", 3, weights="imagenet")


def test_augment_keeps_range_background_and_is_seeded():
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:24, 8:24] = torch.linspace(0.1, 1.0, 16).view(1, 1, 1, 16)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.all(a[:, :, :2, :2] == 0)  # background corners stay background
    assert not torch.allclose(a, x)
    flip_only = AugmentConfig(
        rotate_deg=0, zoom=(1, 1), shift=0, hflip=1.0, gamma=(1, 1), contrast=(1, 1), brightness=0
    )
    assert torch.allclose(augment_batch(x, flip_only), torch.flip(x, dims=[3]), atol=1e-5)


def test_rotated_turns_the_image_about_its_centre():
    from core.training.loop import rotated

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.allclose(rotated(x, 0), x)
    assert torch.allclose(rotated(x, 90), torch.rot90(x, 1, (2, 3)), atol=1e-5)


def test_rotation_views_average_into_the_logits():
    from core.training.loop import predict_logits

    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 3).eval()
    spec = model_spec("vgg19_slim", 32)
    images = (np.random.default_rng(0).random((4, 32, 32)) * 255).astype(np.uint8)
    flip = predict_logits(model, spec, images, tta_flip=True)
    assert np.allclose(predict_logits(model, spec, images, tta_flip=True, rotations=(0.0,)), flip, atol=1e-5)
    assert not np.allclose(predict_logits(model, spec, images, tta_flip=True, rotations=(30.0,)), flip, atol=1e-5)
