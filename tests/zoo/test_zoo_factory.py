"""model_zoo.factory.create with each weight source: ImageNet (cached only), a local file, a zoo
version; files are verified and never unpickled unrestricted."""

import pytest
import torch

import model_zoo
from model_zoo import ChecksumError, ImageNetWeightsUnavailable, UnsafeCheckpointError, create


def test_imagenet_unavailable_names_file_and_directory(tmp_path):
    with pytest.raises(ImageNetWeightsUnavailable) as info:
        create("vgg19", 3, weights="imagenet")
    msg = str(info.value)
    directory = tmp_path / "torch-home" / "hub" / "checkpoints"
    assert "vgg19-dcbb9e9d.pth" in msg and str(directory) in msg
    assert info.value.filename == "vgg19-dcbb9e9d.pth" and info.value.directory == directory
    assert not directory.exists() or not any(directory.iterdir()), "nothing was downloaded"
    with pytest.raises(ImageNetWeightsUnavailable, match="no ImageNet weights"):
        create("vgg19_slim", 3, weights="imagenet")


def test_corrupt_cached_imagenet_file_is_refused(tmp_path):
    directory = tmp_path / "torch-home" / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    (directory / "resnet18-f37072fd.pth").write_bytes(b"not the real weights")
    with pytest.raises(ChecksumError, match="f37072fd"):
        create("resnet18", 3, weights="imagenet")
    assert model_zoo.imagenet_available("resnet18") is False


def _stand_in_imagenet_file(tmp_path, monkeypatch, arch, filename_stem):
    """A cached 'ImageNet' file for `arch` whose name carries its real hash prefix, and the
    weights enum pointed at it (the real files are not on test machines)."""
    import hashlib

    import torchvision

    src = getattr(torchvision.models, arch)(weights=None)
    path = tmp_path / "stand-in.pth"
    torch.save(src.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    directory = tmp_path / "torch-home" / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    filename = f"{filename_stem}-{digest}.pth"
    path.rename(directory / filename)

    class FakeEnum:
        url = f"https://example.invalid/models/{filename}"

    monkeypatch.setattr(model_zoo.weights, "_weights_enum", lambda spec: FakeEnum)
    return src, directory / filename


def test_imagenet_weights_load_from_cache_with_new_head(tmp_path, monkeypatch):
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    src, path = _stand_in_imagenet_file(tmp_path, monkeypatch, "resnet18", "resnet18")
    assert model_zoo.imagenet_available("resnet18")
    model = create("resnet18", 3, weights="imagenet")
    torch.testing.assert_close(model.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    torch.testing.assert_close(model.bn1.running_var, src.bn1.running_var)
    assert model.fc.weight.shape == (3, 512)
    grey = create("resnet18", 2, weights="imagenet", in_channels=1)
    torch.testing.assert_close(grey.conv1.weight, src.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(grey.layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def test_imagenet_old_densenet_keys_are_renamed(tmp_path, monkeypatch):
    """torchvision's DenseNet file uses old 'norm.1' style keys and has no num_batches_tracked."""
    import re

    src, path = _stand_in_imagenet_file(tmp_path, monkeypatch, "densenet121", "densenet121")
    old = {}
    for k, v in src.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        old[re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k)] = v
    assert any(".norm.1." in k for k in old)
    path.unlink()
    torch.save(old, path)
    monkeypatch.setattr(model_zoo.weights, "imagenet_weights_file", lambda spec: path)
    model = create("densenet121", 3, weights="imagenet")
    torch.testing.assert_close(
        model.features.denseblock2.denselayer3.norm1.weight, src.features.denseblock2.denselayer3.norm1.weight
    )


def test_weights_from_local_state_dict(tmp_path):
    src = create("vgg19_slim", 2)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    model = create("vgg19_slim", 3, weights=str(path))
    torch.testing.assert_close(model.features.block3.conv2.weight, src.features.block3.conv2.weight)
    torch.testing.assert_close(model.features.block5.bn4.running_var, src.features.block5.bn4.running_var)
    assert model.head.fc.weight.shape == (3, 256)
    same = create("vgg19_slim", 2, weights=path)
    torch.testing.assert_close(same.head.fc.weight, src.head.fc.weight)
    with pytest.raises(ValueError, match="does not fit"):
        create("vgg19_slim_w", 2, weights=path)
    with pytest.raises(FileNotFoundError):
        create("vgg19_slim", 2, weights=str(tmp_path / "missing.pt"))


def test_local_weights_with_code_in_pickle_are_refused(tmp_path):
    import os

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"features.block1.conv1.weight": Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        create("vgg19_slim", 2, weights=path)
    assert not marker.exists()
