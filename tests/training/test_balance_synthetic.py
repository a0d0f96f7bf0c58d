"""'Balance with synthetic features': feature-ACGAN rows of the minority classes enter the head's
TRAINING set only (never validation or test), and the option reaches the model card."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import core.research.acgan as acgan
import model_zoo as zoo
from core.training import strategies
from core.training.experiment import model_spec
from core.training.loop import FitConfig
from core.training.strategies import Data, train_head
from tests.training._factories import blob_image, image_folder

SPEC = model_spec("vgg19_slim", 32)


def _imbalanced(seed=0):
    """12 train rows of class 0, 3 of class 1; validation 4 + 2."""
    rng = np.random.default_rng(seed)

    def imgs(labels):
        return (
            np.stack(
                [
                    np.asarray(
                        torch.nn.functional.interpolate(
                            torch.from_numpy(blob_image(c, rng)).float()[None, None], size=32, mode="bilinear"
                        )[0, 0]
                    )
                    for c in labels
                ]
            )
            .clip(0, 255)
            .astype(np.uint8)
        )

    ytr = np.array([0] * 12 + [1] * 3)
    yva = np.array([0] * 4 + [1] * 2)
    return Data(imgs(ytr), ytr, imgs(yva), yva, 2)


@pytest.fixture
def spy_balance(monkeypatch):
    calls = []
    real = acgan.balance_with_synthetic

    def spy(features, labels, *a, **kw):
        kw["epochs"] = 5  # a tiny GAN: the test checks bookkeeping, not quality
        out = real(features, labels, *a, **kw)
        calls.append({"n_in": len(labels), "labels_in": np.asarray(labels).copy(), "out": out})
        return out

    monkeypatch.setattr(strategies, "balance_with_synthetic", spy)  # as train_head looks it up
    return calls


def _head_batches(model, spec):
    """(training rows, eval rows) seen by the head: forward-hook on the classifier."""
    seen = {"train": 0, "eval": []}
    head = zoo.classifier(model, spec)

    def hook(mod, inp, out):
        if mod.training:
            seen["train"] += int(inp[0].shape[0])
        else:
            seen["eval"].append(int(inp[0].shape[0]))

    head.register_forward_hook(hook)
    return seen


def test_head_training_set_grows_with_minority_rows_only(spy_balance):
    data = _imbalanced()
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 2)
    seen = _head_batches(model, SPEC)
    cfg = FitConfig(epochs=1, batch_size=8, lr=1e-2, augment=False, seed=0, balance_synthetic=True)
    rep = train_head(model, SPEC, data, cfg)

    assert len(spy_balance) == 1
    call = spy_balance[0]
    assert call["n_in"] == 15 and call["labels_in"].tolist() == data.train_y.tolist()  # training rows only
    feats, labels, is_syn = call["out"]
    assert is_syn.sum() == 9 and set(labels[is_syn].tolist()) == {1}  # minority class only
    assert labels[~is_syn].tolist() == data.train_y.tolist()  # real rows unchanged
    syn = rep["synthetic"]
    assert syn["n_real"] == 15 and syn["n_synthetic"] == 9
    assert syn["real_per_class"] == [12, 3] and syn["synthetic_per_class"] == [0, 9]
    assert seen["train"] == 24  # one epoch over 15 real + 9 synthetic rows
    assert seen["eval"] == [6]  # validation: the 6 real rows, untouched
    assert len(data.train_y) == 15 and len(data.val_y) == 6


def test_off_by_default_no_synthetic_rows(spy_balance):
    data = _imbalanced()
    torch.manual_seed(0)
    model = zoo.create("vgg19_slim", 2)
    seen = _head_batches(model, SPEC)
    rep = train_head(model, SPEC, data, FitConfig(epochs=1, batch_size=8, augment=False, seed=0))
    assert spy_balance == [] and "synthetic" not in rep and seen["train"] == 15


def test_cli_flag_reaches_the_card_and_test_folds_stay_real(tmp_path, monkeypatch, spy_balance):
    from core.cli import main

    data = image_folder(tmp_path / "blobs", ("a", "b"), per_class=12, per_patient=2)
    for i in range(4, 12):  # class b cut to 4 images (2 patients)
        (data / "b" / f"{i:03d}.png").unlink()
    home = tmp_path / "home"
    monkeypatch.setenv("NEUROGRADE_HOME", str(home))
    args = [
        "train",
        "--task",
        "presence",
        "--data",
        str(data),
        "--arch",
        "vgg19_slim",
        "--strategy",
        "head",
        "--init",
        "random",
        "--folds",
        "0",
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--version",
        "0.0.1",
        "--seed",
        "1",
        "--n-boot",
        "10",
        "--test-fraction",
        "0.25",
        "--val-fraction",
        "0",
        "--balance-synthetic",
    ]
    assert main(args) == 0
    card = json.loads((home / "models" / "presence" / "0.0.1" / "card.json").read_text())
    recipe = card["recipe"]
    assert recipe["fit"]["balance_synthetic"] is True
    assert "--balance-synthetic" in card["command"]
    syn = recipe["final_train"]["strategy"]["synthetic"]
    n_train = recipe["final_train"]["n_train"]
    assert syn["n_real"] == n_train and syn["synthetic_per_class"][0] == 0 and syn["synthetic_per_class"][1] > 0
    assert len(spy_balance) == 1 and spy_balance[0]["n_in"] == n_train  # never the locked test rows
    assert card["metrics"]["test"]["n"] == 16 - n_train  # the test split: real rows only


def test_job_param_reaches_fit_config(monkeypatch, no_shipped_models):
    from core.training.job import create_training_job
    from core.training.loop import FitConfig as FC

    params = {}

    class Stop(Exception):
        pass

    import core.training.job as job  # train_model as the job looks it up

    def fake_train_model(cfg, ds, idx, **kw):
        params["fit"] = cfg.fit
        raise Stop

    monkeypatch.setattr(job, "train_model", fake_train_model)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "queue_ui"))
    from queue_ui_helpers import TYPE_CLASSES, held_out_metrics, label_all, make_version, seed_store

    from core.store import Store
    from core.training.job import retrain
    from core.zoo import set_active

    make_version("tumor_type", "1.0.0", TYPE_CLASSES, held_out_metrics(0.5), "fp-A")
    set_active("tumor_type", "1.0.0")
    repo = Store.open()
    label_all(repo, seed_store(repo, n_cases=8), "tumor_type", TYPE_CLASSES)
    job_id = create_training_job(
        repo, {"task": "tumor_type", "strategy": "head", "epochs": 1, "balance_synthetic": True}, "Dr Ada"
    )
    with pytest.raises(Stop):
        retrain(repo.jobs.get(job_id).params, job_id=job_id, repo=repo)
    assert isinstance(params["fit"], FC) and params["fit"].balance_synthetic is True
