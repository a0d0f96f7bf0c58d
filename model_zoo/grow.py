"""Grow a VGG16 into a VGG19 without changing what it computes (Net2Net deepening, Chen et al.,
ICLR 2016).

VGG19 has one more 3x3 convolution than VGG16 at the end of blocks 3, 4 and 5. Each inserted
convolution starts as the identity (a centred 1 on its own channel, zero bias); it follows a ReLU,
so its input is non-negative and the ReLU after it changes nothing. With BatchNorm, the inserted
BN passes activations through in eval mode (mean 0, variance 1 - eps, weight 1, bias 0). The grown
network's outputs equal the VGG16's before any training; fine-tuning then uses the extra depth.

Works on torchvision `features.<i>.*` state dicts, so any VGG16 source (CRAFT, HED, ImageNet)
grows the same way.
"""

from __future__ import annotations

import torch

VGG16_CONVS = (2, 2, 3, 3, 3)
VGG19_CONVS = (2, 2, 4, 4, 4)
BN_EPS = 1e-5  # torchvision's BatchNorm2d default


def _conv_indices(convs: tuple[int, ...], batch_norm: bool) -> list[list[int]]:
    """torchvision `features` index of every convolution, block by block."""
    step = 3 if batch_norm else 2  # conv, (bn), relu
    out, i = [], 0
    for n in convs:
        out.append([i + step * k for k in range(n)])
        i += step * n + 1  # + the block's MaxPool
    return out


def deepen_vgg16(state16: dict, batch_norm: bool) -> dict:
    """A torchvision vgg16(_bn) `features.*` state dict -> vgg19(_bn) `features.*` with identity
    convolutions inserted at the end of blocks 3-5. Tensors the source lacks stay absent (e.g.
    CRAFT's conv5_3): the caller's model keeps its own initialisation for them."""
    src_idx, dst_idx = _conv_indices(VGG16_CONVS, batch_norm), _conv_indices(VGG19_CONVS, batch_norm)
    layers = (0, 1) if batch_norm else (0,)  # conv, bn offsets from the conv index
    out: dict = {}
    for src_block, dst_block in zip(src_idx, dst_idx):
        for s, d in zip(src_block, dst_block):
            for off in layers:
                prefix = f"features.{s + off}."
                for key, value in state16.items():
                    if key.startswith(prefix):
                        out[f"features.{d + off}.{key[len(prefix) :]}"] = value
        for d in dst_block[len(src_block) :]:  # the inserted convolution(s)
            width = _width(state16, src_block[0])
            if width is None:  # the source has nothing of this block
                continue
            weight = torch.zeros(width, width, 3, 3)
            weight[torch.arange(width), torch.arange(width), 1, 1] = 1.0
            out[f"features.{d}.weight"] = weight
            out[f"features.{d}.bias"] = torch.zeros(width)
            if batch_norm:
                out.update(
                    {
                        f"features.{d + 1}.weight": torch.ones(width),
                        f"features.{d + 1}.bias": torch.zeros(width),
                        f"features.{d + 1}.running_mean": torch.zeros(width),
                        f"features.{d + 1}.running_var": torch.full((width,), 1.0 - BN_EPS),
                        f"features.{d + 1}.num_batches_tracked": torch.tensor(0),
                    }
                )
    return out


def _width(state16: dict, conv_index: int) -> int | None:
    w = state16.get(f"features.{conv_index}.weight")
    return None if w is None else int(w.shape[0])
