"""model_zoo.registry and model_zoo.architectures: names, specs, builders, block partitions."""

import pytest
import torch
from torch import nn

from model_zoo import (
    ModelSpec,
    block_parameters,
    cam_layer,
    count_parameters,
    create,
    get_spec,
    head_parameters,
    list_models,
    register,
    register_model,
    unassigned_parameters,
)

ALL = ["densenet121", "efficientnet_b0", "resnet18", "resnet50", "vgg19", "vgg19_bn", "vgg19_slim", "vgg19_slim_w"]
# one per first-conv code path (resnet50 / vgg19_slim_w share theirs with resnet18 / vgg19_slim)
STEMS = ["densenet121", "efficientnet_b0", "resnet18", "vgg19_slim"]


def _model(name, big_models):
    return big_models(name)


def test_list_models_and_unknown_name():
    assert set(ALL) <= set(list_models())
    with pytest.raises(KeyError, match="vgg19_slim"):
        get_spec("vgg20")


def test_register_model_decorator_and_duplicate():
    @register_model(name="_test_tiny", input_size=32, blocks=(("body",),), head=("fc",), cam_layer="body")
    def _tiny(num_classes, in_channels=3, imagenet=False):
        return nn.Sequential()

    spec = get_spec("_test_tiny")
    assert spec.builder is _tiny and spec.input_size == 32 and "_test_tiny" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register(ModelSpec(name="_test_tiny", builder=_tiny, input_size=32))
    with pytest.raises(ValueError, match="mean/std"):
        register(ModelSpec(name="_test_bad", builder=_tiny, input_size=32, in_channels=1))


@pytest.mark.parametrize("name", ALL)
def test_builds_and_runs_small_input(name, big_models):
    spec = get_spec(name)
    model = _model(name, big_models).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    # pytorch-grad-cam needs non-inplace activations
    assert not [n for n, m in model.named_modules() if isinstance(m, nn.ReLU) and m.inplace]
    assert isinstance(cam_layer(model, spec), nn.Module)
    assert len(spec.blocks) == 5 and spec.head


@pytest.mark.parametrize("name", STEMS)
def test_one_channel_input(name):
    spec = get_spec(name).with_channels(1)
    assert spec.in_channels == 1 and len(spec.mean) == 1 and len(spec.std) == 1
    model = create(name, 2, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2)
    assert unassigned_parameters(model, get_spec(name)) == []


def test_first_conv_adapted_from_rgb_weights():
    from model_zoo.architectures import _replace_first_conv

    parent = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    rgb = parent[0].weight.detach().clone()
    _replace_first_conv(parent, "0", 1, pretrained=True)
    assert parent[0].in_channels == 1
    torch.testing.assert_close(parent[0].weight, rgb.sum(dim=1, keepdim=True))
    # a grey image gives the same response through the adapted 1-channel conv as replicated to RGB
    x = torch.rand(1, 1, 8, 8)
    ref = nn.functional.conv2d(x.repeat(1, 3, 1, 1), rgb, padding=1)
    torch.testing.assert_close(nn.functional.conv2d(x, parent[0].weight, padding=1), ref, rtol=1e-4, atol=1e-5)


def test_slim_runs_at_other_sizes_and_is_small():
    model = create("vgg19_slim", 3).eval()
    with torch.no_grad():
        for size in (64, 128, 160):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 3)
    assert 1_000_000 <= count_parameters(model) <= 3_000_000
    assert get_spec("vgg19_slim").input_size == 128
    assert get_spec("vgg19_slim").cam_layer == "features.block4.relu4"  # measured finer maps (cam-eval)


@pytest.mark.parametrize("name", ALL)
def test_blocks_and_head_cover_every_parameter_exactly_once(name, big_models):
    spec = get_spec(name)
    model = _model(name, big_models)
    blocks = block_parameters(model, spec)
    assert len(blocks) == 5 and all(blocks), "every block has parameters"
    head = head_parameters(model, spec)
    assert head
    names = [n for b in blocks for n, _ in b] + [n for n, _ in head]
    assert len(names) == len(set(names))
    assert set(names) == {n for n, _ in model.named_parameters()}
    assert unassigned_parameters(model, spec) == []


@pytest.mark.parametrize("name", ["vgg19", "vgg19_bn"])
def test_vgg_blocks_split_at_maxpools(name, big_models):
    spec = get_spec(name)
    model = big_models(name)
    expected, current = [], []
    for idx, module in enumerate(model.features):
        if isinstance(module, nn.MaxPool2d):
            expected.append(current)
            current = []
        elif list(module.parameters()):
            current.append(f"features.{idx}")
    assert [list(b) for b in spec.blocks] == expected
    convs = [sum(1 for n, p in b if p.ndim == 4) for b in block_parameters(model, spec)]
    assert convs == [2, 2, 4, 4, 4]
    relus = [i for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
    assert spec.cam_layer == f"features.{relus[-1]}"


def test_slim_blocks_conv_counts():
    spec = get_spec("vgg19_slim")
    model = create("vgg19_slim", 3)
    convs = [sum(1 for n, p in b if p.ndim == 4) for b in block_parameters(model, spec)]
    assert convs == [2, 2, 4, 4, 4]
    widths = [[p.shape[0] for n, p in b if p.ndim == 4][-1] for b in block_parameters(model, spec)]
    assert widths == [16, 32, 64, 128, 256]
