import dataclasses

import numpy as np
import pytest
from sqlalchemy import text

from core.store import NotFound, Store, StoreError, VersionConflict
from core.store.models import AuditEntry, AuditIsAppendOnly


def _case(repo, n=3, patient=None, known=None, probs=None, task="tumor_type", version="v1"):
    rng = np.random.default_rng(0)
    preds = [
        {"index": i, "task": task, "model_version": version, "probabilities": p} for i, p in enumerate(probs or [])
    ]
    return repo.cases.save(
        {"modality": "MR", "shape": (n, 8, 8), "meta": {"Manufacturer": "X"}, "source_format": "nifti"},
        rng.random((n, 8, 8)),
        preds,
        source="upload",
        patient_key=patient,
        known_label=known,
    )


def test_case_items_and_hidden_fields(repo):
    cid = _case(repo, 3, patient="P-007", known="glioma", probs=[[0.2, 0.5, 0.3]])
    case = repo.cases.get(cid)
    assert case.modality == "MR" and case.shape == (3, 8, 8) and case.n_items == 3
    assert case.meta["source_format"] == "nifti"
    items = repo.cases.items(cid)
    assert [i.slice_index for i in items] == [0, 1, 2] and all(i.has_image for i in items)
    img = repo.cases.image(items[1].id)
    assert img.shape == (8, 8) and img.dtype == np.uint8
    assert np.array_equal(repo.cases.images([items[1].id])[items[1].id], img)
    # reviewer-facing views never carry the hidden truth
    for view in (case, items[0], *repo.queue.candidates("tumor_type")):
        names = {f.name for f in dataclasses.fields(view)}
        assert not names & {"patient_key", "known_label"}
        assert "P-007" not in repr(view) and "glioma" not in repr(view)
    truth = repo.cases.hidden_truth([items[0].id])
    assert truth[items[0].id]["patient_key"] == "P-007"
    assert truth[items[0].id]["case_label"] == "glioma"
    # only the item with a prediction is queued
    assert [c.item_id for c in repo.queue.candidates("tumor_type")] == [items[0].id]
    with pytest.raises(NotFound):
        repo.cases.get(cid + 100)


def test_label_versions_and_conflict(repo):
    cid = _case(repo, 1, probs=[[0.5, 0.5, 0.0]])
    item = repo.cases.items(cid)[0].id
    assert repo.queue.entry(item, "tumor_type").version == 0
    assert repo.queue.label(item, "tumor_type", "glioma", "ann", expect_version=0) == 1
    with pytest.raises(VersionConflict) as err:
        repo.queue.label(item, "tumor_type", "meningioma", "bob", expect_version=0)
    assert err.value.current_version == 1
    assert err.value.current_label.value == "glioma" and err.value.current_label.reviewer == "ann"
    assert repo.queue.entry(item, "tumor_type").current_label.value == "glioma"  # not overwritten
    assert repo.queue.label(item, "tumor_type", "meningioma", "bob", expect_version=1) == 2
    hist = repo.queue.label_history(item, "tumor_type")
    assert [(h.value, h.version) for h in hist] == [("glioma", 1), ("meningioma", 2)]
    assert hist[1].replaced_label_id == hist[0].id
    labels = repo.audit.entries(action="label", entity_id=f"{item}:tumor_type")
    assert [(a.before["label"], a.after["label"]) for a in labels] == [(None, "glioma"), ("glioma", "meningioma")]
    with pytest.raises(ValueError):
        repo.queue.label(item, "tumor_type", "x", "ann", source="guess")


def test_skip_flag_and_progress(repo):
    cid = _case(repo, 4, probs=[[0.9, 0.05, 0.05]] * 4)
    a, b, c, d = [i.id for i in repo.cases.items(cid)]
    repo.queue.label(a, "tumor_type", "glioma", "ann")
    repo.queue.label(b, "tumor_type", "glioma", "ann")
    repo.queue.label(c, "tumor_type", "pituitary", "ann")
    repo.queue.skip(d, "tumor_type", "ann", "blurry")
    assert [x.item_id for x in repo.queue.candidates("tumor_type", reviewer="ann")] == []
    assert [x.item_id for x in repo.queue.candidates("tumor_type", reviewer="bob")] == [d]
    v = repo.queue.flag(d, "tumor_type", "bob", "wrong sequence", expect_version=0)
    assert v == 1 and repo.queue.entry(d, "tumor_type").status == "flagged"
    assert [e.item_id for e in repo.queue.flagged("tumor_type")] == [d]
    p = repo.queue.progress("tumor_type")
    assert p["total"] == 4 and p["labelled"] == 3 and p["flagged"] == 1 and p["pending"] == 0
    assert p["by_class"] == {"glioma": 2, "pituitary": 1}
    assert repo.queue.tasks() == ["tumor_type"]
    conf = repo.queue.confirmed_labels("tumor_type")
    assert [r["value"] for r in conf] == ["glioma", "glioma", "pituitary"]


def test_double_reading_disagreement_and_adjudication(repo):
    cid = _case(repo, 2, probs=[[0.5, 0.5, 0.0]] * 2)
    x, y = [i.id for i in repo.cases.items(cid)]
    assert repo.queue.set_double_reading("tumor_type") == 2
    repo.queue.label(x, "tumor_type", "glioma", "ann", expect_version=0)
    assert repo.queue.entry(x, "tumor_type").status == "pending"  # waits for a second reader
    assert x not in [c.item_id for c in repo.queue.candidates("tumor_type", reviewer="ann")]
    assert x in [c.item_id for c in repo.queue.candidates("tumor_type", reviewer="bob")]
    repo.queue.label(x, "tumor_type", "meningioma", "bob", expect_version=1)
    repo.queue.label(y, "tumor_type", "glioma", "ann")
    repo.queue.label(y, "tumor_type", "glioma", "bob")
    assert repo.queue.entry(y, "tumor_type").status == "labelled"
    dis = repo.queue.disagreements("tumor_type")
    assert [(d["item_id"], d["readings"]) for d in dis] == [(x, {"ann": "glioma", "bob": "meningioma"})]
    assert [h.reading for h in repo.queue.label_history(x, "tumor_type")] == [1, 2]
    repo.queue.adjudicate(x, "tumor_type", "meningioma", "chief", expect_version=dis[0]["version"])
    assert repo.queue.disagreements("tumor_type") == []
    assert repo.queue.entry(x, "tumor_type").current_label.source == "adjudication"
    assert repo.queue.progress("tumor_type")["by_class"] == {"glioma": 1, "meningioma": 1}


def test_audit_is_append_only(repo):
    repo.audit.append("ann", "note", "case", 1, None, {"x": 1})
    with repo.session() as s:
        entry = s.query(AuditEntry).one()
    with pytest.raises(AuditIsAppendOnly):
        with repo.session() as s:
            row = s.get(AuditEntry, entry.id)
            row.actor = "mallory"
    with pytest.raises(AuditIsAppendOnly):
        with repo.session() as s:
            s.delete(s.get(AuditEntry, entry.id))
    for sql in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            with repo.engine.begin() as conn:
                conn.execute(text(sql))
    assert [(a.actor, a.after) for a in repo.audit.entries()] == [("ann", {"x": 1})]


def test_champion_promote_and_rollback(repo):
    for v in ("v1", "v2", "v3"):
        repo.models.register("grade", v, {"auc": 0.7})
    assert repo.models.champion("grade") is None
    repo.models.promote("grade", "v1", actor="ann")
    repo.models.promote("grade", "v2", actor="ann")
    repo.models.promote("grade", "v3", actor="ann")
    assert repo.models.champion("grade").version == "v3"
    assert sum(m.is_champion for m in repo.models.versions("grade")) == 1
    assert repo.models.rollback("grade", actor="bob").version == "v2"
    assert repo.models.rollback("grade", actor="bob").version == "v1"
    with pytest.raises(StoreError):
        repo.models.rollback("grade")
    with pytest.raises(NotFound):
        repo.models.promote("grade", "v9")
    trail = [
        (a.action, a.before["version"], a.after["version"])
        for a in repo.audit.entries(entity="champion", entity_id="grade")
    ]
    assert trail == [
        ("promote", None, "v1"),
        ("promote", "v1", "v2"),
        ("promote", "v2", "v3"),
        ("rollback", "v3", "v2"),
        ("rollback", "v2", "v1"),
    ]


def test_jobs_lifecycle(repo):
    a = repo.jobs.create("train", {"task": "grade", "epochs": 2})
    b = repo.jobs.create("import")
    assert [j.id for j in repo.jobs.recent()] == [b, a]
    repo.jobs.update(a, status="running", progress=0.5, metrics={"loss": [1.0, 0.8]}, pid=123)
    repo.jobs.update(a, metrics={"acc": [0.6]}, append_log="epoch 1\n")
    job = repo.jobs.get(a)
    assert job.status == "running" and job.progress == 0.5 and job.pid == 123
    assert job.metrics == {"loss": [1.0, 0.8], "acc": [0.6]} and job.log_tail == "epoch 1\n"
    assert repo.jobs.request_cancel(a) and repo.jobs.cancel_requested(a)
    assert repo.jobs.get(a).status == "running"  # the worker decides when to stop
    assert repo.jobs.request_cancel(b) and repo.jobs.get(b).status == "cancelled"  # queued: at once
    assert not repo.jobs.request_cancel(b)
    repo.jobs.update(a, status="cancelled")
    assert repo.jobs.get(a).finished_at is not None
    assert [j.id for j in repo.jobs.recent(status="cancelled")] == [b, a]
    repo.jobs.update(a, append_log="x" * 20000)
    assert len(repo.jobs.get(a).log_tail) == 8000


def test_restart_loses_nothing(db_url):
    from core.store.db import dispose_engines

    repo = Store.open(db_url)
    cid = _case(repo, 1, probs=[[0.3, 0.7]], task="presence")
    item = repo.cases.items(cid)[0].id
    repo.queue.label(item, "presence", "tumor", "ann", 0)
    dispose_engines()  # "server restart"
    again = Store.open(db_url)
    assert again.queue.entry(item, "presence").current_label.value == "tumor"
    assert again.cases.get(cid).n_items == 1
