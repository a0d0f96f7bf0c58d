"""The offline natural-image backbones (CRAFT VGG16-BN, HED VGG16): key mapping on small state
dicts built here, verification, and loading into the zoo's VGG16s. The packages are not needed."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo import ChecksumError, WeightSpec, create, parse_weights, weights


def _conv_indices(model) -> list[int]:
    return [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]


def test_craft_keys_map_onto_torchvision_vgg16_bn_features():
    state = {
        "module.basenet.slice1.0.weight": torch.ones(64, 3, 3, 3),
        "module.basenet.slice1.1.running_var": torch.ones(64),
        "module.basenet.slice4.37.bias": torch.zeros(512),
        "module.basenet.slice5.1.weight": torch.ones(1024, 512, 3, 3),  # CRAFT's own head
        "module.conv_cls.0.weight": torch.ones(2),
    }
    mapped = weights.craft_features(state)
    assert set(mapped) == {"features.0.weight", "features.1.running_var", "features.37.bias"}
    tv = create("vgg16_bn", 2).state_dict()
    assert all(k in tv and tv[k].shape == v.shape for k, v in mapped.items())


def test_hed_kernels_are_transposed_onto_the_thirteen_vgg16_convolutions():
    model = create("vgg16", 2)
    convs = [model.features[i] for i in _conv_indices(model)]
    rng = np.random.default_rng(0)
    arrays, names = {}, []
    for block, n in enumerate((2, 2, 3, 3, 3), start=1):
        for k in range(n):
            names.append(f"block{block}/layers/conv2d" + (f"_{k}" if k else ""))
    for name, conv in zip(names, convs):
        o, i, kh, kw = conv.weight.shape
        arrays[f"{name}/vars/0"] = rng.standard_normal((kh, kw, i, o)).astype(np.float32)
        arrays[f"{name}/vars/1"] = rng.standard_normal(o).astype(np.float32)
    mapped = weights.hed_features(arrays)
    assert sorted(int(k.split(".")[1]) for k in mapped if k.endswith("weight")) == _conv_indices(model)
    kernel = arrays["block3/layers/conv2d_2/vars/0"]
    w = mapped["features.14.weight"]  # conv3_3 is features[14]
    assert w.shape == (256, 256, 3, 3) and float(w[7, 5, 2, 1]) == pytest.approx(float(kernel[2, 1, 5, 7]))


def _fake_backbone(tmp_path, monkeypatch, name="craft", arch="vgg16_bn"):
    """A registered backbone whose 'package' is a folder in tmp_path holding a small file."""
    source = create(arch, 2).state_dict()
    features = {
        k: torch.full_like(v, 0.5) if v.is_floating_point() else v
        for k, v in source.items()
        if k.startswith("features.") and not k.startswith("features.40") and not k.startswith("features.41")
    }
    root = tmp_path / "pkg"
    (root / "models").mkdir(parents=True)
    path = root / "models" / "w.bin"
    path.write_bytes(b"backbone bytes")
    fake = dataclasses.replace(
        weights.BACKBONES[name],
        relative_path="models/w.bin",
        sha256=hashlib.sha256(b"backbone bytes").hexdigest(),
        reader=lambda _path: features,
    )
    monkeypatch.setattr(weights.NaturalImageBackbone, "file", lambda self: path)
    monkeypatch.setitem(weights.BACKBONES, name, fake)
    return fake, path


def test_a_backbone_loads_where_it_has_tensors_and_leaves_the_rest_initialised(tmp_path, monkeypatch):
    _fake_backbone(tmp_path, monkeypatch)
    model = create("vgg16_bn", 3, weights="craft", in_channels=1)
    assert torch.all(model.features[3].weight == 0.5)  # conv1_2 from the backbone
    assert model.features[0].weight.shape[1] == 1  # first conv adapted to grey
    assert not torch.all(model.features[40].weight == 0.5)  # conv5_3: not in CRAFT
    assert model.classifier[6].out_features == 3


def test_craft_fills_the_gap_headed_vgg16_bn_whose_small_head_stays_initialised(tmp_path, monkeypatch):
    _fake_backbone(tmp_path, monkeypatch)
    model = create("vgg16_bn_gap", 3, weights="craft")
    assert torch.all(model.features[3].weight == 0.5) and not torch.all(model.features[40].weight == 0.5)
    assert model.classifier.fc.in_features == 512 and model.classifier.fc.out_features == 3
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)  # any size: the pooling is global
    assert sum(p.numel() for p in model.parameters()) < 15_000_000  # not VGG16-BN's 134 M


def test_a_backbone_file_that_does_not_match_its_sha256_is_refused(tmp_path, monkeypatch):
    _, path = _fake_backbone(tmp_path, monkeypatch)
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        create("vgg16_bn", 3, weights="craft")


def test_a_backbone_fills_only_its_own_architecture(tmp_path, monkeypatch):
    _fake_backbone(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="vgg16_bn"):
        create("vgg19", 3, weights="craft")  # the BatchNorm backbone grows into vgg19_bn only


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(weights.BackboneUnavailable, match="make train-deps"):
        weights.backbone("hed").file()


def test_provenance_names_source_licence_and_checksum():
    p = weights.backbone("craft").provenance()
    assert p["licence"].startswith("MIT") and len(p["sha256"]) == 64 and "CVPR 2019" in p["citation"]


# --- VGG19 grown from a VGG16 (Net2Net deepening): the same function before any training
@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_grown_vgg19_computes_exactly_what_its_vgg16_computes(batch_norm):
    from model_zoo.grow import deepen_vgg16

    torch.manual_seed(0)
    vgg16 = create("vgg16_bn" if batch_norm else "vgg16", 3).eval()
    if batch_norm:  # non-trivial BN statistics
        for m in vgg16.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    state16 = {k: v for k, v in vgg16.state_dict().items() if k.startswith("features.")}
    vgg19 = create("vgg19_bn" if batch_norm else "vgg19", 3).eval()
    vgg19.load_state_dict(deepen_vgg16(state16, batch_norm), strict=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = vgg16.features(x), vgg19.features(x)
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert len([m for m in vgg19.features if isinstance(m, torch.nn.Conv2d)]) == 16


def test_craft_grows_into_vgg19_bn_with_its_missing_conv5_3_left_initialised(tmp_path, monkeypatch):
    _fake_backbone(tmp_path, monkeypatch)
    model = create("vgg19_bn", 3, weights="craft")
    assert torch.all(model.features[3].weight == 0.5)  # conv1_2 from CRAFT
    assert torch.all(model.features[43].weight == 0.5)  # conv5_2 (vgg16_bn's features[37])
    assert not torch.all(model.features[46].weight == 0.5)  # conv5_3: not in CRAFT
    centre = model.features[49].weight[:, :, 1, 1]  # conv5_4: inserted identity
    assert torch.equal(centre, torch.eye(512)) and model.features[49].weight.abs().sum() == 512


# --- explicit weight specifications
@pytest.mark.parametrize(
    "text,expected",
    [
        (None, WeightSpec("random")),
        ("", WeightSpec("random")),
        ("random", WeightSpec("random")),
        ("none", WeightSpec("random")),
        ("imagenet", WeightSpec("imagenet")),
        ("craft", WeightSpec("craft")),
        ("hed", WeightSpec("hed")),
        ("tumor_type@active", WeightSpec("zoo", ref="tumor_type@active")),
        ("presence@1.2.1", WeightSpec("zoo", ref="presence@1.2.1")),
        ("/models/w@2.pt", WeightSpec("file", path=Path("/models/w@2.pt"))),  # a path, not a zoo reference
        ("./w@2.pt", WeightSpec("file", path=Path("w@2.pt"))),
        ("w.pt", WeightSpec("file", path=Path("w.pt"))),
    ],
)
def test_weights_are_read_once_by_one_grammar(text, expected):
    assert parse_weights(text) == expected
    assert parse_weights(expected) is expected
    assert parse_weights(str(expected)) == expected or expected.kind == "file"


def test_a_path_object_is_a_file_and_bad_specs_are_refused(tmp_path):
    assert parse_weights(tmp_path / "a@b.pt") == WeightSpec("file", path=tmp_path / "a@b.pt")
    with pytest.raises(ValueError, match="unknown weight source"):
        WeightSpec("imagenet21k")
    with pytest.raises(ValueError, match="ref"):
        WeightSpec("zoo")
    with pytest.raises(TypeError):
        parse_weights(3)
    with pytest.raises(FileNotFoundError, match="imagenet"):  # the message lists what is accepted
        create("vgg19_slim", 2, weights="imagenett")
