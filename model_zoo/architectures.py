"""Builders for every architecture in the zoo; each registers itself with `@register_model`.

Builder signature: `builder(num_classes, in_channels=3, imagenet=False) -> nn.Module`.
`build(spec, num_classes)` is how the rest of the zoo calls them. `factory.create(...,
weights="imagenet")` does not use `imagenet=True`: it builds with random weights, then loads the
verified cached torchvision file with torch.load(weights_only=True). The builders' `imagenet=True`
goes through torchvision's loader (which may download): avoid it.

- vgg19, vgg19_bn: torchvision VGG (as in the papers), 224 px, ImageNet normalisation.
- vgg16, vgg16_bn: torchvision VGG16, the layout of the offline natural-image backbones (HED, CRAFT).
- vgg19_slim (16-32-64-128-256) and vgg19_slim_w (24-48-96-192-384): width-reduced VGG19-BN with
  the same five blocks (2, 2, 4, 4, 4 convs), global-average-pooled head; 128 px, CPU friendly.
- comparators: resnet18, resnet50, densenet121, efficientnet_b0 (torchvision).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models import get_weight

from model_zoo.modules import adapt_conv_weight, set_inplace_false
from model_zoo.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, register_model

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _vgg_layout(cfg: list, batch_norm: bool) -> tuple[tuple[tuple[str, ...], ...], str]:
    """Block parameter prefixes (split at the MaxPools) and the last ReLU of torchvision's
    `features` Sequential for a VGG cfg, computed without building the network."""
    blocks, current, idx, last_relu = [], [], 0, ""
    for v in cfg:
        if v == "M":
            blocks.append(tuple(current))
            current = []
            idx += 1
            continue
        current.append(f"features.{idx}")  # conv
        if batch_norm:
            current.append(f"features.{idx + 1}")  # bn
            last_relu = f"features.{idx + 2}"
            idx += 3
        else:
            last_relu = f"features.{idx + 1}"
            idx += 2
    return tuple(blocks), last_relu


def _replace_first_conv(parent, attr: str, in_channels: int, pretrained: bool) -> None:
    """Swap the conv `parent.<attr>` for one taking `in_channels`; with pretrained weights its
    kernel is the channel mean of the RGB kernel (see modules.adapt_conv_weight)."""
    old = getattr(parent, attr)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
        old.padding_mode,
    )
    if pretrained:
        with torch.no_grad():
            new.weight.copy_(adapt_conv_weight(old.weight, in_channels))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    setattr(parent, attr, new)


def _tv_weights(enum_name: str, imagenet: bool):
    return get_weight(enum_name) if imagenet else None


# ------------------------------------------------------------------------------------ VGG 16
# the two natural-image backbones available offline are VGG16s (model_zoo/weights.py)
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
_VGG16_BLOCKS, _VGG16_RELU = _vgg_layout(VGG16_CFG, batch_norm=False)
_VGG16BN_BLOCKS, _VGG16BN_RELU = _vgg_layout(VGG16_CFG, batch_norm=True)


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer=_VGG16_RELU,
    blocks=_VGG16_BLOCKS,
    head=("classifier",),
    imagenet_weights="VGG16_Weights.IMAGENET1K_V1",
    dropout=0.5,
    description="VGG16 (torchvision); weights='hed' starts it from HED's edge-detection VGG16",
)
def vgg16(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    return _torchvision_vgg("vgg16", "VGG16_Weights.IMAGENET1K_V1", num_classes, in_channels, imagenet)


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer=_VGG16BN_RELU,
    blocks=_VGG16BN_BLOCKS,
    head=("classifier",),
    imagenet_weights="VGG16_BN_Weights.IMAGENET1K_V1",
    dropout=0.5,
    description="VGG16 with BatchNorm (torchvision); weights='craft' starts it from CRAFT's backbone",
)
def vgg16_bn(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    return _torchvision_vgg("vgg16_bn", "VGG16_BN_Weights.IMAGENET1K_V1", num_classes, in_channels, imagenet)


class GapVGG(nn.Module):
    """torchvision VGG `features` (same parameter names, so VGG16-BN backbones load into it), then
    global average pooling, dropout and one Linear: 14.7 M parameters instead of VGG16-BN's 134 M
    (whose fc layers hold 90% of them), and any input size >= 32 px."""

    def __init__(self, features: nn.Sequential, num_classes: int, dropout: float = 0.3):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(OrderedDict(dropout=nn.Dropout(dropout), fc=nn.Linear(512, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model(
    input_size=128,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer=_VGG16BN_RELU,
    blocks=_VGG16BN_BLOCKS,
    head=("classifier",),
    dropout=0.3,
    description="VGG16-BN features + global average pooling + dropout + linear; "
    "weights='craft' starts it from CRAFT's backbone (128 px, CPU friendly)",
)
def vgg16_bn_gap(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    features = torchvision.models.vgg16_bn(weights=None, progress=False).features
    if in_channels != 3:
        _replace_first_conv(features, "0", in_channels, False)
    return GapVGG(features, num_classes)


# ------------------------------------------------------------------------------------ VGG 19
_VGG19_BLOCKS, _VGG19_RELU = _vgg_layout(VGG19_CFG, batch_norm=False)
_VGG19BN_BLOCKS, _VGG19BN_RELU = _vgg_layout(VGG19_CFG, batch_norm=True)


def _torchvision_vgg(fn_name: str, enum_name: str, num_classes: int, in_channels: int, imagenet: bool):
    model = getattr(torchvision.models, fn_name)(weights=_tv_weights(enum_name, imagenet), progress=False)
    model.classifier[6] = nn.Linear(model.classifier[6].in_features, num_classes)
    if in_channels != 3:
        _replace_first_conv(model.features, "0", in_channels, imagenet)
    return model


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer=_VGG19_RELU,
    blocks=_VGG19_BLOCKS,
    head=("classifier",),
    imagenet_weights="VGG19_Weights.IMAGENET1K_V1",
    dropout=0.5,
    description="VGG19 (torchvision), as in Swati et al.; 139.6 M parameters with a 3-class head",
)
def vgg19(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    return _torchvision_vgg("vgg19", "VGG19_Weights.IMAGENET1K_V1", num_classes, in_channels, imagenet)


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer=_VGG19BN_RELU,
    blocks=_VGG19BN_BLOCKS,
    head=("classifier",),
    imagenet_weights="VGG19_BN_Weights.IMAGENET1K_V1",
    dropout=0.5,
    description="VGG19 with BatchNorm (torchvision)",
)
def vgg19_bn(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    return _torchvision_vgg("vgg19_bn", "VGG19_BN_Weights.IMAGENET1K_V1", num_classes, in_channels, imagenet)


# ------------------------------------------------------------------------------- slim VGG19-BN
SLIM_CONVS = (2, 2, 4, 4, 4)
SLIM_WIDTHS = (16, 32, 64, 128, 256)
SLIM_WIDE_WIDTHS = (24, 48, 96, 192, 384)


class SlimVGG(nn.Module):
    """VGG19-BN layout (five blocks of 2, 2, 4, 4, 4 conv-BN-ReLU, each ending in a 2x2 max-pool)
    at reduced widths, then global average pooling, dropout and one Linear.
    Module names: features.block{1..5}.{conv,bn,relu}{1..k}, features.block{b}.pool, head.fc.
    Any input size >= 32 px works (the pooling is global)."""

    def __init__(
        self, num_classes: int, in_channels: int = 3, widths=SLIM_WIDTHS, convs=SLIM_CONVS, dropout: float = 0.3
    ):
        super().__init__()
        blocks, c_in = OrderedDict(), in_channels
        for b, (width, n) in enumerate(zip(widths, convs), start=1):
            layers = OrderedDict()
            for i in range(1, n + 1):
                layers[f"conv{i}"] = nn.Conv2d(c_in, width, 3, padding=1, bias=False)
                layers[f"bn{i}"] = nn.BatchNorm2d(width)
                layers[f"relu{i}"] = nn.ReLU(inplace=False)
                c_in = width
            layers["pool"] = nn.MaxPool2d(2, 2)
            blocks[f"block{b}"] = nn.Sequential(layers)
        self.features = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(OrderedDict(dropout=nn.Dropout(dropout), fc=nn.Linear(c_in, num_classes)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


_SLIM_BLOCKS = tuple((f"features.block{b}",) for b in range(1, 6))
# Grad-CAM reads block 4 (input/8: 12x12 at 96 px), not block 5 (6x6): on Figshare fold 1 with the
# fold-1 tumor_type 1.1.0 model, `python -m core cam-eval --limit 300 --methods gradcam --layer ...`
# gave pointing 0.23 / energy-in-box 0.084 at block 4 against 0.08 / 0.039 at block 5 (chance ~0.02)
_SLIM_CAM = f"features.block4.relu{SLIM_CONVS[3]}"


@register_model(
    input_size=128,
    cam_layer=_SLIM_CAM,
    blocks=_SLIM_BLOCKS,
    head=("head",),
    dropout=0.3,
    description="width-reduced VGG19-BN 16-32-64-128-256, GAP head, trains on a CPU",
)
def vgg19_slim(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    if imagenet:
        raise ValueError("vgg19_slim has no ImageNet weights")
    return SlimVGG(num_classes, in_channels, SLIM_WIDTHS, SLIM_CONVS, dropout=0.3)


@register_model(
    input_size=128,
    cam_layer=_SLIM_CAM,
    blocks=_SLIM_BLOCKS,
    head=("head",),
    dropout=0.3,
    description="width-reduced VGG19-BN 24-48-96-192-384, GAP head",
)
def vgg19_slim_w(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    if imagenet:
        raise ValueError("vgg19_slim_w has no ImageNet weights")
    return SlimVGG(num_classes, in_channels, SLIM_WIDE_WIDTHS, SLIM_CONVS, dropout=0.3)


# ------------------------------------------------------------------------------- comparators
_RESNET_BLOCKS = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _torchvision_resnet(fn_name: str, enum_name: str, num_classes: int, in_channels: int, imagenet: bool):
    model = getattr(torchvision.models, fn_name)(weights=_tv_weights(enum_name, imagenet), progress=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if in_channels != 3:
        _replace_first_conv(model, "conv1", in_channels, imagenet)
    return model


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer="layer4",
    blocks=_RESNET_BLOCKS,
    head=("fc",),
    imagenet_weights="ResNet18_Weights.IMAGENET1K_V1",
    dropout=0.0,
    description="ResNet-18 (torchvision) comparator",
)
def resnet18(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    return _torchvision_resnet("resnet18", "ResNet18_Weights.IMAGENET1K_V1", num_classes, in_channels, imagenet)


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer="layer4",
    blocks=_RESNET_BLOCKS,
    head=("fc",),
    imagenet_weights="ResNet50_Weights.IMAGENET1K_V2",
    dropout=0.0,
    description="ResNet-50 (torchvision) comparator",
)
def resnet50(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    return _torchvision_resnet("resnet50", "ResNet50_Weights.IMAGENET1K_V2", num_classes, in_channels, imagenet)


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer="features.norm5",
    blocks=(
        ("features.conv0", "features.norm0"),
        ("features.denseblock1", "features.transition1"),
        ("features.denseblock2", "features.transition2"),
        ("features.denseblock3", "features.transition3"),
        ("features.denseblock4", "features.norm5"),
    ),
    head=("classifier",),
    imagenet_weights="DenseNet121_Weights.IMAGENET1K_V1",
    dropout=0.0,
    description="DenseNet-121 (torchvision) comparator",
)
def densenet121(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    model = torchvision.models.densenet121(
        weights=_tv_weights("DenseNet121_Weights.IMAGENET1K_V1", imagenet), progress=False
    )
    model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    if in_channels != 3:
        _replace_first_conv(model.features, "conv0", in_channels, imagenet)
    return model


@register_model(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    cam_layer="features.8",
    blocks=(
        ("features.0", "features.1"),
        ("features.2",),
        ("features.3",),
        ("features.4", "features.5"),
        ("features.6", "features.7", "features.8"),
    ),
    head=("classifier",),
    imagenet_weights="EfficientNet_B0_Weights.IMAGENET1K_V1",
    dropout=0.2,
    description="EfficientNet-B0 (torchvision) comparator",
)
def efficientnet_b0(num_classes: int, in_channels: int = 3, imagenet: bool = False):
    model = torchvision.models.efficientnet_b0(
        weights=_tv_weights("EfficientNet_B0_Weights.IMAGENET1K_V1", imagenet), progress=False
    )
    model.classifier[1] = nn.Linear(model.classifier[1].in_features, num_classes)
    if in_channels != 3:
        _replace_first_conv(model.features[0], "0", in_channels, imagenet)
    return model


def build(spec: ModelSpec, num_classes: int) -> nn.Module:
    """`spec`'s architecture with fresh weights and `num_classes` outputs, ready for Grad-CAM (no
    in-place activations)."""
    return set_inplace_false(spec.builder(int(num_classes), spec.in_channels, False))
