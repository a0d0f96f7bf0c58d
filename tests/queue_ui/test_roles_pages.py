"""Roles on the review, train and models pages: each role sees only what it may do, and what it
may do is recorded under its signed-in name (core.auth's permissions table)."""

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
    make_version("tumor_type", "1.1.0", TYPE_CLASSES, held_out_metrics(0.90), "fp-A", seed=6)
    r = Store.open()
    seed_store(r, n_cases=2)
    return r


def _page(name: str, user: str, role: str) -> AppTest:
    at = sign_in(AppTest.from_file(str(PAGES / name), default_timeout=60), user, role)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _keys(at) -> set:
    return {b.key for b in at.button}


def test_a_clinician_cannot_label(repo):
    at = _page("review.py", "Dr Cy", "clinician")
    assert "may not confirm, correct" in at.info[0].value
    assert not any("review_form" in str(k) for k in _keys(at)) and "review_current" not in at.session_state


def test_a_reviewer_labels_under_the_signed_in_name(repo):
    at = _page("review.py", "Dr Rita", "reviewer")
    item = at.session_state["review_current"]["item_id"]
    at.button(key="FormSubmitter:review_form-Save label").click().run()
    assert not at.exception
    label = repo.queue.entry(item, "tumor_type").current_label
    assert label.reviewer == "Dr Rita"
    assert repo.audit.entries(action="label")[-1].actor == "Dr Rita"
    assert not any(t.label == "Reviewer" for t in at.text_input)  # no free-text name any more


@pytest.mark.parametrize("role", ["clinician", "reviewer"])
def test_only_trainers_and_admins_can_train(repo, role):
    at = _page("train.py", "Dr X", role)
    assert "that needs trainer" in at.info[0].value
    assert "FormSubmitter:train_form-Start training" not in _keys(at)


def test_a_trainer_starts_a_run_recorded_under_their_name(repo, monkeypatch):
    import core.training.job as training_job

    launched = []
    monkeypatch.setattr(training_job, "launch_training_job", lambda job_id, repo=None: launched.append(job_id))
    at = _page("train.py", "Dr Tom", "trainer")
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    assert not at.exception and len(launched) == 1
    assert repo.jobs.get(launched[0]).params["actor"] == "Dr Tom"
    assert repo.audit.entries(entity="job")[-1].actor == "Dr Tom"


@pytest.mark.parametrize("role", ["clinician", "reviewer", "trainer"])
def test_only_admins_see_promote_force_and_rollback(repo, role):
    at = _page("models.py", "Dr X", role)
    keys = _keys(at)
    assert not {"models_promote_tumor_type", "models_force_tumor_type", "models_rollback_tumor_type"} & keys
    assert any("that needs admin" in c.value for c in at.caption)
    assert any("Against the active version" in m.value for m in at.markdown)  # still sees the comparison


def test_an_admin_promotes_and_rolls_back_under_their_name(repo):
    from core.zoo import active_version

    at = _page("models.py", "Dr Ada", "admin")
    assert {"models_promote_tumor_type", "models_force_tumor_type", "models_rollback_tumor_type"} <= _keys(at)
    at.button(key="models_promote_tumor_type").click().run()
    assert not at.exception and active_version("tumor_type") == "1.1.0"
    at.button(key="models_rollback_tumor_type").click().run()
    assert active_version("tumor_type") == "1.0.0"
    actors = {a.actor for a in repo.audit.entries(entity="champion")} - {"system"}
    assert actors == {"Dr Ada"}


def test_a_role_taken_away_applies_on_the_next_run(repo):
    from core.store import users

    at = _page("models.py", "Dr Ada", "admin")
    assert "models_promote_tumor_type" in _keys(at)
    users.update_user(repo, "Dr Ada", "test", role="reviewer")  # demoted by another admin meanwhile
    at.run()
    assert "models_promote_tumor_type" not in _keys(at)
    users.update_user(repo, "Dr Ada", "test", disabled=True)
    at.run()
    assert "auth_user" not in at.session_state  # signed out


def test_a_forged_click_is_refused_by_the_core_call(repo):
    """Even if a clinician's session reached the promote callback, core.promotion refuses it."""
    from core.zoo import active_version

    at = _page("models.py", "Dr Ada", "admin")
    from core.store import users

    users.update_user(repo, "Dr Ada", "test", role="clinician")  # the button was drawn for an admin
    at.button(key="models_promote_tumor_type").click().run()
    assert not at.exception
    assert active_version("tumor_type") == "1.0.0"
    assert any("needs the admin role" in e.value for e in at.error)
