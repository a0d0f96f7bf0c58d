"""Weights files and state dicts: verify (sha256), load safely (weights_only), transfer into a model.

Every weight source (ImageNet file, natural-image backbone, a user's file, a zoo version) ends in
`transfer_state`, so the rules for what must fit and what may be re-initialised live in one place.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from model_zoo.modules import adapt_conv_weight, unwrap
from model_zoo.registry import ModelSpec


class CheckpointError(RuntimeError):
    """A checkpoint (or weights file) cannot be used."""


class ChecksumError(CheckpointError):
    """The sha256 of a weights file does not match the one recorded for it."""


class UnsafeCheckpointError(CheckpointError):
    """A weights file holds something other than tensors (a pickle that would run code)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256_file, remembered while the file's size and mtime stay the same (large cached files)."""
    return sha256_file(path)


def verify_sha256(path: str | os.PathLike, sha256: str) -> None:
    actual = sha256_file(path)
    if actual.lower() != str(sha256).lower():
        raise ChecksumError(
            f"{path}: sha256 {actual} does not match the recorded {sha256}; "
            "the file is corrupt or was replaced — refusing to load it"
        )


def load_state_file(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """A state dict from a file with torch.load(weights_only=True): pickles that would build
    arbitrary objects or call functions are refused (UnsafeCheckpointError)."""
    path = Path(path)
    if sha256 is not None:
        verify_sha256(path, sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused — the file holds Python objects other than tensors (loading it could "
            f"run code). Only plain state dicts are accepted. Detail: {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DDP/DataParallel
_DENSENET_OLD_KEY = re.compile(  # torchvision's DenseNet file: "norm.1" style
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _clean_key(key: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    m = _DENSENET_OLD_KEY.match(key)
    return m.group(1) + m.group(2) if m else key


def transfer_state(
    model: nn.Module, spec: ModelSpec, state: dict, source: str = "weights", partial: bool = False
) -> dict:
    """Copy `state` into `model`: every backbone tensor must be present with its shape (the first
    conv is adapted when only its input channels differ); head tensors whose shape differs keep
    their fresh initialisation. `partial`: backbone tensors the source lacks keep theirs too (a
    pretrained backbone that stops short of the architecture, e.g. CRAFT without conv5_3).
    Returns {"reinitialised": [...], "adapted": [...]}."""
    model = unwrap(model)
    clean = {_clean_key(k): v for k, v in state.items()}
    own = model.state_dict()
    new, reinit, adapted, problems = {}, [], [], []
    for k, target in own.items():
        src = clean.get(k)
        if src is None:
            if k.endswith("num_batches_tracked"):  # absent from older torchvision files
                continue
            if spec.in_head(k) or partial:
                reinit.append(k)
            else:
                problems.append(f"missing {k}")
            continue
        if not isinstance(src, torch.Tensor):
            problems.append(f"{k} is not a tensor")
            continue
        if src.shape == target.shape:
            new[k] = src
        elif spec.in_head(k):
            reinit.append(k)
        elif (
            src.ndim == 4 and target.ndim == 4 and src.shape[0] == target.shape[0] and src.shape[2:] == target.shape[2:]
        ):
            new[k] = adapt_conv_weight(src, target.shape[1])
            adapted.append(k)
        else:
            problems.append(f"{k}: shape {tuple(src.shape)} != {tuple(target.shape)}")
    extra = [k for k in clean if k not in own and not spec.in_head(k)]
    if extra:
        problems.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    if problems:
        raise ValueError(f"{source} does not fit {spec.name}: {'; '.join(problems[:8])}")
    model.load_state_dict(new, strict=False)
    return {"reinitialised": reinit, "adapted": adapted}
