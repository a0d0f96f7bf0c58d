"""model_zoo.registry: architectures, block partitions, fine-tuning helpers, weights sources."""
import pytest
import torch
from torch import nn

import model_zoo
from model_zoo.registry import (
    ChecksumError,
    ImageNetWeightsUnavailable,
    ModelSpec,
    UnsafeCheckpointError,
    backbone_features,
    block_parameters,
    cam_layer,
    classifier,
    count_parameters,
    create,
    freeze_all_but,
    get_spec,
    head_parameters,
    list_models,
    register,
    register_model,
    set_frozen_bn_eval,
    train_mode,
    unassigned_parameters,
)

ALL = ["densenet121", "efficientnet_b0", "resnet18", "resnet50", "vgg19", "vgg19_bn", "vgg19_slim",
       "vgg19_slim_w"]
# one per first-conv code path (resnet50 / vgg19_slim_w share theirs with resnet18 / vgg19_slim)
STEMS = ["densenet121", "efficientnet_b0", "resnet18", "vgg19_slim"]


def _model(name, big_models):
    return big_models(name)


def test_list_models_and_unknown_name():
    assert set(ALL) <= set(list_models())
    with pytest.raises(KeyError, match="vgg19_slim"):
        get_spec("vgg20")


def test_register_model_decorator_and_duplicate():
    @register_model(name="_test_tiny", input_size=32, blocks=(("body",),), head=("fc",),
                    cam_layer="body")
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
    assert get_spec("vgg19_slim").cam_layer == "features.block4.relu4"   # measured finer maps (cam-eval)


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


@pytest.mark.parametrize("name", ["vgg19_slim", "resnet18", "efficientnet_b0", "vgg19"])
def test_freeze_all_but_each_stage(name, big_models):
    spec = get_spec(name)
    model = _model(name, big_models)
    blocks = [{n for n, _ in b} for b in block_parameters(model, spec)]
    head = {n for n, _ in head_parameters(model, spec)}
    for n_top in range(0, 6):
        trainable = freeze_all_but(model, spec, n_top)
        expected = set(head).union(*blocks[5 - n_top:]) if n_top else set(head)
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


@pytest.mark.parametrize("name,dim", [("vgg19_slim", 256), ("resnet18", 512), ("densenet121", 1024),
                                      ("efficientnet_b0", 1280), ("vgg19", 25088)])
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


def test_imagenet_unavailable_names_file_and_directory(tmp_path):
    with pytest.raises(ImageNetWeightsUnavailable) as info:
        create("vgg19", 3, weights="imagenet")
    msg = str(info.value)
    directory = tmp_path / "torch-home" / "hub" / "checkpoints"
    assert "vgg19-dcbb9e9d.pth" in msg and str(directory) in msg
    assert info.value.filename == "vgg19-dcbb9e9d.pth" and info.value.directory == directory
    assert not directory.exists() or not any(directory.iterdir()), "nothing was downloaded"
    with pytest.raises(ImageNetWeightsUnavailable, match="no ImageNet weights"):
        create("vgg19_slim", 3, weights="imagenet")


def test_corrupt_cached_imagenet_file_is_refused(tmp_path):
    directory = tmp_path / "torch-home" / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    (directory / "resnet18-f37072fd.pth").write_bytes(b"not the real weights")
    with pytest.raises(ChecksumError, match="f37072fd"):
        create("resnet18", 3, weights="imagenet")
    assert model_zoo.imagenet_available("resnet18") is False


def _stand_in_imagenet_file(tmp_path, monkeypatch, arch, filename_stem):
    """A cached 'ImageNet' file for `arch` whose name carries its real hash prefix, and the
    weights enum pointed at it (the real files are not on test machines)."""
    import hashlib

    import model_zoo.registry as reg
    import torchvision

    src = getattr(torchvision.models, arch)(weights=None)
    path = tmp_path / "stand-in.pth"
    torch.save(src.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    directory = tmp_path / "torch-home" / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    filename = f"{filename_stem}-{digest}.pth"
    path.rename(directory / filename)

    class FakeEnum:
        url = f"https://example.invalid/models/{filename}"

    monkeypatch.setattr(reg, "_weights_enum", lambda spec: FakeEnum)
    return src, directory / filename


def test_imagenet_weights_load_from_cache_with_new_head(tmp_path, monkeypatch):
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    src, path = _stand_in_imagenet_file(tmp_path, monkeypatch, "resnet18", "resnet18")
    assert model_zoo.imagenet_available("resnet18")
    model = create("resnet18", 3, weights="imagenet")
    torch.testing.assert_close(model.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    torch.testing.assert_close(model.bn1.running_var, src.bn1.running_var)
    assert model.fc.weight.shape == (3, 512)
    grey = create("resnet18", 2, weights="imagenet", in_channels=1)
    torch.testing.assert_close(grey.conv1.weight, src.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(grey.layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def test_imagenet_old_densenet_keys_are_renamed(tmp_path, monkeypatch):
    """torchvision's DenseNet file uses old 'norm.1' style keys and has no num_batches_tracked."""
    import re

    src, path = _stand_in_imagenet_file(tmp_path, monkeypatch, "densenet121", "densenet121")
    old = {}
    for k, v in src.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        old[re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k)] = v
    assert any(".norm.1." in k for k in old)
    path.unlink()
    torch.save(old, path)
    monkeypatch.setattr(model_zoo.registry, "imagenet_weights_file", lambda spec: path)
    model = create("densenet121", 3, weights="imagenet")
    torch.testing.assert_close(model.features.denseblock2.denselayer3.norm1.weight,
                               src.features.denseblock2.denselayer3.norm1.weight)


def test_weights_from_local_state_dict(tmp_path):
    src = create("vgg19_slim", 2)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    model = create("vgg19_slim", 3, weights=str(path))
    torch.testing.assert_close(model.features.block3.conv2.weight, src.features.block3.conv2.weight)
    torch.testing.assert_close(model.features.block5.bn4.running_var, src.features.block5.bn4.running_var)
    assert model.head.fc.weight.shape == (3, 256)
    same = create("vgg19_slim", 2, weights=path)
    torch.testing.assert_close(same.head.fc.weight, src.head.fc.weight)
    with pytest.raises(ValueError, match="does not fit"):
        create("vgg19_slim_w", 2, weights=path)
    with pytest.raises(FileNotFoundError):
        create("vgg19_slim", 2, weights=str(tmp_path / "missing.pt"))


def test_local_weights_with_code_in_pickle_are_refused(tmp_path):
    import os

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"features.block1.conv1.weight": Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        create("vgg19_slim", 2, weights=path)
    assert not marker.exists()
