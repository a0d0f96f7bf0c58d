"""int8 inference on CPUs: post-training static quantization (PyTorch FX, x86/fbgemm kernels).

On this project's 2-core AVX-512 CPU the quantized width-reduced VGG ran ~2.9x faster than fp32 +
channels_last with 99.8% of tumour-type labels unchanged (500 Figshare slices). Static quantization
needs the range of every activation, measured on real images: `python -m core quantize
TASK@VERSION` runs the model over images of its own training data, stores the observers' state in
the version folder (`int8_observers.pt`, sha256 and the measured label agreement in the card), and
`Predictor` builds the int8 model from it at load time (precision "int8", or "auto" where the card
has it and its measured label agreement is >= 99.5%). No calibration file, no int8.

torch.ao's FX quantization is deprecated in favour of torchao's pt2e flow; it works in the pinned
torch 2.14.1, and moving to pt2e is the upgrade path (its x86 quantizer wants torch.compile).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

OBSERVERS_FILE = "int8_observers.pt"
ENGINE = "x86"
_OBSERVER_KEY = "activation_post_process"


def available() -> bool:
    import torch  # heavy: torch, loaded on first use

    return ENGINE in torch.backends.quantized.supported_engines


def _prepared(model_fp32, example):
    """FX graph of `model_fp32` (BatchNorm already folded) with x86 observers inserted."""
    import torch  # heavy: torch, loaded on first use
    from torch.ao.quantization import get_default_qconfig_mapping  # heavy: torch, loaded on first use
    from torch.ao.quantization.quantize_fx import prepare_fx  # heavy: torch, loaded on first use

    torch.backends.quantized.engine = ENGINE
    model = copy.deepcopy(model_fp32).float().to(memory_format=torch.contiguous_format).eval()
    mapping = get_default_qconfig_mapping(ENGINE)
    # the first convolution stays fp32: it reads the image itself, and quantizing it cost the most
    # fp32 labels (bench set: 99.47% -> 99.74% identical when kept in fp32)
    first_conv = next((n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first_conv:
        mapping = mapping.set_module_name(first_conv, None)
    with warnings.catch_warnings():  # reduce_range deprecation: the x86 default qconfig still sets it
        warnings.simplefilter("ignore")
        return prepare_fx(model, mapping, example_inputs=(example,))


def calibrate(model_fp32, inputs, batch_size: int = 32) -> dict[str, Any]:
    """Observer state (activation ranges) of `model_fp32` over model-input tensors `inputs`."""
    import torch  # heavy: torch, loaded on first use

    prepared = _prepared(model_fp32, inputs[:1])
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            prepared(inputs[i : i + batch_size])
    return {k: v.clone() for k, v in prepared.state_dict().items() if _OBSERVER_KEY in k}


def quantized(model_fp32, observers: dict[str, Any], example):
    """The int8 model: `model_fp32`'s graph with the calibrated observers, converted."""
    from torch.ao.quantization.quantize_fx import convert_fx  # heavy: torch, loaded on first use

    prepared = _prepared(model_fp32, example)
    missing = [k for k in prepared.state_dict() if _OBSERVER_KEY in k and k not in observers]
    if missing:
        raise ValueError(f"the calibration does not fit this model ({len(missing)} observers missing)")
    prepared.load_state_dict(observers, strict=False)
    with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated for torchao; torch is pinned
        warnings.simplefilter("ignore")
        return convert_fx(prepared).eval()
