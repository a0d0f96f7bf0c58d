"""Fine-tuning helpers over a spec's block partition (timm's fine-tuning helpers' role):
parameters by block, freezing all but the top blocks, BatchNorm in frozen blocks, and the pooled
penultimate features a frozen backbone feeds its head.

Learning rates per stage are the training strategy's choice (core.training.strategies:
lr * decay**k for the top k blocks); these helpers say which parameters each stage trains.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from model_zoo.modules import unwrap
from model_zoo.registry import ModelSpec, belongs_to


def block_parameters(model: nn.Module, spec: ModelSpec) -> list[list[tuple[str, nn.Parameter]]]:
    """Parameters of each backbone block, bottom->top (spec.blocks order)."""
    named = list(unwrap(model).named_parameters())
    return [[(n, p) for n, p in named if any(belongs_to(n, pre) for pre in block)] for block in spec.blocks]


def head_parameters(model: nn.Module, spec: ModelSpec) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in unwrap(model).named_parameters() if spec.in_head(n)]


def unassigned_parameters(model: nn.Module, spec: ModelSpec) -> list[str]:
    """Parameter names in no block and not in the head, or in more than one group (should be [])."""
    groups = [[n for n, _ in b] for b in block_parameters(model, spec)] + [[n for n, _ in head_parameters(model, spec)]]
    counts: dict[str, int] = {}
    for g in groups:
        for n in g:
            counts[n] = counts.get(n, 0) + 1
    return [n for n, _ in unwrap(model).named_parameters() if counts.get(n, 0) != 1]


def freeze_all_but(
    model: nn.Module, spec: ModelSpec, n_top_blocks: int, train_head: bool = True
) -> list[tuple[str, nn.Parameter]]:
    """requires_grad=False everywhere except the head (when train_head) and the top
    `n_top_blocks` blocks (0: head only; len(spec.blocks): the whole network). Returns the
    trainable (name, parameter) pairs, bottom->top, for the optimiser.

    BatchNorm layers in frozen blocks must not update their running statistics: after every
    `model.train()` call `set_frozen_bn_eval(model)` (or use `train_mode(model)`, which does both).
    """
    n = int(n_top_blocks)
    if not 0 <= n <= len(spec.blocks):
        raise ValueError(f"n_top_blocks must be in 0..{len(spec.blocks)} for {spec.name}, got {n_top_blocks}")
    for p in unwrap(model).parameters():
        p.requires_grad_(False)
    trainable: list[tuple[str, Any]] = []
    for block in block_parameters(model, spec)[len(spec.blocks) - n :] if n else []:
        trainable.extend(block)
    if train_head:
        trainable.extend(head_parameters(model, spec))
    for _, p in trainable:
        p.requires_grad_(True)
    return trainable


def set_frozen_bn_eval(model: nn.Module) -> nn.Module:
    """Put every BatchNorm whose parameters are all frozen into eval mode (running statistics stay
    as loaded, batch statistics are not used). Call after model.train()."""
    for m in unwrap(model).modules():
        if isinstance(m, _BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


def train_mode(model: nn.Module) -> nn.Module:
    """model.train() followed by set_frozen_bn_eval(model)."""
    model.train()
    return set_frozen_bn_eval(model)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in unwrap(model).parameters() if p.requires_grad or not trainable_only)


def classifier(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The final head module (e.g. VGG's `classifier`, vgg19_slim's `head`, ResNet's `fc`): applied
    to `backbone_features(...)` it gives the logits."""
    if len(spec.head) != 1:
        raise ValueError(f"{spec.name}: head is not a single module ({spec.head})")
    return unwrap(model).get_submodule(spec.head[0])


def cam_layer(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The Grad-CAM target module."""
    return unwrap(model).get_submodule(spec.cam_layer)


class _StopForward(Exception):
    pass


def backbone_features(model: nn.Module, spec: ModelSpec, x: torch.Tensor) -> torch.Tensor:
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
        unwrap(model)(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{spec.name}: the forward pass never reached the head {spec.head[0]!r}")
    return captured[0].flatten(1)
