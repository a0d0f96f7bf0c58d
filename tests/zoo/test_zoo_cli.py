"""`python -m core zoo ...`."""

import json

import pytest

from core.cli import main
from core.zoo import save_checkpoint, set_active
from model_zoo import create


@pytest.fixture(scope="module")
def slim():
    return create("vgg19_slim", 3)


def _card(created, acc):
    return {
        "architecture": "vgg19_slim",
        "classes": ["glioma", "meningioma", "pituitary"],
        "created": created,
        "metrics": {"cv": {"mean": {"accuracy": acc - 0.01}}, "test": {"accuracy": acc, "macro_f1": acc - 0.02}},
    }


def test_zoo_list_json_shows_every_version(slim, _isolated_zoo, capsys):
    save_checkpoint(slim, _card("2025-01-01", 0.9), "tumor_type", "s1", root=_isolated_zoo)
    (_isolated_zoo / "tumor_type" / "ACTIVE").write_text("s1\n")
    save_checkpoint(slim, _card("2025-02-01", 0.92), "tumor_type", "u1")
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["task"], r["version"], r["source"], r["active"]) for r in rows] == [
        ("tumor_type", "s1", "shipped", True),
        ("tumor_type", "u1", "user", False),
    ]
    assert rows[1]["architecture"] == "vgg19_slim"
    assert rows[1]["metrics"] == pytest.approx({"test_accuracy": 0.92, "test_macro_f1": 0.90, "cv_accuracy": 0.91})

    set_active("tumor_type", "u1")  # what promotion does
    assert main(["zoo", "list", "--json", "--task", "tumor_type"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows if r["active"]] == ["u1"]

    assert main(["zoo", "list"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if " u1 " in ln)
    assert line.startswith("*") and "test_accuracy=0.920" in line


def test_zoo_list_empty_and_errors(capsys):
    assert main(["zoo", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["zoo", "list"]) == 0
    assert "no model versions" in capsys.readouterr().out
    assert main(["zoo"]) == 2


def test_zoo_archs_json(capsys):
    assert main(["zoo", "archs", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["vgg19_slim"]["input_size"] == 128 and rows["vgg19_slim"]["imagenet_weights"] is None
    assert rows["vgg19"]["imagenet_weights"] == "VGG19_Weights.IMAGENET1K_V1"
    assert rows["vgg19"]["imagenet_cached"] is False  # TORCH_HOME is empty in tests
