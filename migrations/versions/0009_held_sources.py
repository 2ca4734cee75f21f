"""held sources

The staging gate judges each source of a day on its own; a source over its tolerance is held back (its rows stay
pending, the day's other sources merge). ``held_sources`` records each hold with its reason; the merge leaves
those rows out, and ``etl status``, the check and the alert show it. The transform role, which runs the gate and
the merge, reads and writes it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held_sources",
        sa.Column("day", sa.Date(), nullable=False, comment="Event day (staging_events.event_day) of the held rows."),
        sa.Column("source", sa.Text(), nullable=False, comment="The source whose rows of the day are held back."),
        sa.Column(
            "reason", sa.Text(), nullable=False, comment="The staging rules the source breached, with their shares."
        ),
        sa.Column(
            "rows_waiting", sa.Integer(), nullable=False, comment="Rows of the source and day waiting when last judged."
        ),
        sa.Column("held_since", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("judged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("day", "source", name=op.f("pk_held_sources")),
        comment="Sources the staging gate (staged_day_valid) holds back, per day: the merge leaves their rows "
        "pending until a later judgement passes them (a fixed transform, a re-drive) or a re-drive releases them.",
    )
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON held_sources TO etl_transform")


def downgrade() -> None:
    op.drop_table("held_sources")
