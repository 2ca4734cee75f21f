"""event_ledger keeps room on each page for its entries' next versions

A re-sent event updates its ledger entry (``resent_through``) and a merge updates the entry of every event it
writes again. With full pages each such update moves the row to another page and adds an entry to the primary key;
with room on the page PostgreSQL updates it there (a heap-only tuple), leaving the index as it is.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER_FILLFACTOR = 70


def upgrade() -> None:
    op.execute(f"ALTER TABLE event_ledger SET (fillfactor = {LEDGER_FILLFACTOR})")


def downgrade() -> None:
    op.execute("ALTER TABLE event_ledger RESET (fillfactor)")
