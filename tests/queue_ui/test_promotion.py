"""core.promotion: compare on a shared locked test split, promote only a better challenger, roll back;
the zoo's active.json and the store's champion history move together; the zoo CLI."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from queue_ui_helpers import GRADE_CLASSES, TYPE_CLASSES, make_version, held_out_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo():
    from core.store import Repository

    return Repository.open()


@pytest.fixture
def type_versions():
    from model_zoo import set_active

    make_version("tumor_type", "1.0.0", TYPE_CLASSES, held_out_metrics(0.80), "fp-A")
    make_version("tumor_type", "1.1.0", TYPE_CLASSES, held_out_metrics(0.85), "fp-A", seed=1)
    make_version("tumor_type", "0.9.0", TYPE_CLASSES, held_out_metrics(0.70), "fp-A", seed=2)
    make_version("tumor_type", "2.0.0", TYPE_CLASSES, held_out_metrics(0.99), "fp-OTHER", seed=3)
    set_active("tumor_type", "1.0.0")


def test_compare_pairs_the_same_split_with_cis_deltas_and_confusions(type_versions, repo):
    from core.promotion import compare

    c = compare("tumor_type", "1.1.0", repo=repo)
    assert c.champion == "1.0.0" and c.comparable and c.beats
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

    record_evaluation("tumor_type", "1.0.0", "fp-OTHER", held_out_metrics(0.90), "review hold-out", repo=repo)
    c = compare("tumor_type", "2.0.0", repo=repo)
    assert c.comparable and c.fingerprint == "fp-OTHER" and c.beats
    assert c.champion_value == pytest.approx(0.90)


def test_promote_refuses_a_worse_challenger_and_changes_nothing(type_versions, repo):
    from core.promotion import PromotionRefused, promote
    from model_zoo import active_version

    with pytest.raises(PromotionRefused) as err:
        promote("tumor_type", "0.9.0", actor="Dr Ada", repo=repo)
    assert "does not beat" in str(err.value)
    assert err.value.comparison.champion_value == pytest.approx(0.80)
    assert active_version("tumor_type") == "1.0.0"
    assert repo.champion("tumor_type") is None
    with pytest.raises(PromotionRefused):   # not comparable: refused too
        promote("tumor_type", "2.0.0", actor="Dr Ada", repo=repo)
    assert active_version("tumor_type") == "1.0.0"


def test_promote_then_rollback_moves_zoo_and_store_together(type_versions, repo):
    from core.promotion import PromotionError, promote, rollback
    from model_zoo import active_version

    res = promote("tumor_type", "1.1.0", actor="Dr Ada", repo=repo)
    assert res.previous == "1.0.0" and not res.forced
    assert active_version("tumor_type") == "1.1.0"
    assert repo.champion("tumor_type").version == "1.1.0"
    assert repo.champion_history("tumor_type") == ["1.0.0", "1.1.0"]
    decisions = repo.audit_log(action="promotion_decision")
    assert decisions[-1].actor == "Dr Ada" and decisions[-1].after["comparison"]["beats"] is True

    back = rollback("tumor_type", actor="Dr Bob", repo=repo)
    assert back.version == "1.0.0" and back.previous == "1.1.0"
    assert active_version("tumor_type") == "1.0.0"
    assert repo.champion("tumor_type").version == "1.0.0"
    with pytest.raises(PromotionError, match="no earlier champion"):
        rollback("tumor_type", actor="Dr Bob", repo=repo)
    assert active_version("tumor_type") == "1.0.0"


def test_forced_promotion_needs_a_reason_and_is_audited(type_versions, repo):
    from core.promotion import PromotionRefused, promote
    from model_zoo import active_version

    with pytest.raises(PromotionRefused, match="reason"):
        promote("tumor_type", "0.9.0", actor="Dr Ada", force=True, repo=repo)
    res = promote("tumor_type", "0.9.0", actor="Dr Ada", force=True, reason="site validation", repo=repo)
    assert res.forced and active_version("tumor_type") == "0.9.0"
    last = repo.audit_log(entity="champion")[-1]
    assert last.after["version"] == "0.9.0" and last.after["reason"].startswith("FORCED")


def test_grade_is_judged_on_patient_level_auc(repo):
    from core.promotion import PromotionRefused, compare, promote
    from model_zoo import active_version, set_active

    champ = held_out_metrics(0.70, classes=GRADE_CLASSES, patient=True)
    chal = held_out_metrics(0.90, classes=GRADE_CLASSES, patient=True)
    chal["patient"]["auc"] = 0.60          # better slices, worse patients
    make_version("grade", "1.0.0", GRADE_CLASSES, champ, "fp-G", channels=3)
    make_version("grade", "1.1.0", GRADE_CLASSES, chal, "fp-G", channels=3, seed=1)
    set_active("grade", "1.0.0")
    c = compare("grade", "1.1.0", repo=repo)
    assert (c.primary, c.level) == ("auc", "patient") and not c.beats
    with pytest.raises(PromotionRefused):
        promote("grade", "1.1.0", actor="Dr Ada", repo=repo)
    assert active_version("grade") == "1.0.0"


def _cli(*args):
    import os

    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ}, timeout=120)


def test_zoo_cli_promote_and_rollback(type_versions):
    from model_zoo import active_version

    out = _cli("zoo", "promote", "tumor_type@0.9.0", "--actor", "cli-test")
    assert out.returncode == 4, out.stderr
    assert "does not beat" in out.stderr
    out = _cli("zoo", "promote", "tumor_type@1.1.0", "--actor", "cli-test", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["previous"] == "1.0.0"
    assert active_version("tumor_type") == "1.1.0"
    out = _cli("zoo", "rollback", "tumor_type", "--actor", "cli-test")
    assert out.returncode == 0, out.stderr
    assert active_version("tumor_type") == "1.0.0"
