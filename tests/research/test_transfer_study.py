"""`python -m core transferability` on a tiny synthetic image folder, and the advisor."""

import json

import pytest


@pytest.fixture
def user_checkpoint():
    """A small vgg19_slim 'presence' model in the user's model folder (NEUROGRADE_HOME)."""
    import torch

    import model_zoo as zoo
    from core.zoo import save_checkpoint

    torch.manual_seed(1)
    model = zoo.create("vgg19_slim", 2)
    save_checkpoint(
        model,
        {
            "architecture": "vgg19_slim",
            "classes": ["no_tumor", "tumor"],
            "input": {"size": 32},
            "training_data": [{"name": "elsewhere", "n_images": 10, "n_patients": 2}],
        },
        "presence",
        "t1",
    )
    return "presence@t1"


def test_transferability_cli_ranks_and_validates(tiny_folder, user_checkpoint, tmp_path):
    from core.cli import main
    from model_zoo import imagenet_available

    out = tmp_path / "tr.json"
    cands = [
        "random:vgg19_slim",
        "random:vgg19_slim#block2",
        "random:vgg19_slim#block3",
        f"{user_checkpoint}",
        f"{user_checkpoint}#block3",
    ]
    if not imagenet_available("vgg19"):
        cands.append("imagenet:vgg19")
    code = main(
        [
            "transferability",
            "--task",
            "grade",
            "--data",
            str(tiny_folder),
            "--candidates",
            ",".join(cands),
            "--folds",
            "3",
            "--size",
            "32",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    res = json.loads(out.read_text())
    by = {r["candidate"]: r for r in res["candidates"]}
    assert set(by) == set(cands)
    if "imagenet:vgg19" in by:  # reported, not faked
        assert by["imagenet:vgg19"]["status"] == "unavailable"
        assert "ImageNet" in by["imagenet:vgg19"]["reason"]
    ok = [r for r in res["candidates"] if r["status"] == "ok"]
    assert len(ok) == 5
    # LEEP / NCE need the source head: only the checkpoint's penultimate features have one
    assert by[user_checkpoint]["scores"]["leep"] is not None and by[user_checkpoint]["scores"]["nce"] is not None
    assert by[f"{user_checkpoint}#block3"]["scores"]["leep"] is None
    assert by["random:vgg19_slim"]["scores"]["leep"] is None
    assert by["random:vgg19_slim#block2"]["feature_dim"] == 32 and by["random:vgg19_slim"]["feature_dim"] == 256
    for r in ok:
        assert 0 <= r["fine_tuned"]["balanced_accuracy"] <= 1 and r["fine_tuned"]["folds"] == 3
        assert r["saw_target_images"] is False
    ag = res["agreement"]["balanced_accuracy"]["logme"]
    assert ag["n"] == 5
    assert ag["kendall_tau"] is None or -1 <= ag["kendall_tau"] <= 1
    assert [x["rank"] for x in res["ranking"]["logme"]] == [1, 2, 3, 4, 5]
    assert res["command"].startswith("python -m core transferability --task grade")
    assert res["advice"][0]["suggested_strategy"] in ("head", "blockwise")


def test_advise_base_model_ranks_by_logme(tiny_folder, user_checkpoint):
    from core.research.transfer_study import advise_base_model

    ranked = advise_base_model(
        "grade", str(tiny_folder), ["random:vgg19_slim", user_checkpoint, f"{user_checkpoint}#block2"], max_slices=None
    )
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert ranked[0]["score"] >= ranked[1]["score"] >= ranked[2]["score"]
    assert {r["init"] for r in ranked} == {"random", user_checkpoint}
    own = [r for r in ranked if r["init"] == user_checkpoint]
    # both depths of one source share its suggestion: the better-scoring depth decides
    assert len({(r["suggested_strategy"], r["suggested_unfreeze_blocks"]) for r in own}) == 1


def test_a_model_trained_on_the_target_labels_is_excluded(tiny_folder):
    import torch

    import model_zoo as zoo
    from core.research.transfer_study import run_transferability
    from core.zoo import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(
        zoo.create("vgg19_slim", 2),
        {
            "architecture": "vgg19_slim",
            "classes": ["G2", "G3"],
            "input": {"size": 32},
            "training_data": [{"name": "tiny"}],
        },
        "grade",
        "own",
    )
    res = run_transferability("grade", str(tiny_folder), ["grade@own", "random:vgg19_slim"], folds=3, size=32)
    by = {r["candidate"]: r for r in res["candidates"]}
    assert by["grade@own"]["status"] == "excluded" and by["grade@own"]["trained_on_target_labels"]
    assert by["random:vgg19_slim"]["status"] == "ok"
