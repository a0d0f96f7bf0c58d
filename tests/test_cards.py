"""core.cards.ModelCard: shipped cards round-trip exactly, typed access returns what the JSON has,
a malformed card is refused with the file and the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cards import CardError, ModelCard
from model_zoo.versions import SHIPPED_ROOT

SHIPPED = sorted(SHIPPED_ROOT.glob("*/*/card.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}@{p.parent.name}")
def test_every_shipped_card_round_trips_exactly(path: Path):
    text = path.read_text(encoding="utf-8")
    card = ModelCard.read(path)
    assert card.to_dict() == json.loads(text)
    assert json.dumps(card.to_dict(), indent=2) + "\n" == text  # same keys in the same order
    assert dict(card) == json.loads(text)  # the Mapping view too


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}@{p.parent.name}")
def test_typed_access_returns_what_the_json_has(path: Path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    card = ModelCard.read(path.parent)
    assert card.ref == f"{raw['task']}@{raw['version']}"
    assert list(card.classes) == raw["classes"]
    assert card.input.size == raw["input"]["size"]
    assert list(card.input.sequences) == raw["input"]["sequences"]
    assert list(card.input.mean) == raw["input"]["mean"]
    assert card.temperature == raw["temperature"]
    assert card.tta is raw["recipe"]["tta"]
    assert card.recipe.folds == raw["recipe"]["folds"]
    assert card.recipe.data == raw["recipe"]["data"]
    assert card.recipe.seed == raw["recipe"]["fit"]["seed"]
    assert card.metrics.test == raw["metrics"]["test"]
    assert card.metrics.per_fold == raw["metrics"]["cv"]["per_fold"]
    assert card.training_sources == [d["name"] for d in raw["training_data"]]
    locked = raw["recipe"]["split"].get("locked_test") or {}
    assert list(card.locked_test.patients) == locked.get("patients", [])
    assert card.locked_test.fingerprint == locked.get("fingerprint")
    for key in ("int8", "feature_density", "referral", "gate"):
        assert (getattr(card, key) is None) == (key not in raw)
    if "referral" in raw:
        assert card.referral.max_percentile == raw["referral"]["max_percentile"]
        assert [dict(p) for p in card.referral.risk_coverage] == raw["referral"]["risk_coverage"]
    if "gate" in raw:
        assert card.gate.max_distance == raw["gate"]["max_distance"] and card.gate.layer == raw["gate"]["layer"]
        assert card.side_file("gate").sha256 == raw["gate"]["sha256"]
    if "int8" in raw:
        assert card.int8.identical_labels == raw["int8"]["agreement_with_fp32"]["identical_labels"]


def test_a_sparse_card_reads_with_defaults_and_writes_back_only_what_it_had():
    raw = {"recipe": {"data": "/data/x:600"}, "mystery": {"kept": [1, 2]}, "parent": None}
    card = ModelCard.from_dict(raw)
    assert card.input.size is None and card.classes == () and card.referral is None
    assert card.recipe.split.locked_test.patients == () and card.tta is False
    assert card.to_dict() == raw and card.extra == {"mystery": {"kept": [1, 2]}}


def test_a_changed_card_writes_its_new_fields_and_keeps_unknown_keys():
    card = ModelCard.from_dict({"task": "t", "future_key": 1})
    changed = card.replace(notes=("one",), input=card.input.replace(size=64))
    assert changed.to_dict() == {"task": "t", "future_key": 1, "notes": ["one"], "input": {"size": 64}}
    assert card.to_dict() == {"task": "t", "future_key": 1}  # the original is unchanged


def test_to_dict_is_a_copy():
    card = ModelCard.from_dict({"metrics": {"test": {"auc": 0.9}}})
    card.to_dict()["metrics"]["test"]["auc"] = 0.1
    card["metrics"]["test"]["auc"] = 0.1
    assert card.metrics.test["auc"] == 0.9


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"input": {"size": "64"}}, "input.size"),
        ({"classes": ["a", 3]}, "classes[1]"),
        ({"temperature": True}, "temperature"),
        ({"recipe": {"split": {"locked_test": {"patients": "P1"}}}}, "recipe.split.locked_test.patients"),
        ({"referral": []}, "referral"),
        ({"training_data": [{"n_images": 1.5}]}, "training_data[0].n_images"),
    ],
)
def test_a_malformed_card_names_the_file_and_the_field(raw, field):
    with pytest.raises(CardError, match=rf"^somewhere/card\.json: field '{field.replace('[', '.').replace(']', '.')}"):
        ModelCard.from_dict(raw, "somewhere/card.json")


def test_an_unreadable_card_file_is_a_card_error(tmp_path: Path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(CardError, match="card.json: cannot read"):
        ModelCard.read(tmp_path)
    (tmp_path / "card.json").write_text("[]")
    with pytest.raises(CardError, match="must be an object"):
        ModelCard.read(tmp_path / "card.json")


def test_coerce_accepts_a_card_a_dict_or_none():
    card = ModelCard.from_dict({"task": "t"})
    assert ModelCard.coerce(card) is card
    assert ModelCard.coerce({"task": "t"}) == card
    assert ModelCard.coerce(None).to_dict() == {}


def test_write_goes_through_the_zoo_guard(tmp_path: Path):
    raw = {"task": "t", "version": "1", "sha256": "ab", "classes": ["a", "b"], "notes": []}
    (tmp_path / "card.json").write_text(json.dumps(raw))
    card = ModelCard.read(tmp_path)
    card.replace(notes=("re-read",)).write(tmp_path)
    assert ModelCard.read(tmp_path).notes == ("re-read",)
    with pytest.raises(ValueError, match="cannot change"):
        card.replace(classes=("a", "c")).write(tmp_path / "card.json")
