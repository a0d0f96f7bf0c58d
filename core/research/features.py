"""Frozen-backbone features for the research studies, extracted once and cached.

A *backbone reference* names where the weights come from:

    "tumor_type@1.0.0", "presence@active"   a zoo checkpoint (sha256-verified by model_zoo)
    "random:vgg19_slim"                     random initialisation (seeded): the no-transfer control
    "imagenet:vgg19"                        torchvision ImageNet weights, only when the file is in the
                                            torch hub cache; otherwise ImageNetWeightsUnavailable

and optionally a depth, ``"#block3"`` .. ``"#block5"``: global-average-pooled output of that
backbone block instead of the penultimate (head input) features. A ``"+perseq"`` suffix feeds each
sequence of a multi-channel slice (TCGA-LGG: t1pre, flair, t1post) through the backbone as its own
grey image and concatenates the features (the default is to feed the channels as they are).

Every study uses features from a backbone that never saw the evaluation patients' labels; which
model saw which data is recorded in :func:`backbone_info` (from the checkpoint's card) and copied
into each result file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import model_zoo as zoo
from core.cards import ModelCard
from core.config import get_settings
from core.preprocess import model_input
from core.training.datasets import load_dataset
from core.zoo import load_checkpoint

__all__ = [
    "CandidateRef",
    "parse_ref",
    "Backbone",
    "load_backbone",
    "backbone_info",
    "extract_features",
    "dataset_features",
    "feature_cache_dir",
    "DEFAULT_SIZE",
]

DEFAULT_SIZE = 64  # the shipped models' input size (model_zoo/checkpoints/*/card.json)
_REF = re.compile(r"^(?P<src>[^#+]+)(?:#block(?P<block>\d+))?(?P<perseq>\+perseq)?$")


@dataclass(frozen=True)
class CandidateRef:
    source: str  # "tumor_type@active" | "random:vgg19_slim" | "imagenet:vgg19"
    block: int | None = None  # None: penultimate features (the head's input)
    per_sequence: bool = False

    @property
    def name(self) -> str:
        return self.source + (f"#block{self.block}" if self.block else "") + ("+perseq" if self.per_sequence else "")

    @property
    def kind(self) -> str:
        if self.source.startswith("random:"):
            return "random"
        if self.source.startswith("imagenet:"):
            return "imagenet"
        return "zoo"


def parse_ref(text: str) -> CandidateRef:
    m = _REF.match(str(text).strip())
    if not m or (":" not in m["src"] and "@" not in m["src"]):
        raise ValueError(
            f"backbone {text!r}: use TASK@VERSION, random:ARCH or imagenet:ARCH, optionally #blockN and +perseq"
        )
    return CandidateRef(m["src"], int(m["block"]) if m["block"] else None, bool(m["perseq"]))


@dataclass
class Backbone:
    ref: CandidateRef
    model: object  # torch nn.Module, eval mode
    spec: object  # model_zoo ModelSpec (input size, channels, normalisation)
    classes: list[str] | None  # the source head's classes (LEEP / NCE); None without a trained head
    temperature: float = 1.0
    info: dict = field(default_factory=dict)


def backbone_info(card: ModelCard | dict) -> dict:
    """What a checkpoint was trained on, from its card (for the leakage note in every result)."""
    card = ModelCard.coerce(card)
    return {
        "task": card.task,
        "version": card.version,
        "architecture": card.architecture,
        "classes": list(card.classes),
        "sha256": card.sha256,
        "trained_on": [
            {k: v for k, v in d.to_dict().items() if k in ("name", "n_images", "n_patients", "note") and v is not None}
            for d in card.training_data
        ],
        "input": card.input.to_dict() or None,
    }


def load_backbone(
    ref: str | CandidateRef, *, size: int = DEFAULT_SIZE, in_channels: int = 3, seed: int = 0
) -> Backbone:
    """Load the weights a reference names (see the module docstring). Random and ImageNet
    backbones use ``size`` px input and ``in_channels``; checkpoints use what their card says."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    if r.kind == "zoo":
        lm = load_checkpoint(r.source)
        info = backbone_info(ModelCard.of(lm))
        info["ref"] = lm.ref
        return Backbone(r, lm.model, lm.spec, list(lm.classes), float(lm.temperature), info)
    arch = r.source.split(":", 1)[1]
    spec = dataclasses.replace(zoo.get_spec(arch).with_channels(in_channels), input_size=int(size))
    if r.kind == "imagenet":
        model = zoo.create(arch, 1000, weights="imagenet", in_channels=in_channels)  # raises when absent
        info = {
            "ref": r.source,
            "trained_on": [{"name": "ImageNet-1k"}],
            "note": "ImageNet weights, head re-initialised",
        }
        classes = None
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = zoo.create(arch, 2, weights=None, in_channels=in_channels)
        info = {
            "ref": r.source,
            "trained_on": [],
            "seed": int(seed),
            "note": "random initialisation (no training): the no-transfer control",
        }
        classes = None
    model.eval()
    return Backbone(r, model, spec, classes, 1.0, info)


def _block_module(bb: Backbone):
    b = bb.ref.block
    blocks = bb.spec.blocks
    if not 1 <= b <= len(blocks):
        raise ValueError(f"{bb.spec.name} has blocks 1..{len(blocks)}, not {b}")
    prefixes = blocks[b - 1]
    if len(prefixes) != 1:
        raise ValueError(f"{bb.spec.name} block {b} is not one module ({prefixes}); use the penultimate features")
    return zoo.unwrap(bb.model).get_submodule(prefixes[0])


def _forward(bb: Backbone, x) -> tuple[np.ndarray, np.ndarray | None]:
    """(features, source softmax or None) of one input batch."""
    if bb.ref.block:
        captured = []

        class _Stop(Exception):
            pass

        def hook(_m, _inp, out):
            captured.append(out)
            raise _Stop

        h = _block_module(bb).register_forward_hook(hook)
        try:
            zoo.unwrap(bb.model)(x)
        except _Stop:
            pass
        finally:
            h.remove()
        return captured[0].mean(dim=(2, 3)).double().numpy(), None
    feats = zoo.backbone_features(bb.model, bb.spec, x)
    probs = None
    if bb.classes is not None:
        logits = zoo.classifier(bb.model, bb.spec)(feats)
        probs = torch.softmax(logits.double() / max(bb.temperature, 1e-6), dim=1).numpy()
    return feats.double().numpy(), probs


def extract_features(bb: Backbone, images: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (N, D) float32 and source-head probabilities (N, Z) or None of uint8 slices
    (N, H, W) / (N, C, H, W), through `preprocess.model_input` (the inference path)."""
    imgs = np.asarray(images)
    views = [imgs]
    if bb.ref.per_sequence and imgs.ndim == 4:
        views = [imgs[:, c] for c in range(imgs.shape[1])]
    feats, probs = [], []
    with torch.no_grad():
        for view in views:
            f_parts, p_parts = [], []
            for start in range(0, len(view), batch_size):
                chunk = view[start : start + batch_size].astype(np.float32) / 255.0
                f, p = _forward(bb, model_input(chunk, bb.spec))
                f_parts.append(f)
                if p is not None:
                    p_parts.append(p)
            feats.append(np.concatenate(f_parts) if f_parts else np.zeros((0, 0)))
            if p_parts:
                probs.append(np.concatenate(p_parts))
    f = np.concatenate(feats, axis=1).astype(np.float32)
    p = np.mean(probs, axis=0) if probs else None
    return f, p


def feature_cache_dir() -> Path:
    root = os.environ.get("NEUROGRADE_CACHE_DIR")
    return (Path(root) if root else get_settings().home / "cache") / "features"


def dataset_features(
    ref: str | CandidateRef, data: str, task: str, *, size: int | None = None, seed: int = 0, cache: bool = True
) -> dict:
    """Load `data` for `task` at the backbone's input size and extract features once (cached by
    the backbone's sha256 / seed, the data's manifest sha256, the size and the reference).

    Returns {"features", "probs" (or None), "labels", "groups", "classes", "sequences",
    "backbone" (info), "data": {...}, "ref"}.
    """
    r = parse_ref(ref) if isinstance(ref, str) else ref
    bb = load_backbone(r, size=size or DEFAULT_SIZE, seed=seed)
    s = int(bb.spec.input_size)
    ds = load_dataset(data, task, s)
    key_src = json.dumps(
        {
            "ref": r.name,
            "sha": bb.info.get("sha256") or bb.info.get("seed"),
            "data": ds.manifest_sha256,
            "n": len(ds),
            "task": task,
            "size": s,
            "v": 1,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = feature_cache_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', r.name)}-{task}-{key}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            feats = z["features"]
            probs = z["probs"] if z["probs"].size else None
    else:
        feats, probs = extract_features(bb, ds.images)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, features=feats, probs=probs if probs is not None else np.zeros(0))
            tmp.replace(path)
    return {
        "features": feats,
        "probs": probs,
        "labels": np.asarray(ds.labels),
        "groups": np.asarray(ds.groups),
        "classes": list(ds.classes),
        "sequences": list(ds.sequences),
        "backbone": bb.info,
        "ref": r.name,
        "data": {
            "path": str(data),
            "name": ds.name,
            "n_images": len(ds),
            "n_patients": int(len(set(ds.groups.tolist()))),
            "manifest_sha256": ds.manifest_sha256,
            "size": s,
        },
    }
