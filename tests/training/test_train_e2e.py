"""`python -m core train` end to end on generated blobs (3 classes, 32 px, 2 epochs), then
`python -m core evaluate` reproduces the card's held-out numbers."""

import json

import numpy as np
import pytest

from core.cli import main
from tests.training._factories import image_folder

CARD_KEYS = {
    "task",
    "version",
    "classes",
    "architecture",
    "input",
    "temperature",
    "training_data",
    "recipe",
    "command",
    "metrics",
    "intended_use",
    "limitations",
    "created",
    "parent",
    "sha256",
    "training_time_s",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("NEUROGRADE_HOME")
    os.environ["NEUROGRADE_HOME"] = str(home)
    data = image_folder(tmp_path_factory.mktemp("data") / "blobs", per_class=12, per_patient=3)
    args = [
        "train",
        "--task",
        "tumor_type",
        "--data",
        str(data),
        "--arch",
        "vgg19_slim",
        "--strategy",
        "full",
        "--init",
        "random",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--img-size",
        "32",
        "--final",
        "--version",
        "0.0.1",
        "--seed",
        "3",
        "--n-boot",
        "50",
        "--test-fraction",
        "0.25",
    ]
    assert main(args) == 0
    folder = home / "models" / "tumor_type" / "0.0.1"
    yield {"home": home, "data": data, "folder": folder, "card": json.loads((folder / "card.json").read_text())}
    if old is None:
        os.environ.pop("NEUROGRADE_HOME", None)
    else:
        os.environ["NEUROGRADE_HOME"] = old


@pytest.fixture(autouse=True)
def _home(trained, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_HOME", str(trained["home"]))


def test_card_is_complete(trained):
    card = trained["card"]
    assert CARD_KEYS <= set(card)
    assert card["classes"] == ["glioma", "meningioma", "pituitary"]
    assert card["input"]["size"] == 32 and card["input"]["sequences"] == ["grey"]
    assert card["training_data"][0]["n_images"] == 36 and len(card["training_data"][0]["sha256"]) == 64
    assert card["command"].startswith("python -m core train --task tumor_type")
    assert card["temperature"] > 0
    cv = card["metrics"]["cv"]
    assert len(cv["per_fold"]) == 2 and cv["folds"] == 2
    for key in ("accuracy", "auc", "patient_accuracy"):
        assert key in cv["mean"] and len(cv["ci95"][key]) == 2
    test = card["metrics"]["test"]
    assert test["split"] == "locked test" and 0 <= test["accuracy"] <= 1 and len(test["ci95"]["accuracy"]) == 2
    lt = card["recipe"]["split"]["locked_test"]
    assert lt["n_patients"] >= 1 and len(lt["fingerprint"]) == 64
    for f in cv["per_fold"]:
        assert f["train"]["n_val"] > 0 and (trained["folder"] / f["weights"]["file"]).is_file()
    assert card["recipe"]["fit"]["epochs"] == 2


def test_checkpoint_loads_and_predicts(trained):
    from core.training.loop import predict_logits
    from core.zoo import load_checkpoint

    loaded = load_checkpoint("tumor_type@0.0.1")
    x = np.full((2, 40, 40), 128, np.uint8)
    z = predict_logits(loaded.model, loaded.spec, x)
    assert z.shape == (2, 3) and np.isfinite(z).all()


def test_evaluate_reproduces_the_locked_test_numbers(trained):
    from core.training.evaluation import evaluate

    out = evaluate("tumor_type@0.0.1", str(trained["data"]), split="test", n_boot=50)
    card_test = trained["card"]["metrics"]["test"]
    assert out["n"] == card_test["n"]
    for key in ("accuracy", "auc", "patient_accuracy"):
        assert out["headline"][key] == pytest.approx(card_test[key], abs=1e-6)


def test_evaluate_can_add_rotation_views_and_says_so(trained, capsys):
    from core.training.evaluation import evaluate

    out = evaluate("tumor_type@0.0.1", str(trained["data"]), split="test", n_boot=50, tta_rotate=8)
    assert out["tta_rotations"] == [8, -8] and out["n"] == trained["card"]["metrics"]["test"]["n"]
    assert (
        main(
            [
                "evaluate",
                "--model",
                "tumor_type@0.0.1",
                "--data",
                str(trained["data"]),
                "--split",
                "test",
                "--n-boot",
                "20",
                "--tta-rotate",
                "8",
            ]
        )
        == 0
    )
    assert "the card's numbers were not" in capsys.readouterr().out


def test_evaluate_fold_uses_the_fold_model(trained, capsys):
    rc = main(
        [
            "evaluate",
            "--model",
            "tumor_type@0.0.1",
            "--data",
            str(trained["data"]),
            "--fold",
            "2",
            "--n-boot",
            "20",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    fold2 = trained["card"]["metrics"]["cv"]["per_fold"][1]
    assert out["n"] == fold2["n_test"]
    assert out["headline"]["accuracy"] == pytest.approx(fold2["accuracy"], abs=0.06)  # fp16 fold weights


def test_progress_callback_reports_epochs_steps_and_validation(tmp_path):
    from core.training.experiment import TrainConfig, run
    from core.training.loop import FitConfig

    data = image_folder(tmp_path / "b", ("a", "b"), per_class=8, per_patient=2)
    rows = []
    cfg = TrainConfig(
        task="presence",
        data=str(data),
        folds=0,
        img_size=32,
        test_fraction=0.25,
        n_boot=20,
        fit=FitConfig(epochs=2, batch_size=4, log_every=2),
    )
    result = run(cfg, on_progress=rows.append)
    epochs = [r for r in rows if "val" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all({"stage", "step", "loss", "run"} <= set(r) for r in epochs)
    assert any("step" in r and "val" not in r and r.get("epoch") for r in rows)
    assert "accuracy" in epochs[0]["val"]
    assert result.card["metrics"]["cv"] is None and result.card["metrics"]["test"]["n"] > 0


def test_pilot_fold_reproduces_that_fold_of_the_full_run_and_writes_nothing(trained, capsys):
    before = sorted(p.name for p in (trained["home"] / "models" / "tumor_type").iterdir())
    args = [
        "train",
        "--task",
        "tumor_type",
        "--data",
        str(trained["data"]),
        "--arch",
        "vgg19_slim",
        "--strategy",
        "full",
        "--init",
        "random",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--img-size",
        "32",
        "--final",
        "--version",
        "0.0.9",
        "--seed",
        "3",
        "--n-boot",
        "50",
        "--test-fraction",
        "0.25",
        "--fold",
        "2",
    ]
    capsys.readouterr()
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pilot"] == "fold 2" and "--fold 2" in out["command"]
    full = trained["card"]["metrics"]["cv"]["per_fold"][1]
    assert out["metrics"]["accuracy"] == pytest.approx(full["accuracy"])
    assert out["metrics"]["auc"] == pytest.approx(full["auc"])
    assert sorted(p.name for p in (trained["home"] / "models" / "tumor_type").iterdir()) == before
    with pytest.raises(ValueError, match="2 CV folds"):
        main(args[:-1] + ["3"])


def test_card_data_paths_follow_the_data_dir_of_this_machine(tmp_path, monkeypatch):
    from core.training.evaluation import data_for_card

    here = tmp_path / "data"
    (here / "figshare-cemri").mkdir(parents=True)
    kept = tmp_path / "elsewhere" / "tcga-lgg"
    kept.mkdir(parents=True)
    monkeypatch.setenv("NEUROGRADE_DATA_DIR", str(here))
    card = {"recipe": {"data": f"/trainer/data/figshare-cemri:600,{kept},/trainer/data/tcia-btp"}}
    # moved folder found by name (its cap kept); an existing path kept; a folder found nowhere left as recorded
    assert data_for_card(card) == f"{here / 'figshare-cemri'}:600,{kept},/trainer/data/tcia-btp"
    # an explicit --data wins, with the card's caps for the same sources
    assert data_for_card(card, "/mine/figshare-cemri") == "/mine/figshare-cemri:600"


def test_no_final_overrides_a_recipe_and_stays_in_the_recorded_command():
    from core.cli import build_parser
    from core.commands.train import build_config, command_line

    args = build_parser().parse_args(["train", "--recipe", "tumor_type", "--no-final", "--epochs", "1"])
    cfg, _ = build_config(args)
    assert cfg.final is False and cfg.fit.epochs == 1
    assert "--no-final" in command_line(args).split()
    assert build_config(build_parser().parse_args(["train", "--recipe", "tumor_type"]))[0].final is True
