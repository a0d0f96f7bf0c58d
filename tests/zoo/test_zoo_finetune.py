"""model_zoo.finetune: freezing by block, frozen BatchNorm, backbone features."""

import pytest
import torch

from model_zoo import (
    backbone_features,
    block_parameters,
    classifier,
    count_parameters,
    create,
    freeze_all_but,
    get_spec,
    head_parameters,
    set_frozen_bn_eval,
    train_mode,
)


def _model(name, big_models):
    return big_models(name)


@pytest.mark.parametrize("name", ["vgg19_slim", "resnet18", "efficientnet_b0", "vgg19"])
def test_freeze_all_but_each_stage(name, big_models):
    spec = get_spec(name)
    model = _model(name, big_models)
    blocks = [{n for n, _ in b} for b in block_parameters(model, spec)]
    head = {n for n, _ in head_parameters(model, spec)}
    for n_top in range(0, 6):
        trainable = freeze_all_but(model, spec, n_top)
        expected = set(head).union(*blocks[5 - n_top :]) if n_top else set(head)
        assert {n for n, _ in trainable} == expected
        assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    assert freeze_all_but(model, spec, 0, train_head=False) == []
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError):
        freeze_all_but(model, spec, 6)
    with pytest.raises(ValueError):
        freeze_all_but(model, spec, -1)
    for p in model.parameters():  # leave the shared model as built
        p.requires_grad_(True)


def test_frozen_batchnorm_keeps_running_stats():
    spec = get_spec("vgg19_slim")
    model = create("vgg19_slim", 3)
    freeze_all_but(model, spec, 1)
    train_mode(model)
    bn1, bn5 = model.features.block1.bn1, model.features.block5.bn1
    assert not bn1.training and bn5.training and model.head.training
    before1, before5 = bn1.running_mean.clone(), bn5.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    torch.testing.assert_close(bn1.running_mean, before1)
    assert not torch.equal(bn5.running_mean, before5)
    model.train()
    set_frozen_bn_eval(model)
    assert not bn1.training


@pytest.mark.parametrize(
    "name,dim",
    [("vgg19_slim", 256), ("resnet18", 512), ("densenet121", 1024), ("efficientnet_b0", 1280), ("vgg19", 25088)],
)
def test_backbone_features_feed_the_classifier(name, dim, big_models):
    spec = get_spec(name)
    model = _model(name, big_models).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = backbone_features(model, spec, x)
        assert feats.shape == (2, dim)
        torch.testing.assert_close(classifier(model, spec)(feats), model(x), rtol=1e-4, atol=1e-5)
    # no hook is left behind: a plain forward still reaches the head
    assert not classifier(model, spec)._forward_pre_hooks


def test_backbone_features_carry_gradients():
    spec = get_spec("vgg19_slim")
    model = create("vgg19_slim", 3)
    freeze_all_but(model, spec, 1)
    backbone_features(model, spec, torch.randn(2, 3, 64, 64)).sum().backward()
    assert model.features.block5.conv4.weight.grad is not None
    assert model.features.block1.conv1.weight.grad is None
