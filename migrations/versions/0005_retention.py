"""retention

The retention job deletes merged staging rows and raw archive objects older than ETL_RETENTION_DAYS. What
stays consistent with that:

- ``raw_batches`` keeps every batch (the ledger of what entered) and says what was pruned of it:
  ``archive_pruned_at`` (its bytes are gone, a replay refuses it) and ``staging_pruned_at`` (merged rows of it
  are gone, the batch reconciliation no longer counts it).
- ``retention_log`` lists the event days whose staging rows were pruned, so the day reconciliation accepts
  ``events`` rows whose staged record is gone (and still fails on any other mismatch).

The retention job runs as the owner (no role of 0004 may delete staging rows); the transform role, which
runs the reconciliation check, reads ``retention_log``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "raw_batches",
        sa.Column(
            "archive_pruned_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the retention job deleted the archived bytes: the batch can no longer be replayed.",
        ),
    )
    op.add_column(
        "raw_batches",
        sa.Column(
            "staging_pruned_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the retention job first deleted merged staging rows of the batch: it no longer reconciles.",
        ),
    )
    op.create_table(
        "retention_log",
        sa.Column("day", sa.Date(), nullable=False, comment="Event day (staging_events.event_day) of the pruned rows."),
        sa.Column(
            "staging_rows", sa.BigInteger(), nullable=False, comment="Merged staging rows of the day deleted so far."
        ),
        sa.Column("first_pruned_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_pruned_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_retention_log")),
        comment="Days whose merged staging rows the retention job deleted: their events rows may have no staged "
        "record left, which reconciliation then accepts.",
    )
    op.execute("GRANT SELECT ON retention_log TO etl_transform")


def downgrade() -> None:
    op.drop_table("retention_log")
    op.drop_column("raw_batches", "staging_pruned_at")
    op.drop_column("raw_batches", "archive_pruned_at")
