"""NeuroGrade model zoo: architectures (registry), versions (checkpoints).

    import model_zoo
    model = model_zoo.create("vgg19_slim", num_classes=3)
    loaded = model_zoo.load_checkpoint("tumor_type@active")
"""
from model_zoo.registry import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    ChecksumError,
    ImageNetWeightsUnavailable,
    ModelSpec,
    UnsafeCheckpointError,
    backbone_features,
    block_parameters,
    cam_layer,
    classifier,
    count_parameters,
    create,
    freeze_all_but,
    get_spec,
    head_parameters,
    imagenet_available,
    list_models,
    register,
    register_model,
    set_frozen_bn_eval,
    train_mode,
)
from model_zoo.checkpoints import (  # noqa: F401
    Checkpoint,
    LoadedModel,
    active_version,
    list_checkpoints,
    load_checkpoint,
    resolve_ref,
    save_checkpoint,
    set_active,
)
