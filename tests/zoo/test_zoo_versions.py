"""model_zoo.versions: save/load round trips, integrity, active versions, transfer — through the
installation's binding (core.zoo: NEUROGRADE_HOME) and through a Zoo given its folders."""

import json
import os

import pytest
import torch

from core.config import get_settings
from core.zoo import active_version, list_checkpoints, load_checkpoint, resolve_ref, save_checkpoint, set_active
from model_zoo import ChecksumError, UnsafeCheckpointError, Zoo, create, sha256_file

CLASSES = ["glioma", "meningioma", "pituitary"]


def _card(created="2025-01-01T00:00:00+00:00", **extra):
    card = {
        "architecture": "vgg19_slim",
        "classes": CLASSES,
        "temperature": 1.5,
        "created": created,
        "metrics": {
            "cv": {"per_fold": [0.8, 0.9], "mean": {"accuracy": 0.85}, "ci95": [0.8, 0.9]},
            "test": {"accuracy": 0.875, "macro_f1": 0.86},
        },
    }
    card.update(extra)
    return card


@pytest.fixture(scope="module")
def slim():
    torch.manual_seed(0)
    return create("vgg19_slim", 3).eval()


def test_save_load_round_trip(slim):
    folder = save_checkpoint(slim, _card(), "tumor_type", "v1")
    assert folder == get_settings().models_dir / "tumor_type" / "v1"
    card = json.loads((folder / "card.json").read_text())
    assert card["sha256"] == sha256_file(folder / "model.pt")
    assert card["task"] == "tumor_type" and card["version"] == "v1"
    assert card["input"] == {"size": 128, "channels": 3, "sequences": None, "mean": [0.5] * 3, "std": [0.25] * 3}

    loaded = load_checkpoint("tumor_type@v1")
    assert not loaded.model.training
    assert loaded.classes == CLASSES and loaded.temperature == 1.5
    assert loaded.spec.name == "vgg19_slim" and loaded.spec.input_size == 128
    assert loaded.ref == "tumor_type@v1" and loaded.path == folder
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), slim(x))


def test_card_input_drives_the_loaded_model():
    model = create("vgg19_slim", 2, in_channels=1)
    card = _card(
        classes=["no_tumor", "tumor"],
        input={"size": 96, "channels": 1, "sequences": ["t1post"], "mean": [0.4], "std": [0.3]},
    )
    save_checkpoint(model, card, "presence", "g1")
    loaded = load_checkpoint("presence@g1")
    assert loaded.spec.in_channels == 1 and loaded.spec.input_size == 96
    assert loaded.spec.mean == (0.4,) and loaded.spec.std == (0.3,)
    assert loaded.model.features.block1.conv1.in_channels == 1
    with pytest.raises(ValueError, match="channels"):
        save_checkpoint(model, _card(classes=["a", "b"], input={"channels": 3}), "presence", "g2")


def test_versions_are_immutable_and_names_checked(slim):
    save_checkpoint(slim, _card(), "tumor_type", "v1")
    with pytest.raises(FileExistsError):
        save_checkpoint(slim, _card(), "tumor_type", "v1")
    for bad in ("../escape", "active", "", "a/b"):
        with pytest.raises(ValueError):
            save_checkpoint(slim, _card(), "tumor_type", bad)
    with pytest.raises(ValueError, match="architecture"):
        save_checkpoint(slim, {"classes": CLASSES}, "tumor_type", "v2")
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(slim, {"architecture": "vgg19_slim"}, "tumor_type", "v2")


def test_shipped_version_name_cannot_be_reused(slim, _isolated_zoo):
    save_checkpoint(slim, _card(), "tumor_type", "v1", root=_isolated_zoo)
    with pytest.raises(FileExistsError, match="shipped"):
        save_checkpoint(slim, _card(), "tumor_type", "v1")


def test_sha256_mismatch_is_refused(slim):
    folder = save_checkpoint(slim, _card(), "tumor_type", "v1")
    other = create("vgg19_slim", 3)
    torch.save(other.state_dict(), folder / "model.pt")  # weights swapped behind the card's back
    with pytest.raises(ChecksumError, match="sha256"):
        load_checkpoint("tumor_type@v1")


def test_pickle_that_runs_code_is_refused(tmp_path, slim):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = save_checkpoint(slim, _card(), "tumor_type", "v1")
    state = dict(slim.state_dict())
    state["head.fc.bias"] = Evil()
    torch.save(state, folder / "model.pt")
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = sha256_file(folder / "model.pt")  # even with a matching checksum
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_checkpoint("tumor_type@v1")
    assert not marker.exists()


def test_active_version_resolution(slim, _isolated_zoo):
    assert active_version("tumor_type") is None
    with pytest.raises(KeyError, match="no model version"):
        resolve_ref("tumor_type@active")
    save_checkpoint(slim, _card(created="2025-01-01T00:00:00+00:00"), "tumor_type", "shipped1", root=_isolated_zoo)
    save_checkpoint(slim, _card(created="2025-03-01T00:00:00+00:00"), "tumor_type", "user2")
    save_checkpoint(slim, _card(created="2025-02-01T00:00:00+00:00"), "tumor_type", "user1")
    # 1. newest shipped: a newer user version is not active until promoted
    assert active_version("tumor_type") == "shipped1"
    assert [(c.version, c.source) for c in list_checkpoints("tumor_type")] == [
        ("shipped1", "shipped"),
        ("user1", "user"),
        ("user2", "user"),
    ]
    # 2. the shipped ACTIVE file beats "newest"
    (_isolated_zoo / "tumor_type" / "ACTIVE").write_text("shipped1\n")
    assert active_version("tumor_type") == "shipped1"
    assert load_checkpoint("tumor_type@active").version == "shipped1"
    # 3. the user's active.json beats both
    set_active("tumor_type", "user1")
    assert json.loads((get_settings().home / "active.json").read_text()) == {"tumor_type": "user1"}
    assert load_checkpoint("tumor_type@active").version == "user1"
    assert resolve_ref("tumor_type").version == "user1"
    # a stale override is ignored, loudly
    (get_settings().home / "active.json").write_text(json.dumps({"tumor_type": "gone"}))
    with pytest.warns(UserWarning, match="gone"):
        assert active_version("tumor_type") == "shipped1"
    with pytest.raises(KeyError):
        set_active("tumor_type", "nope")
    with pytest.raises(KeyError, match="user1"):
        resolve_ref("tumor_type@v9")


def test_incomplete_version_folders_are_skipped(slim):
    save_checkpoint(slim, _card(), "grade", "ok")
    broken = get_settings().models_dir / "grade" / "half-written"
    broken.mkdir(parents=True)
    (broken / "card.json").write_text("{}")
    assert [c.version for c in list_checkpoints("grade")] == ["ok"]


def test_create_from_zoo_checkpoint_transfers_backbone(slim):
    from core.zoo import create as create_here

    save_checkpoint(slim, _card(), "tumor_type", "v1")
    set_active("tumor_type", "v1")  # a user version is active only once promoted
    same = create_here("vgg19_slim", 3, weights="tumor_type@active")
    torch.testing.assert_close(same.head.fc.weight, slim.head.fc.weight)
    two = create_here("vgg19_slim", 2, weights="tumor_type@v1")
    torch.testing.assert_close(two.features.block4.conv3.weight, slim.features.block4.conv3.weight)
    assert two.head.fc.weight.shape == (2, 256)
    with pytest.raises(ValueError, match="vgg19_slim model"):
        create_here("vgg19_slim_w", 2, weights="tumor_type@v1")
    with pytest.raises(KeyError):
        create_here("vgg19_slim", 2, weights="presence@active")
    with pytest.raises(ValueError, match="zoo="):  # the zoo alone does not know where versions live
        create("vgg19_slim", 2, weights="tumor_type@v1")


def test_saving_a_compiled_or_wrapped_model_strips_prefixes(slim):
    wrapped = torch.nn.DataParallel(slim)
    folder = save_checkpoint(wrapped, _card(), "tumor_type", "dp")
    state = torch.load(folder / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert load_checkpoint("tumor_type@dp").classes == CLASSES


# ------------------------------------------------------------------- a Zoo given its folders
def test_a_zoo_reads_only_the_folders_it_is_given(slim, tmp_path, _isolated_zoo, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_HOME", str(tmp_path / "elsewhere"))  # never consulted
    zoo = Zoo(models_dir=tmp_path / "models", active_file=tmp_path / "champions.json")
    zoo.save(slim, _card(created="2025-01-01T00:00:00+00:00"), "tumor_type", "a")
    zoo.save(slim, _card(created="2025-02-01T00:00:00+00:00"), "tumor_type", "b")
    assert [c.version for c in zoo.list("tumor_type")] == ["a", "b"]
    assert zoo.active("tumor_type") is None  # user versions need promotion
    assert zoo.set_active("tumor_type", "a") == tmp_path / "champions.json"
    assert zoo.load("tumor_type@active").version == "a"
    assert not (tmp_path / "elsewhere").exists()
    other = Zoo(models_dir=tmp_path / "other-models")
    assert other.list() == [] and other.active("tumor_type") is None
    with pytest.raises(ValueError, match="active file"):
        other.set_active("tumor_type", "a")
    with pytest.raises(ValueError, match="no folder"):
        Zoo().save(slim, _card(), "tumor_type", "c")


def test_a_folder_zoo_has_no_shipped_versions_and_no_champions(slim, tmp_path, _isolated_zoo):
    Zoo.folder(_isolated_zoo).save(slim, _card(), "grade", "s1")  # as if shipped
    assert Zoo().active("grade") == "s1"
    only = Zoo.folder(tmp_path / "run")
    only.save(slim, _card(), "grade", "s1")  # no clash: shipped not seen
    assert [(c.version, c.source) for c in only.list()] == [("s1", "user")]
    assert only.active("grade") is None
    with pytest.raises(KeyError, match="no model version"):
        only.resolve("grade@active")


def test_the_zoo_never_imports_core():
    import subprocess
    import sys

    code = (
        "import sys, model_zoo; bad = sorted(m for m in sys.modules if m == 'core' or m.startswith('core.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
