"""The Train page's advisor (LogME ranking of the base models, on click) and the 'balance with
synthetic features' checkbox; core.research.transfer_study.advise_on_images / advise_for_training."""

from pathlib import Path

import numpy as np
import pytest
from queue_ui_helpers import TYPE_CLASSES, held_out_metrics, label_all, make_version, seed_store
from streamlit.testing.v1 import AppTest

from tests.auth_helpers import sign_in

PAGES = Path(__file__).resolve().parents[2] / "pages"


@pytest.fixture
def repo():
    import torch

    from core.store import Store
    from core.zoo import set_active

    torch.set_num_threads(1)
    make_version("tumor_type", "1.0.0", TYPE_CLASSES, held_out_metrics(0.8), "fp-A")
    make_version("tumor_type", "1.1.0", TYPE_CLASSES, held_out_metrics(0.8), "fp-A", seed=1)
    set_active("tumor_type", "1.0.0")
    r = Store.open()
    label_all(r, seed_store(r, n_cases=11, per_case=2), "tumor_type", TYPE_CLASSES)  # 22 labels
    return r


def _page(reviewer="Dr Ada") -> AppTest:
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=120)
    sign_in(at, reviewer, "trainer")
    return at.run()


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]


def test_logme_ranking_on_arrays_prefers_a_backbone_whose_features_separate_the_classes(monkeypatch):
    from core.research import transfer_study

    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    imgs = rng.integers(0, 255, (60, 16, 16), dtype=np.uint8)

    def fake_extract(bb, images):
        noise = rng.normal(size=(len(images), 8))
        if bb.ref.source == "good@1":
            noise[:, 0] += 4.0 * y[: len(images)]  # class signal in one dimension
        return noise.astype(np.float32), None

    monkeypatch.setattr(transfer_study, "load_backbone", lambda ref, **kw: type("B", (), {"ref": ref})())
    monkeypatch.setattr(transfer_study, "extract_features", fake_extract)
    rows = transfer_study.advise_on_images(imgs, y, ["random:vgg19_slim", "good@1", "good@1#block3"], max_images=300)
    assert rows[0]["init"] == "good@1" and rows[0]["rank"] == 1
    assert {r["candidate"] for r in rows} == {"random:vgg19_slim", "good@1", "good@1#block3"}
    top = next(r for r in rows if r["candidate"] == rows[0]["candidate"])
    assert top["suggested_strategy"] in ("head", "blockwise")
    assert rows[0]["beats_random_init"] is True


def test_advisor_caps_images_and_falls_back_to_shared_data(repo, monkeypatch, tmp_path):
    from core.research import transfer_study

    seen = {}

    def spy(images, labels, candidates, *, groups=None, max_images=300, seed=0):
        seen.update(n=len(labels), max_images=max_images, candidates=list(candidates))
        return [
            {
                "rank": 1,
                "candidate": candidates[0],
                "score": 0.1,
                "by": "logme",
                "init": "tumor_type@1.1.0",
                "suggested_strategy": "blockwise",
                "suggested_unfreeze_blocks": 2,
            }
        ]

    monkeypatch.setattr(transfer_study, "advise_on_images", spy)
    out = transfer_study.advise_for_training("tumor_type", repo)
    assert out["source"].startswith("review queue: 22") and seen["n"] == 22 and seen["max_images"] == 300
    assert {"tumor_type@1.0.0", "tumor_type@1.1.0#block3", "random:vgg19_slim"} <= set(seen["candidates"])
    assert out["best_version"] == "1.1.0"
    with pytest.raises(ValueError, match="too few confirmed labels"):  # 22 < 50 and no shared data there
        transfer_study.advise_for_training("tumor_type", repo, min_labels=50, data=str(tmp_path / "absent"))


def test_train_page_advisor_ranks_on_click_and_prefills_the_form(repo, monkeypatch):
    from core.research import transfer_study

    calls = []
    real = transfer_study.advise_for_training
    monkeypatch.setattr(
        transfer_study, "advise_for_training", lambda task, r, **kw: calls.append(task) or real(task, r, **kw)
    )
    at = _page()
    _ok(at)
    assert calls == []  # nothing runs until the click
    at.button(key="train_advise").click().run()
    _ok(at)
    assert calls == ["tumor_type"]
    result = at.session_state["train_advice_tumor_type"]
    assert "error" not in result and result["source"].startswith("review queue")
    table = at.dataframe[0].value
    assert list(table.columns) == ["candidate", "LogME", "suggested strategy", "blocks to unfreeze"]
    assert len(table) == 9  # 2 versions + random, 3 depths each
    assert np.all(np.diff(table["LogME"].to_numpy()) <= 1e-9)  # best first
    if result["best_version"]:
        assert at.session_state["train_base"] == result["best_version"]
        assert at.selectbox(key="train_base").value == result["best_version"]
    assert at.radio(key="train_strategy").value == result["best"]["suggested_strategy"]


def test_train_page_prefilled_base_and_balance_checkbox_reach_the_job(repo, monkeypatch):
    import core.training.job as training_job
    from core.research import transfer_study

    best = {
        "rank": 1,
        "candidate": "tumor_type@1.1.0#block4",
        "score": 0.5,
        "by": "logme",
        "init": "tumor_type@1.1.0",
        "suggested_strategy": "head",
        "suggested_unfreeze_blocks": 0,
    }
    monkeypatch.setattr(
        transfer_study,
        "advise_for_training",
        lambda task, r, **kw: {
            "task": task,
            "source": "review queue: 22 confirmed labels",
            "n_images": 22,
            "rows": [best],
            "best": best,
            "best_version": "1.1.0",
        },
    )
    launched = []
    monkeypatch.setattr(training_job, "launch_training_job", lambda job_id, repo=None: launched.append(job_id))
    at = _page()
    assert at.selectbox(key="train_base").value == "1.0.0"  # the active version by default
    at.button(key="train_advise").click().run()
    _ok(at)
    assert at.selectbox(key="train_base").value == "1.1.0"
    at.checkbox(key="train_balance_synthetic").check()
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    _ok(at)
    job = repo.jobs.get(launched[0])
    assert job.params["base"] == "1.1.0" and job.params["strategy"] == "head"
    assert job.params["balance_synthetic"] is True
