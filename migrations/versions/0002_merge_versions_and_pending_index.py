"""merge versions and pending index

The ledger records which staging row's version of an event is in ``events`` (the merge lets a
later-arrived version win whatever order days are processed in); staging rows record the transform
version that processed them; a partial index finds the days with pending rows.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "event_ledger",
        sa.Column(
            "staging_id",
            sa.BigInteger(),
            nullable=False,
            comment="Staging row of the version in events; a later-arrived version (higher id) wins, an older one never.",
        ),
    )
    op.add_column(
        "staging_events",
        sa.Column(
            "transform_version",
            sa.Text(),
            nullable=True,
            comment="Version of the normalize transform that last processed the row; a new version reprocesses it.",
        ),
    )
    op.create_index(
        "ix_staging_events_pending_day",
        "staging_events",
        ["event_day"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_staging_events_pending_day", table_name="staging_events", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_column("staging_events", "transform_version")
    op.drop_column("event_ledger", "staging_id")
