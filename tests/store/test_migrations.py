from datetime import UTC, datetime

import sqlalchemy as sa

from core.store.db import current_revision, get_engine, head_revision, init_db, upgrade
from core.store.models import Base

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _tables(conn):
    md = sa.MetaData()
    md.reflect(conn)
    return md.tables


def test_upgrade_from_first_schema_keeps_every_row(db_url):
    engine = get_engine(db_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        t = _tables(conn)
        assert "queue_entries" not in t and "version" not in t["labels"].c
        conn.execute(
            t["cases"].insert(),
            [
                {
                    "id": 1,
                    "source": "upload",
                    "modality": "MR",
                    "shape": [2, 4, 4],
                    "meta": {"a": 1},
                    "created_at": T0,
                    "patient_key": "P1",
                    "known_label": "glioma",
                }
            ],
        )
        conn.execute(
            t["items"].insert(),
            [
                {
                    "id": i,
                    "case_id": 1,
                    "slice_index": i - 1,
                    "plane": "axial",
                    "image_png": b"\x89PNG-%d" % i,
                    "created_at": T0,
                }
                for i in (1, 2, 3)
            ],
        )
        conn.execute(
            t["predictions"].insert(),
            [
                {
                    "id": 1,
                    "item_id": 1,
                    "task": "tumor_type",
                    "model_version": "v1",
                    "probabilities": [0.2, 0.5, 0.3],
                    "uncertainty": {"entropy": 1.0},
                    "created_at": T0,
                },
                {
                    "id": 2,
                    "item_id": 2,
                    "task": "tumor_type",
                    "model_version": "v1",
                    "probabilities": [0.9, 0.05, 0.05],
                    "uncertainty": None,
                    "created_at": T0,
                },
            ],
        )
        conn.execute(
            t["labels"].insert(),
            [
                {
                    "id": 1,
                    "item_id": 1,
                    "task": "tumor_type",
                    "value": "glioma",
                    "reviewer": "ann",
                    "source": "review",
                    "created_at": T0,
                },
                {
                    "id": 2,
                    "item_id": 1,
                    "task": "tumor_type",
                    "value": "meningioma",
                    "reviewer": "bob",
                    "source": "review",
                    "replaced_label_id": 1,
                    "created_at": T0,
                },
                {
                    "id": 3,
                    "item_id": 3,
                    "task": "presence",
                    "value": "tumor",
                    "reviewer": "ann",
                    "source": "import",
                    "created_at": T0,
                },
            ],
        )
        conn.execute(
            t["audit"].insert(),
            [
                {
                    "id": 1,
                    "at": T0,
                    "actor": "ann",
                    "action": "label",
                    "entity": "queue_entry",
                    "entity_id": "1:tumor_type",
                    "before": None,
                    "after": {"label": "glioma"},
                }
            ],
        )
        conn.execute(
            t["model_versions"].insert(),
            [
                {
                    "id": 1,
                    "task": "grade",
                    "version": "v1",
                    "is_champion": True,
                    "metrics": {"auc": 0.8},
                    "created_at": T0,
                    "promoted_at": T0,
                }
            ],
        )
        conn.execute(
            t["jobs"].insert(),
            [
                {
                    "id": 1,
                    "kind": "train",
                    "status": "succeeded",
                    "progress": 1.0,
                    "params": {"e": 2},
                    "metrics": {"loss": [1, 0.5]},
                    "log_tail": "done",
                    "pid": 42,
                    "created_at": T0,
                    "updated_at": T0,
                }
            ],
        )
        if conn.dialect.name == "postgresql":  # explicit ids above: move the sequences on
            for name in ("cases", "items", "predictions", "labels", "audit", "model_versions", "jobs"):
                conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT MAX(id) FROM {name}))")
                )
        before = {
            name: sorted(tuple(r) for r in conn.execute(sa.select(tbl)).all())
            for name, tbl in t.items()
            if name != "alembic_version"
        }

    init_db(db_url)  # upgrade head, as the app does on start
    assert current_revision(engine) == head_revision() == "0003"
    with engine.connect() as conn:
        t = _tables(conn)
        for name, rows in before.items():
            old_cols = len(rows[0])
            after = sorted(tuple(r)[:old_cols] for r in conn.execute(sa.select(*list(t[name].c)[:old_cols])).all())
            assert after == rows, name  # every row and value intact
        versions = dict(conn.execute(sa.select(t["labels"].c.id, t["labels"].c.version)).all())
        assert versions == {1: 1, 2: 2, 3: 1}
        entries = {(r.item_id, r.task): r for r in conn.execute(sa.select(t["queue_entries"])).all()}
        assert set(entries) == {(1, "tumor_type"), (2, "tumor_type"), (3, "presence")}
        assert (
            entries[(1, "tumor_type")].version,
            entries[(1, "tumor_type")].current_label_id,
            entries[(1, "tumor_type")].status,
        ) == (2, 2, "labelled")
        assert (entries[(2, "tumor_type")].version, entries[(2, "tumor_type")].status) == (0, "pending")
        job = conn.execute(sa.select(t["jobs"])).one()
        assert job.cancel_requested in (False, 0)

    from core.store import Store

    repo = Store.open(db_url)  # the upgraded rows work through the API
    assert repo.queue.entry(1, "tumor_type").current_label.value == "meningioma"
    assert repo.queue.label(1, "tumor_type", "glioma", "cy", expect_version=2) == 3
    assert repo.models.champion("grade").version == "v1"


def test_models_match_migrated_schema(db_url):
    engine = init_db(db_url)
    init_db(db_url)  # idempotent
    with engine.connect() as conn:
        t = _tables(conn)
    for name, table in Base.metadata.tables.items():
        assert name in t, name
        assert set(table.c.keys()) == set(t[name].c.keys()), name
