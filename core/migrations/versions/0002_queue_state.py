"""Queue state and what later features need.

- labels.version (optimistic concurrency: the (item, task) version a label created), backfilled as
  the label's ordinal within its (item, task); labels.reading (double reading: 1st / 2nd reader)
- queue_entries: one row per (item, task) with status, version and current label; backfilled from
  existing predictions and labels
- items.known_label (hidden slice-level truth), predictions.embedding (core-set features)
- scores (acquisition scores with the model version that produced them)
- jobs.cancel_requested, jobs.host, jobs.finished_at

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("reading", sa.Integer, nullable=True))
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("known_label", sa.String(100), nullable=True))
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("embedding", sa.JSON, nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("host", sa.String(200), nullable=True))
        batch.add_column(sa.Column("finished_at", TS, nullable=True))

    op.create_table(
        "queue_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("current_label_id", sa.Integer, sa.ForeignKey("labels.id"), nullable=True),
        sa.Column("readings_required", sa.Integer, nullable=False, server_default="1"),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("item_id", "task", name="uq_queue_entries_item_task"),
    )
    op.create_index("ix_queue_entries_item_id", "queue_entries", ["item_id"])
    op.create_index("ix_queue_entries_task", "queue_entries", ["task"])
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("item_id", "task", "strategy", name="uq_scores_item_task_strategy"),
    )
    op.create_index("ix_scores_item_id", "scores", ["item_id"])

    # backfill: label versions are their ordinal within (item, task), in id order
    op.execute(
        "UPDATE labels SET version = (SELECT COUNT(*) FROM labels AS l2 "
        "WHERE l2.item_id = labels.item_id AND l2.task = labels.task AND l2.id <= labels.id)"
    )
    # backfill: one queue entry per (item, task) seen in predictions or labels
    op.execute(
        "INSERT INTO queue_entries (item_id, task, status, version, current_label_id, "
        "readings_required, updated_at) "
        "SELECT k.item_id, k.task, "
        "CASE WHEN EXISTS (SELECT 1 FROM labels l WHERE l.item_id = k.item_id AND l.task = k.task) "
        "THEN 'labelled' ELSE 'pending' END, "
        "(SELECT COUNT(*) FROM labels l WHERE l.item_id = k.item_id AND l.task = k.task), "
        "(SELECT MAX(l.id) FROM labels l WHERE l.item_id = k.item_id AND l.task = k.task), "
        "1, CURRENT_TIMESTAMP "
        "FROM (SELECT item_id, task FROM predictions UNION SELECT item_id, task FROM labels) AS k"
    )


def downgrade() -> None:
    op.drop_table("scores")
    op.drop_table("queue_entries")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("host")
        batch.drop_column("cancel_requested")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("embedding")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("known_label")
    with op.batch_alter_table("labels") as batch:
        batch.drop_column("reading")
        batch.drop_column("version")
