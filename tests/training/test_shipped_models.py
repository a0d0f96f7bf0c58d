"""The shipped models, re-scored on their held-out data, match their cards (real data only)."""

import json
import os
from pathlib import Path

import pytest

from model_zoo.versions import SHIPPED_ROOT

pytestmark = [pytest.mark.data, pytest.mark.slow]

# task -> how its card's held-out numbers are reproduced
CASES = {"tumor_type": {"fold": 1}, "presence": {"split": "test"}, "grade": {"split": "test"}}


def _shipped(task):
    active = SHIPPED_ROOT / task / "ACTIVE"
    if not active.is_file():
        pytest.skip(f"no shipped {task} model")
    return active.read_text().strip()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return os.environ.get("NEUROGRADE_CACHE_DIR") or str(tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("task", sorted(CASES))
def test_shipped_model_reproduces_its_card(task, shared_data, cache_dir, monkeypatch):
    from core.training.evaluation import evaluate

    monkeypatch.setenv("NEUROGRADE_CACHE_DIR", cache_dir)
    version = _shipped(task)
    card = json.loads((SHIPPED_ROOT / task / version / "card.json").read_text())
    data = ",".join(str(shared_data / Path(p.split(":")[0]).name) for p in card["recipe"]["data"].split(","))
    out = evaluate(f"{task}@{version}", data, n_boot=100, **CASES[task])
    assert out["manifest_sha256"] == out["card_manifest_sha256"]
    key = "accuracy" if task == "tumor_type" else ("patient_auc" if task == "grade" else "auc")
    assert out["card"][key] is not None
    assert out["headline"][key] == pytest.approx(out["card"][key], abs=0.02)
    assert (SHIPPED_ROOT / task / version / "model.pt").stat().st_size < 25 * 1024 * 1024
