import math

import numpy as np
import pytest

from core import active_learning as al

P2 = [[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]]


def test_entropy_margin_least_confidence_by_hand():
    h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(al.entropy(P2), [math.log(2), h09, 0.0], atol=1e-9)
    np.testing.assert_allclose(al.margin(P2), [1.0, 0.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(al.least_confidence(P2), [0.5, 0.1, 0.0], atol=1e-9)
    p3 = [0.6, 0.3, 0.1]
    assert al.entropy([p3])[0] == pytest.approx(-(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))
    assert al.margin([p3])[0] == pytest.approx(0.7)  # smaller margin 0.3 -> higher score
    assert al.least_confidence([p3])[0] == pytest.approx(0.4)
    # the three disagree on this pair: margin prefers a, least confidence prefers b
    a, b = [0.45, 0.45, 0.10], [0.40, 0.30, 0.30]
    assert al.margin([a, b]).argmax() == 0 and al.least_confidence([a, b]).argmax() == 1
    with pytest.raises(ValueError):
        al.entropy([[1.0]])


def test_bald_separates_model_uncertainty_from_noise():
    # item 0: the MC samples disagree (epistemic); item 1: every sample says 50/50 (aleatoric)
    mc = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # (T=2, N=2, C=2)
    np.testing.assert_allclose(al.bald(mc), [math.log(2), 0.0], atol=1e-9)
    np.testing.assert_allclose(al.entropy(mc.mean(0)), [math.log(2)] * 2, atol=1e-9)  # entropy can't tell
    assert al.score("bald", mc_samples=mc).argmax() == 0


def test_random_is_seeded():
    assert np.array_equal(al.random_scores(5, seed=3), al.random_scores(5, seed=3))
    assert not np.array_equal(al.random_scores(5, seed=3), al.random_scores(5, seed=4))
    with pytest.raises(ValueError):
        al.score("nonsense", P2)


def test_order_queue_caps_each_patient():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    patients = ["A", "A", "A", "B", "C"]
    assert al.order_queue(scores, patients, k=4, per_patient_cap=2) == [0, 1, 3, 4]
    assert al.order_queue(scores, patients, k=4) == [0, 1, 2, 3]
    assert al.order_queue(scores, patients, k=10, per_patient_cap=1) == [0, 3, 4]
    # ties keep input order, unscored (NaN) go last
    assert al.order_queue([0.5, float("nan"), 0.5, 0.9], list("wxyz"), k=4) == [3, 0, 2, 1]


def test_coreset_avoids_near_duplicates():
    x = np.array([[0.0], [0.01], [10.0], [10.01], [5.0]])
    scores = al.entropy([[0.5, 0.5], [0.5, 0.5], [0.51, 0.49], [0.52, 0.48], [0.9, 0.1]])
    top3 = al.order_queue(scores, list(range(5)), k=3)
    assert top3 == [0, 1, 2]  # uncertainty alone takes the duplicates
    assert al.coreset(x, 3, scores=scores) == [0, 3, 4]  # k-center spreads out
    assert al.coreset(x, 2, labelled=[[0.0]]) == [3, 4]  # labelled points are centres already
    assert al.coreset(x, 3, patient_ids=["A", "A", "B", "B", "C"], per_patient_cap=1, scores=scores) == [0, 3, 4]
    assert al.coreset(x, 0) == []


def _pool(repo):
    # case 1 (patient P1): three uncertain slices; case 2 (P2): one confident, one very uncertain
    c1 = repo.cases.save(
        {"modality": "MR", "shape": (3, 4, 4)},
        np.zeros((3, 4, 4)),
        [
            {"index": i, "task": "presence", "model_version": "v1", "probabilities": p, "embedding": e}
            for i, (p, e) in enumerate([([0.5, 0.5], [0, 0]), ([0.45, 0.55], [0, 0.01]), ([0.4, 0.6], [0, 0.02])])
        ],
        patient_key="P1",
    )
    c2 = repo.cases.save(
        {"modality": "MR", "shape": (2, 4, 4)},
        np.zeros((2, 4, 4)),
        [
            {"index": 0, "task": "presence", "model_version": "v1", "probabilities": [0.95, 0.05], "embedding": [9, 9]},
            {"index": 1, "task": "presence", "model_version": "v1", "probabilities": [0.48, 0.52], "embedding": [5, 5]},
        ],
        patient_key="P2",
    )
    return [i.id for i in repo.cases.items(c1)], [i.id for i in repo.cases.items(c2)]


def test_next_items_orders_caps_and_hides_truth():
    from core.store import Store

    repo = Store.open()
    (a, b, c), (d, e) = _pool(repo)
    rows = al.next_items(repo, "presence", "entropy", k=10, per_patient_cap=2)
    assert [r["item_id"] for r in rows] == [a, e, b, d]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and all(r["version"] == 0 for r in rows)
    assert rows[0]["score"] == pytest.approx(math.log(2))
    assert not any("P1" in str(r) or "P2" in str(r) for r in rows)
    assert [r["item_id"] for r in al.next_items(repo, "presence", "margin", k=2, per_patient_cap=None)] == [a, e]
    core = al.next_items(repo, "presence", "coreset", k=3, per_patient_cap=None)
    assert [r["item_id"] for r in core] == [a, d, e]  # not the near-duplicate b, c
    repo.queue.label(a, "presence", "tumor", "ann")
    core = al.next_items(repo, "presence", "coreset", k=1, per_patient_cap=None)
    assert [r["item_id"] for r in core] == [d]  # farthest from the labelled a
    assert a not in [r["item_id"] for r in al.next_items(repo, "presence", "entropy", k=10)]


def test_refresh_scores_follows_the_champion():
    from core.store import Store

    repo = Store.open()
    (a, b, c), (d, e) = _pool(repo)
    for v in ("v1", "v2"):
        repo.models.register("presence", v)
    repo.models.promote("presence", "v1")
    assert al.refresh_scores(repo, "presence", "entropy") == {
        "model_version": "v1",
        "kept": 0,
        "rescored": 5,
        "predicted": 0,
        "stale": 0,
    }
    assert repo.queue.scores("presence", "entropy")[a] == (pytest.approx(math.log(2)), "v1")
    assert al.refresh_scores(repo, "presence", "entropy")["kept"] == 5

    repo.models.promote("presence", "v2")  # a new champion: v1 scores are stale
    assert al.refresh_scores(repo, "presence", "entropy")["stale"] == 5
    asked = []

    def predict(ids):
        asked.extend(ids)
        return [{"probabilities": [0.99, 0.01]} if i != d else {"probabilities": [0.5, 0.5]} for i in ids]

    counts = al.refresh_scores(repo, "presence", "entropy", predict=predict)
    assert sorted(asked) == sorted([a, b, c, d, e]) and counts["predicted"] == 5
    stored = repo.queue.scores("presence", "entropy")
    assert {v for _, v in stored.values()} == {"v2"}
    assert max(stored, key=lambda i: stored[i][0]) == d
    assert al.next_items(repo, "presence", "entropy", k=1)[0]["item_id"] == d
