"""NeuroGrade model zoo, the ground floor (it never imports `core`):

- registry.py      architecture names -> ModelSpec (input, normalisation, CAM layer, blocks, head)
- architectures.py the builders; they register themselves on import (below)
- factory.py       create(name, num_classes, weights=..., zoo=...)
- weights.py       weight sources as explicit WeightSpecs: random, imagenet, craft, hed, file, zoo
- state.py         sha256 verification, safe loading, state transfer into a model
- finetune.py      parameters by block, freezing, frozen BatchNorm, backbone features
- versions.py      versions on disk (Zoo: list, resolve, active, load, save); folders passed in
- grow.py          VGG16 -> VGG19 function-preserving deepening

    import model_zoo
    model = model_zoo.create("vgg19_slim", num_classes=3)
    zoo = model_zoo.Zoo(models_dir=home / "models", active_file=home / "active.json")
    loaded = zoo.load("tumor_type@active")
"""

from model_zoo import architectures  # noqa: F401  (registers the built-in architectures)
from model_zoo.factory import create
from model_zoo.finetune import (
    backbone_features,
    block_parameters,
    cam_layer,
    classifier,
    count_parameters,
    freeze_all_but,
    head_parameters,
    set_frozen_bn_eval,
    train_mode,
    unassigned_parameters,
)
from model_zoo.modules import unwrap
from model_zoo.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, get_spec, list_models, register, register_model
from model_zoo.state import CheckpointError, ChecksumError, UnsafeCheckpointError, sha256_file, transfer_state
from model_zoo.versions import (
    Checkpoint,
    LoadedModel,
    Zoo,
    headline_metrics,
    spec_from_card,
    write_card,
)
from model_zoo.weights import (
    BACKBONES,
    ImageNetWeightsUnavailable,
    WeightSpec,
    imagenet_available,
    imagenet_weights_file,
    parse_weights,
)

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Checkpoint",
    "CheckpointError",
    "ChecksumError",
    "ImageNetWeightsUnavailable",
    "LoadedModel",
    "ModelSpec",
    "UnsafeCheckpointError",
    "WeightSpec",
    "Zoo",
    "backbone_features",
    "block_parameters",
    "cam_layer",
    "classifier",
    "count_parameters",
    "create",
    "freeze_all_but",
    "get_spec",
    "head_parameters",
    "headline_metrics",
    "imagenet_available",
    "imagenet_weights_file",
    "list_models",
    "parse_weights",
    "register",
    "register_model",
    "set_frozen_bn_eval",
    "sha256_file",
    "spec_from_card",
    "train_mode",
    "transfer_state",
    "unassigned_parameters",
    "unwrap",
    "write_card",
]
