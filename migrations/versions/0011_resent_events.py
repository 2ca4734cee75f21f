"""re-sent events: recognized at ingest, never staged again

A staged row carries the digest of what its transform read (``payload_digest``: the record as received, its
source, the transform version and the PII key's fingerprint), and the ledger keeps the digest of the version that
is in ``events``. Ingest claims an unchanged re-sent event in the ledger (``resent_through``: the staging position
it arrived at, so a version staged before it loses and one staged after it wins) instead of staging it again, and
counts it in its batch (``raw_batches.resent_count``).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST_COMMENT = (
    "Digest of what the transform read: the record as received, its source, the transform version, the PII key."
)


def upgrade() -> None:
    op.add_column(
        "staging_events", sa.Column("payload_digest", sa.LargeBinary(), nullable=True, comment=DIGEST_COMMENT)
    )
    op.add_column(
        "event_ledger",
        sa.Column(
            "payload_digest",
            sa.LargeBinary(),
            nullable=True,
            comment="payload_digest of the version in events: a record re-sent with it is already there.",
        ),
    )
    op.add_column(
        "event_ledger",
        sa.Column(
            "resent_through",
            sa.BigInteger(),
            nullable=True,
            comment="Staging position at which the version in events was last re-sent: versions staged before it "
            "lose to it, as to staging_id.",
        ),
    )
    op.add_column(
        "raw_batches",
        sa.Column(
            "resent_count",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Records that were already in events unchanged: claimed in the ledger, not staged again.",
        ),
    )
    op.execute(
        "GRANT SELECT (event_id, occurred_at, payload_digest), UPDATE (resent_through) ON event_ledger TO etl_ingest"
    )
    op.execute("GRANT UPDATE (resent_count) ON raw_batches TO etl_ingest")
    op.execute("GRANT UPDATE (payload_digest) ON staging_events TO etl_ingest, etl_transform")


def downgrade() -> None:
    op.execute(
        "REVOKE SELECT (event_id, occurred_at, payload_digest), UPDATE (resent_through) ON event_ledger FROM etl_ingest"
    )
    op.drop_column("raw_batches", "resent_count")
    op.drop_column("event_ledger", "resent_through")
    op.drop_column("event_ledger", "payload_digest")
    op.drop_column("staging_events", "payload_digest")
