"""source fields

One row per (source, field path) seen in staged payloads, with the JSON types it has had and the
first and last day it appeared: what the schema drift check compares each day's profile against.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_fields",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column(
            "field",
            sa.Text(),
            nullable=False,
            comment="Dotted path in the staged payload: a top-level key, or one level into an object (properties.sku).",
        ),
        sa.Column(
            "json_types",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            comment="jsonb_typeof names the field has had (null left out), sorted.",
        ),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "first_seen_day", sa.Date(), nullable=False, comment="Earliest profiled event day the field appeared on."
        ),
        sa.Column("last_seen_day", sa.Date(), nullable=False, comment="Latest profiled event day the field appeared on."),
        sa.PrimaryKeyConstraint("source", "field", name=op.f("pk_source_fields")),
        comment="The fields each source sends, as profiled from staging payloads: what schema drift compares against.",
    )


def downgrade() -> None:
    op.drop_table("source_fields")
