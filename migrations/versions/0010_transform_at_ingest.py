"""transform at ingest, progress per batch

The transform runs once, where a record is first read: ``staging_events`` carries the record's normalized
columns (those of ``events``, its order lines, its identity facts, or the rejection and its rule), and the merge
into ``events`` is SQL alone. Merges no longer mark every staging row: ``batch_days`` holds, per batch and day,
the rows staged, the rows merges have read and the last staging id read, and ``staging_status`` derives each
row's state (pending, succeeded, failed) from it. The status columns go. ``event_ledger`` keeps the time an
event had before its latest version (``previous_occurred_at``): a merge that moves an event deletes it there,
even when another day's merge wrote it a moment before.

Existing staging rows are carried over untransformed (``transform_version`` NULL): a day's next merge transforms
them. Their batches' days are entered in ``batch_days`` with the rows already merged counted as read.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 4)
NEW_STAGING_COLUMNS = (
    ("occurred_at", sa.DateTime(timezone=True), "When it happened, UTC."),
    ("event_type", sa.Text(), "Canonical type of the event's name; custom for any other."),
    ("event_name", sa.Text(), "The name as sent: a track call's event, a page or screen call's name, a file's type."),
    ("user_id", sa.Text(), None),
    ("anonymous_id", sa.Text(), None),
    ("session_id", sa.Text(), None),
    ("product_id", sa.Text(), None),
    ("quantity", sa.Integer(), None),
    ("price", MONEY, None),
    ("currency", sa.String(length=3), None),
    ("order_id", sa.Text(), None),
    ("revenue", MONEY, "An order's revenue, as sent."),
    ("total", MONEY, "An order's total, as sent."),
    ("shipping", MONEY, None),
    ("tax", MONEY, None),
    ("discount", MONEY, None),
    ("coupon", sa.Text(), "The coupon of an order (or of a coupon event)."),
    ("page_url", sa.Text(), None),
    ("referrer", sa.Text(), None),
    ("page_category", sa.Text(), "The category of a page or screen call."),
    ("properties", postgresql.JSONB(astext_type=sa.Text()), "Fields the normalized shape has no column for."),
    ("quality_tags", postgresql.ARRAY(sa.Text()), None),
    ("content_hash", sa.String(length=32), "Hash of the normalized row: merges skip unchanged rows."),
    ("lines", postgresql.JSONB(astext_type=sa.Text()), "An order event's products, as its order_lines rows."),
    ("linked_ids", postgresql.ARRAY(sa.Text()), "Ids the record links to its user_id."),
    ("group_id", sa.Text(), "A group call's group."),
    ("traits", postgresql.JSONB(astext_type=sa.Text()), "An identify or group call's traits."),
    ("rejection", sa.Text(), "Why the transform rejected the record (it is quarantined)."),
    ("rejected_rule", sa.Text(), "The rule the rejected record broke."),
)
TRANSFORMED = ", ".join(name for name, _, _ in NEW_STAGING_COLUMNS)
STAGING_STATUS = """
CREATE VIEW staging_status AS
SELECT s.id, s.batch_id, s.record_no, s.event_id, s.event_day, s.source, s.ingested_at, s.transform_version,
       CASE WHEN s.rejection IS NOT NULL THEN 'failed'
            WHEN s.id <= b.merged_through THEN 'succeeded'
            ELSE 'pending' END AS status,
       s.rejection AS error
FROM staging_events s
LEFT JOIN batch_days b ON b.batch_id = s.batch_id AND b.day = s.event_day
"""


def upgrade() -> None:
    for name, type_, comment in NEW_STAGING_COLUMNS:
        op.add_column("staging_events", sa.Column(name, type_, nullable=True, comment=comment))
    op.alter_column(
        "staging_events",
        "transform_version",
        comment="Version of the transform that filled the normalized columns; NULL: not transformed yet (the day's "
        "merge transforms it).",
        existing_type=sa.Text(),
        existing_nullable=True,
    )
    op.add_column(
        "event_ledger",
        sa.Column(
            "previous_occurred_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="The time the event had before its latest version: the merge that moves it deletes it there.",
        ),
    )
    op.create_table(
        "batch_days",
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False, comment="UTC day (staging_events.event_day) of the batch's rows."),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("staged_rows", sa.Integer(), nullable=False, comment="Rows of the batch staged on the day."),
        sa.Column(
            "merged_rows",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Of those, the rows the day's merges have read (merged, skipped as duplicates, or rejected).",
        ),
        sa.Column(
            "merged_through",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Highest staging id of the batch and day a merge has read; the next merge reads the rows after "
            "it.",
        ),
        sa.Column(
            "transform_version",
            sa.Text(),
            nullable=True,
            comment="Transform version of all its rows; NULL or another version: the day's merge transforms them "
            "again.",
        ),
        sa.Column("staged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", "day", name=op.f("pk_batch_days")),
        comment="How far each day's merge has taken each batch: rows staged, rows read, the last staging id read. A "
        "batch's rows of a day wait to merge while merged_rows < staged_rows. The merge advances it per batch, never "
        "per row.",
    )
    op.create_index(
        "ix_batch_days_waiting",
        "batch_days",
        ["day"],
        unique=False,
        postgresql_where=sa.text("merged_rows < staged_rows"),
    )
    # Rows carried over: the merged ones count as read; a day's first pending row and those after it wait.
    op.execute("UPDATE staging_events SET transform_version = NULL, rejection = error WHERE status = 'failed'")
    op.execute("UPDATE staging_events SET transform_version = NULL WHERE status <> 'failed'")
    op.execute(
        """
        INSERT INTO batch_days (batch_id, day, source, staged_rows, merged_rows, merged_through, transform_version)
        SELECT batch_id, event_day, min(source), count(*),
               count(*) FILTER (WHERE id < coalesce(first_pending, 9223372036854775807)),
               coalesce(first_pending - 1, max(id)), NULL
        FROM (
            SELECT s.*, min(id) FILTER (WHERE status = 'pending') OVER (PARTITION BY batch_id, event_day)
                   AS first_pending
            FROM staging_events s WHERE event_day IS NOT NULL
        ) rows
        GROUP BY batch_id, event_day, first_pending
        """
    )
    op.drop_index("ix_staging_events_pending_day", table_name="staging_events")
    op.drop_index("ix_staging_events_event_day_status", table_name="staging_events")
    op.create_index(op.f("ix_staging_events_event_day"), "staging_events", ["event_day"], unique=False)
    op.drop_constraint(op.f("ck_staging_events_status"), "staging_events", type_="check")
    for name in ("status", "attempts", "error", "processed_at"):
        op.drop_column("staging_events", name)
    op.execute(
        "COMMENT ON TABLE staging_events IS 'One row per raw record, written with COPY, as received and as the "
        "transform made it; append-only (a replay or a new transform version rewrites rows in place). How far "
        "merges took it: batch_days.'"
    )
    op.execute(STAGING_STATUS)
    op.execute("GRANT SELECT, INSERT, UPDATE ON batch_days TO etl_ingest")
    op.execute("GRANT SELECT, UPDATE ON batch_days TO etl_transform")
    op.execute("GRANT SELECT ON staging_status TO etl_ingest, etl_transform")
    op.execute(f"GRANT UPDATE (transform_version, {TRANSFORMED}) ON staging_events TO etl_ingest, etl_transform")


def downgrade() -> None:
    op.execute("DROP VIEW staging_status")
    op.add_column(
        "staging_events",
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    )
    op.add_column("staging_events", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("staging_events", sa.Column("error", sa.Text(), nullable=True))
    op.add_column("staging_events", sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE staging_events s SET status = CASE WHEN s.rejection IS NOT NULL THEN 'failed' "
        "WHEN s.id <= b.merged_through THEN 'succeeded' ELSE 'pending' END, error = s.rejection "
        "FROM batch_days b WHERE b.batch_id = s.batch_id AND b.day = s.event_day"
    )
    op.create_check_constraint(
        op.f("ck_staging_events_status"), "staging_events", "status IN ('pending', 'succeeded', 'failed')"
    )
    op.drop_index(op.f("ix_staging_events_event_day"), table_name="staging_events")
    op.create_index("ix_staging_events_event_day_status", "staging_events", ["event_day", "status"], unique=False)
    op.create_index(
        "ix_staging_events_pending_day",
        "staging_events",
        ["event_day"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.execute("GRANT UPDATE (status, error) ON staging_events TO etl_ingest")
    op.execute("GRANT UPDATE (status, attempts, error, processed_at) ON staging_events TO etl_transform")
    op.drop_index("ix_batch_days_waiting", table_name="batch_days")
    op.drop_table("batch_days")
    op.drop_column("event_ledger", "previous_occurred_at")
    for name, _, _ in reversed(NEW_STAGING_COLUMNS):
        op.drop_column("staging_events", name)
