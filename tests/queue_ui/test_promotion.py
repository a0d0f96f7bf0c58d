"""core.promotion: compare on a shared locked test split, promote only a better challenger, roll back;
the store holds the champion and the zoo's active.json follows it; the review queue is re-scored
after a change (core.review); the zoo CLI. Challenger
versions avoid the shipped names: the CLI test runs in a subprocess that sees model_zoo/checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from queue_ui_helpers import GRADE_CLASSES, TYPE_CLASSES, held_out_metrics, make_version

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo():
    from core.store import Store

    return Store.open()


@pytest.fixture
def type_versions():
    from core.zoo import set_active

    make_version("tumor_type", "1.0.1", TYPE_CLASSES, held_out_metrics(0.80), "fp-A")
    make_version("tumor_type", "9.2.0", TYPE_CLASSES, held_out_metrics(0.85), "fp-A", seed=1)
    make_version("tumor_type", "0.9.0", TYPE_CLASSES, held_out_metrics(0.70), "fp-A", seed=2)
    make_version("tumor_type", "2.0.0", TYPE_CLASSES, held_out_metrics(0.99), "fp-OTHER", seed=3)
    set_active("tumor_type", "1.0.1")


def test_compare_pairs_the_same_split_with_cis_deltas_and_confusions(type_versions, repo):
    from core.promotion import compare

    c = compare("tumor_type", "9.2.0", repo=repo)
    assert c.champion == "1.0.1" and c.comparable and c.beats
    assert c.primary == "balanced_accuracy" and c.fingerprint == "fp-A"
    assert c.challenger_value == pytest.approx(0.85) and c.champion_value == pytest.approx(0.80)
    assert c.delta == pytest.approx(0.05)
    assert c.challenger_ci == pytest.approx([0.80, 0.90])
    assert c.per_class["glioma"]["sensitivity"]["delta"] == pytest.approx(0.05)
    assert c.confusion["challenger"][0][0] == 10 and c.confusion["classes"] == TYPE_CLASSES


def test_compare_refuses_different_fingerprints(type_versions, repo):
    from core.promotion import compare

    c = compare("tumor_type", "2.0.0", repo=repo)
    assert not c.comparable and not c.beats
    assert "different locked test splits" in c.reason


def test_store_evaluation_on_a_common_split_makes_versions_comparable(type_versions, repo):
    from core.promotion import compare, record_evaluation

    record_evaluation("tumor_type", "1.0.1", "fp-OTHER", held_out_metrics(0.90), "review hold-out", repo=repo)
    c = compare("tumor_type", "2.0.0", repo=repo)
    assert c.comparable and c.fingerprint == "fp-OTHER" and c.beats
    assert c.champion_value == pytest.approx(0.90)


def test_promote_refuses_a_worse_challenger_and_changes_nothing(type_versions, repo):
    from core.promotion import PromotionRefused, promote
    from core.zoo import active_version

    with pytest.raises(PromotionRefused) as err:
        promote("tumor_type", "0.9.0", actor="Dr Ada", repo=repo)
    assert "does not beat" in str(err.value)
    assert err.value.comparison.champion_value == pytest.approx(0.80)
    assert active_version("tumor_type") == "1.0.1"
    assert repo.models.champion("tumor_type") is None
    with pytest.raises(PromotionRefused):  # not comparable: refused too
        promote("tumor_type", "2.0.0", actor="Dr Ada", repo=repo)
    assert active_version("tumor_type") == "1.0.1"


def test_promote_then_rollback_moves_zoo_and_store_together(type_versions, repo):
    from core.promotion import PromotionError, promote, rollback
    from core.zoo import active_version

    res = promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    assert res.previous == "1.0.1" and not res.forced
    assert active_version("tumor_type") == "9.2.0"
    assert repo.models.champion("tumor_type").version == "9.2.0"
    assert repo.models.champion_history("tumor_type") == ["1.0.1", "9.2.0"]
    decisions = repo.audit.entries(action="promotion_decision")
    assert decisions[-1].actor == "Dr Ada" and decisions[-1].after["comparison"]["beats"] is True

    back = rollback("tumor_type", actor="Dr Bob", repo=repo)
    assert back.version == "1.0.1" and back.previous == "9.2.0"
    assert active_version("tumor_type") == "1.0.1"
    assert repo.models.champion("tumor_type").version == "1.0.1"
    with pytest.raises(PromotionError, match="no earlier champion"):
        rollback("tumor_type", actor="Dr Bob", repo=repo)
    assert active_version("tumor_type") == "1.0.1"


def test_forced_promotion_needs_a_reason_and_is_audited(type_versions, repo):
    from core.promotion import PromotionRefused, promote
    from core.zoo import active_version

    with pytest.raises(PromotionRefused, match="reason"):
        promote("tumor_type", "0.9.0", actor="Dr Ada", force=True, repo=repo)
    res = promote("tumor_type", "0.9.0", actor="Dr Ada", force=True, reason="site validation", repo=repo)
    assert res.forced and active_version("tumor_type") == "0.9.0"
    last = repo.audit.entries(entity="champion")[-1]
    assert last.after["version"] == "0.9.0" and last.after["reason"].startswith("FORCED")


def test_grade_is_judged_on_patient_level_auc(repo):
    from core.promotion import PromotionRefused, compare, promote
    from core.zoo import active_version, set_active

    champ = held_out_metrics(0.70, classes=GRADE_CLASSES, patient=True)
    chal = held_out_metrics(0.90, classes=GRADE_CLASSES, patient=True)
    chal["patient"]["auc"] = 0.60  # better slices, worse patients
    make_version("grade", "1.0.1", GRADE_CLASSES, champ, "fp-G", channels=3)
    make_version("grade", "1.2.0", GRADE_CLASSES, chal, "fp-G", channels=3, seed=1)
    set_active("grade", "1.0.1")
    c = compare("grade", "1.2.0", repo=repo)
    assert (c.primary, c.level) == ("auc", "patient") and not c.beats
    with pytest.raises(PromotionRefused):
        promote("grade", "1.2.0", actor="Dr Ada", repo=repo)
    assert active_version("grade") == "1.0.1"


def _cli(*args):
    import os

    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )


def test_zoo_cli_promote_and_rollback(type_versions):
    from core.zoo import active_version

    out = _cli("zoo", "promote", "tumor_type@0.9.0", "--actor", "cli-test")
    assert out.returncode == 4, out.stderr
    assert "does not beat" in out.stderr
    out = _cli("zoo", "promote", "tumor_type@9.2.0", "--actor", "cli-test", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["previous"] == "1.0.1"
    assert active_version("tumor_type") == "9.2.0"
    out = _cli("zoo", "rollback", "tumor_type", "--actor", "cli-test")
    assert out.returncode == 0, out.stderr
    assert active_version("tumor_type") == "1.0.1"


def _pending_scores(repo, strategy):
    return repo.queue.scores("tumor_type", strategy)


def test_promote_and_rollback_rescore_the_pending_queue_with_the_new_champion(type_versions, repo):
    from queue_ui_helpers import seed_store

    from core.active_learning import refresh_scores
    from core.promotion import promote, rollback
    from core.review import refresh_queue_scores

    ids = seed_store(repo, n_cases=3, per_case=2, model_version="1.0.1")
    repo.queue.enqueue(ids, "tumor_type")
    assert refresh_scores(repo, "tumor_type", "entropy", model_version="1.0.1")["rescored"] == len(ids)
    assert refresh_scores(repo, "tumor_type", "margin", model_version="1.0.1")["rescored"] == len(ids)
    repo.queue.label(ids[0], "tumor_type", "glioma", "Dr Ada")  # labelled: leaves the queue
    pending = set(ids[1:])
    before = _pending_scores(repo, "entropy")

    res = promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    rescore = refresh_queue_scores("tumor_type", res.version, repo)
    assert rescore["errors"] == {}
    assert set(rescore["strategies"]) == {"entropy", "margin"}  # the strategies stored for the task
    assert rescore["strategies"]["entropy"]["predicted"] == len(pending)
    assert rescore["strategies"]["margin"]["predicted"] == 0  # predictions reused
    for strategy in ("entropy", "margin"):
        now = _pending_scores(repo, strategy)
        assert {i for i, (_, mv) in now.items() if mv == "9.2.0"} == pending
        assert now[ids[0]][1] == "1.0.1"  # the labelled item is left alone
    new = _pending_scores(repo, "entropy")
    assert any(abs(new[i][0] - before[i][0]) > 1e-6 for i in pending)  # really the new model's scores
    preds = repo.cases.latest_predictions("tumor_type", "9.2.0", sorted(pending))
    assert set(preds) == pending and all(len(p.probabilities) == 3 for p in preds.values())
    assert rescore["model_version"] == "9.2.0"

    back = rollback("tumor_type", actor="Dr Bob", repo=repo)
    back_rescore = refresh_queue_scores("tumor_type", back.version, repo)
    assert back_rescore["strategies"]["entropy"]["predicted"] == 0  # 1.0.0's predictions are stored
    assert {mv for i, (_, mv) in _pending_scores(repo, "entropy").items() if i in pending} == {"1.0.1"}
    assert {i: v for i, (v, _) in _pending_scores(repo, "entropy").items() if i in pending} == pytest.approx(
        {i: before[i][0] for i in pending}
    )


def test_a_failed_rescore_does_not_undo_the_promotion(type_versions, repo, monkeypatch, caplog):
    from queue_ui_helpers import seed_store

    import core.review
    from core.promotion import promote
    from core.review import refresh_queue_scores, rescore_note
    from core.zoo import active_version

    ids = seed_store(repo, n_cases=2, per_case=1, model_version="1.0.1")
    repo.queue.enqueue(ids, "tumor_type")

    def broken(*a, **k):
        raise RuntimeError("model file unreadable")

    monkeypatch.setattr(core.review, "predict_items", broken)
    res = promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    rescore = refresh_queue_scores("tumor_type", res.version, repo)
    assert active_version("tumor_type") == "9.2.0" and repo.models.champion("tumor_type").version == "9.2.0"
    assert "model file unreadable" in rescore["errors"]["entropy"]
    assert "FAILED" in rescore_note(rescore)
    assert any("re-scoring" in r.getMessage() for r in caplog.records)
    assert all(mv != "9.2.0" for _, mv in repo.queue.scores("tumor_type", "entropy").values())


# --------------------------------------------------- the store is the single truth for champions
def test_the_store_decides_the_champion_and_active_json_follows_it(type_versions, repo):
    from core.config import get_settings
    from core.promotion import PromotionRefused, compare, promote
    from core.zoo import active_version, set_active

    promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    active_file = get_settings().home / "active.json"
    assert json.loads(active_file.read_text())["tumor_type"] == "9.2.0"
    set_active("tumor_type", "0.9.0")  # the derived file edited behind the store's back
    assert compare("tumor_type", "1.0.1", repo=repo).champion == "9.2.0"
    with pytest.raises(PromotionRefused, match="already the active version"):
        promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    assert active_version("tumor_type") == "9.2.0"  # ... and written again from the store


def test_a_failed_active_json_write_leaves_the_store_in_charge(type_versions, repo, monkeypatch):
    import core.promotion
    from core.promotion import PromotionError, promote
    from core.zoo import active_version

    def disk_full(task, version):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(core.promotion, "set_active", disk_full)
        with pytest.raises(PromotionError, match="could not be written"):
            promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    assert repo.models.champion("tumor_type").version == "9.2.0"
    assert active_version("tumor_type") == "1.0.1"  # stale until written again
    with pytest.raises(PromotionError, match="already the active version"):
        promote("tumor_type", "9.2.0", actor="Dr Ada", repo=repo)
    assert active_version("tumor_type") == "9.2.0"


# --------------------------------------------------- never an unverifiable or unscored champion
def _folder(task: str, version: str):
    from core.zoo import resolve_ref

    return resolve_ref(f"{task}@{version}").path


def test_forced_promotion_of_a_tampered_version_is_refused(type_versions, repo, tamper):
    from core.promotion import PromotionRefused, promote
    from core.zoo import active_version

    tamper(_folder("tumor_type", "9.2.0"))  # it would beat the champion
    for force in (False, True):
        with pytest.raises(PromotionRefused, match="cannot be loaded or verified") as err:
            promote("tumor_type", "9.2.0", actor="Dr Ada", force=force, reason="site validation", repo=repo)
        assert "sha256" in str(err.value)
    assert active_version("tumor_type") == "1.0.1" and repo.models.champion("tumor_type") is None


def test_zoo_cli_refuses_to_force_a_tampered_version(type_versions, tamper):
    from core.zoo import active_version

    tamper(_folder("tumor_type", "0.9.0"))
    out = _cli("zoo", "promote", "tumor_type@0.9.0", "--force", "--reason", "trust me", "--actor", "cli-test")
    assert out.returncode == 4, out.stderr
    assert "not promoted" in out.stderr and "cannot be loaded or verified" in out.stderr
    assert active_version("tumor_type") == "1.0.1"


def test_a_version_without_a_locked_test_score_is_refused_even_forced(type_versions, repo):
    from core.promotion import PromotionRefused, promote
    from core.zoo import active_version

    make_version("tumor_type", "3.0.0", TYPE_CLASSES, test=None, fingerprint=None, seed=4)  # CV only
    with pytest.raises(PromotionRefused, match="no score on a locked test"):
        promote("tumor_type", "3.0.0", actor="Dr Ada", force=True, reason="looks better", repo=repo)
    assert active_version("tumor_type") == "1.0.1"


def test_a_version_is_scored_on_its_locked_test_before_it_can_be_promoted(type_versions, repo, monkeypatch):
    import core.promotion
    from core.promotion import PromotionRefused, promote
    from core.zoo import active_version

    make_version("tumor_type", "3.0.0", TYPE_CLASSES, test=None, fingerprint="fp-A", seed=4)
    with pytest.raises(PromotionRefused, match="cannot be scored here"):  # no data on this machine
        promote("tumor_type", "3.0.0", actor="Dr Ada", repo=repo)
    scored = []
    monkeypatch.setattr(
        core.promotion, "score_locked_test", lambda task, version: scored.append(version) or held_out_metrics(0.90)
    )
    res = promote("tumor_type", "3.0.0", actor="Dr Ada", repo=repo)
    assert scored == ["3.0.0"] and active_version("tumor_type") == "3.0.0"
    assert res.comparison.comparable and res.comparison.challenger_value == pytest.approx(0.90)
    assert [e.split for e in core.promotion.store_evaluations("tumor_type", "3.0.0", repo)] == ["locked test"]
