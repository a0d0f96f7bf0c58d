"""AppTest of the review, train and models pages on a seeded store (tiny zoo versions, crafted cards)."""

import os
import socket
from pathlib import Path

import pytest
from queue_ui_helpers import TYPE_CLASSES, held_out_metrics, make_version, seed_store
from streamlit.testing.v1 import AppTest

from tests.auth_helpers import sign_in

PAGES = Path(__file__).resolve().parents[2] / "pages"


@pytest.fixture
def repo():
    from core.store import Store
    from core.zoo import set_active

    make_version("tumor_type", "1.0.0", TYPE_CLASSES, held_out_metrics(0.80), "fp-A")
    set_active("tumor_type", "1.0.0")
    r = Store.open()
    seed_store(r, n_cases=3)
    return r


def _page(name: str, reviewer: str | None = "Dr Ada", role: str = "admin") -> AppTest:
    """The page, signed in as `reviewer` with `role` (None: nobody signed in)."""
    at = AppTest.from_file(str(PAGES / name), default_timeout=60)
    if reviewer is not None:
        sign_in(at, reviewer, role)
    return at.run()


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------------------------- review
def _plain(markdown: str) -> str:
    """Card and user text reaches Markdown escaped (core.markup.text): what the reader sees."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)


def test_review_saves_a_correction_then_shows_the_next_item(repo):
    at = _page("review.py")
    _ok(at)
    first = at.session_state["review_current"]["item_id"]
    at.radio(key=f"review_label_{first}").set_value("meningioma")
    at.button(key="FormSubmitter:review_form-Save label").click().run()
    _ok(at)
    entry = repo.queue.entry(first, "tumor_type")
    assert entry.status == "labelled" and entry.current_label.value == "meningioma"
    assert entry.current_label.reviewer == "Dr Ada"
    assert at.session_state["review_current"]["item_id"] != first
    assert any("meningioma" in s.value for s in at.success)


def test_review_conflict_shows_the_current_label_and_overwrites_nothing(repo):
    at = _page("review.py")
    item = at.session_state["review_current"]["item_id"]
    repo.queue.label(item, "tumor_type", "pituitary", "Dr Bob")  # saved elsewhere meanwhile
    at.radio(key=f"review_label_{item}").set_value("glioma")
    at.button(key="FormSubmitter:review_form-Save label").click().run()
    _ok(at)
    assert "Someone else labelled this item: current label pituitary" in _plain(at.error[0].value)
    assert repo.queue.entry(item, "tumor_type").current_label.value == "pituitary"
    assert [lab.value for lab in repo.queue.label_history(item, "tumor_type")] == ["pituitary"]


def test_review_needs_a_reviewer_and_a_comment_to_flag(repo):
    at = _page("review.py", reviewer=None)
    _ok(at)
    assert "Sign in" in at.info[0].value  # nobody signed in: no queue, no form
    assert not [b for b in at.button if b.key == "FormSubmitter:review_form-Save label"]
    at = _page("review.py")
    item = at.session_state["review_current"]["item_id"]
    at.button(key="FormSubmitter:review_form-Flag").click().run()
    assert any("say why" in w.value for w in at.warning)
    assert repo.queue.entry(item, "tumor_type").status == "pending"
    at.text_input(key=f"review_comment_{item}").input("motion artefact")
    at.button(key="FormSubmitter:review_form-Flag").click().run()
    _ok(at)
    assert repo.queue.entry(item, "tumor_type").status == "flagged"


def test_review_skip_and_grad_cam_toggle(repo):
    at = _page("review.py")
    item = at.session_state["review_current"]["item_id"]
    at.button(key="FormSubmitter:review_form-Skip").click().run()
    _ok(at)
    assert at.session_state["review_current"]["item_id"] != item
    at.toggle(key="review_cam").set_value(True).run()
    _ok(at)
    assert not any("No Grad-CAM" in c.value for c in at.caption)


# ---------------------------------------------------------------------------------- train
def _finished_job(repo):
    from core.promotion import record_evaluation

    make_version("tumor_type", "1.0.0.rq9", TYPE_CLASSES, held_out_metrics(0.90), "fp-A", seed=4)
    job = repo.jobs.create("train", {"task": "tumor_type", "strategy": "head", "epochs": 2})
    repo.jobs.update(job, status="running")
    repo.jobs.update(
        job,
        status="succeeded",
        progress=1.0,
        metrics={
            "phase": "done",
            "version": "1.0.0.rq9",
            "champion": "1.0.0",
            "history": [{"stage": "head", "epoch": 1, "loss": 1.0}, {"stage": "head", "epoch": 2, "loss": 0.8}],
        },
    )
    record_evaluation("tumor_type", "1.0.0", "fp-A", held_out_metrics(0.80), "locked test", repo=repo)
    return job


def test_train_page_shows_curves_and_the_comparison_of_a_finished_job(repo):
    _finished_job(repo)
    at = _page("train.py")
    _ok(at)
    assert any("Beats the champion" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) >= 3  # curves, metric comparison, confusion matrices


def test_train_page_cancels_a_running_job_from_the_store(repo):
    job = repo.jobs.create("train", {"task": "tumor_type", "strategy": "full", "epochs": 3})
    repo.jobs.update(
        job,
        status="running",
        pid=os.getpid(),
        host=socket.gethostname(),
        progress=0.4,
        metrics={"history": [{"stage": "full", "epoch": 1, "loss": 1.2}]},
    )
    at = _page("train.py")  # a fresh session: state comes from the store
    _ok(at)
    assert at.session_state["train_job_id"] == job
    at.button(key=f"train_cancel_{job}").click().run()
    _ok(at)
    assert repo.jobs.get(job).cancel_requested


def test_train_page_starts_a_job(repo, monkeypatch):
    import core.training.job as training_job

    launched = []
    monkeypatch.setattr(training_job, "launch_training_job", lambda job_id, repo=None: launched.append(job_id))
    at = _page("train.py")
    at.radio(key="train_strategy").set_value("blockwise")
    at.number_input(key="train_epochs").set_value(2)
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    _ok(at)
    assert len(launched) == 1
    job = repo.jobs.get(launched[0])
    assert job.kind == "train" and job.params["strategy"] == "blockwise" and job.params["epochs"] == 2
    assert job.params["base"] == "1.0.0" and job.params["actor"] == "Dr Ada"


# ---------------------------------------------------------------------------------- models
def test_models_page_refuses_a_worse_challenger_with_the_reason(repo):
    from core.zoo import active_version

    make_version("tumor_type", "0.9.0", TYPE_CLASSES, held_out_metrics(0.70), "fp-A", seed=5)
    at = _page("models.py")
    _ok(at)
    assert any("Intended use" in m.value for m in at.markdown)
    results = _plain(next(m.value for m in at.markdown if "Held-out results" in m.value))  # from the metrics
    assert "Locked test split (40 slices): slice accuracy 0.700 (95% CI 0.650-0.750)" in results
    assert at.selectbox(key="models_version_tumor_type").value == "0.9.0"
    at.button(key="models_promote_tumor_type").click().run()
    _ok(at)
    assert "was not promoted" in at.error[0].value and "does not beat" in at.error[0].value
    assert active_version("tumor_type") == "1.0.0"


def test_models_page_promotes_then_rolls_back(repo):
    from core.zoo import active_version

    make_version("tumor_type", "1.1.0", TYPE_CLASSES, held_out_metrics(0.90), "fp-A", seed=6)
    at = _page("models.py")
    at.button(key="models_promote_tumor_type").click().run()
    _ok(at)
    assert active_version("tumor_type") == "1.1.0"
    assert "now active" in at.success[0].value
    at.button(key="models_rollback_tumor_type").click().run()
    _ok(at)
    assert active_version("tumor_type") == "1.0.0"
    assert repo.models.champion_history("tumor_type") == ["1.0.0"]
