"""least privilege roles

Three group roles (NOLOGIN; login users are granted membership by whoever deploys, `etl dev` locally):

- ``etl_ingest`` writes what enters: ``raw_batches``, ``staging_events``, ``quarantine`` (insert, and
  the few columns a batch close or a replay updates), and the pull sources' cursors. It can read those
  tables (staging is idempotent by looking up what a batch already has) and nothing else: not
  ``events``, not the ledger, not the daily tables. It deletes nothing.
- ``etl_transform`` turns staging into the warehouse: reads staging and the ledger of batches, marks
  staging rows, writes ``events``, ``event_ledger``, ``quarantine``, the daily tables and the drift
  profiles. New day partitions of ``events`` are created through ``etl_create_events_partition``, a
  SECURITY DEFINER function owned by the migrating role (PostgreSQL lets only a table's owner attach
  partitions to it).
- ``etl_reader`` (analysts, dashboards) reads ``events`` and the daily tables, nothing else.

The owner (the role that runs migrations) keeps everything else. Roles are cluster-wide, so they are
created when missing and never dropped by a downgrade (another database may use them).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("etl_ingest", "etl_transform", "etl_reader")
DAILY_TABLES = ("user_daily_activity", "sessions", "daily_funnel", "product_daily_sales")

GRANTS = (
    # ingestion: what entered, and nothing downstream of it
    "GRANT SELECT, INSERT ON raw_batches, staging_events, quarantine TO etl_ingest",
    "GRANT UPDATE (record_count, quarantined_count, staged_at) ON raw_batches TO etl_ingest",
    "GRANT UPDATE (payload, event_id, event_day, status, error, ingested_at) ON staging_events TO etl_ingest",
    "GRANT UPDATE (reason, resolved_at) ON quarantine TO etl_ingest",
    "GRANT SELECT, INSERT, UPDATE ON source_cursors TO etl_ingest",
    "GRANT USAGE ON SEQUENCE staging_events_id_seq, quarantine_id_seq TO etl_ingest",
    # transforms: staging in, the warehouse out
    "GRANT SELECT ON raw_batches, staging_events TO etl_transform",
    "GRANT UPDATE (status, attempts, error, processed_at, transform_version) ON staging_events TO etl_transform",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON events TO etl_transform",
    "GRANT SELECT, INSERT, UPDATE ON event_ledger, quarantine, source_fields TO etl_transform",
    "GRANT USAGE ON SEQUENCE quarantine_id_seq TO etl_transform",
    f"GRANT SELECT, INSERT, DELETE ON {', '.join(DAILY_TABLES)} TO etl_transform",
    # analytics readers
    f"GRANT SELECT ON events, {', '.join(DAILY_TABLES)} TO etl_reader",
)

CREATE_PARTITION_FUNCTION = """
CREATE OR REPLACE FUNCTION etl_create_events_partition(day date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS public.%I PARTITION OF public.events FOR VALUES FROM (%L) TO (%L)',
        'events_p' || to_char(day, 'YYYYMMDD'),
        day::text || ' 00:00:00+00',
        (day + 1)::text || ' 00:00:00+00'
    );
END
$$
"""


def upgrade() -> None:
    for role in ROLES:
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
        )
    # PostgreSQL 15 no longer lets every role create tables in public; 14 still does.
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {', '.join(ROLES)}")
    for grant in GRANTS:
        op.execute(grant)
    op.execute(CREATE_PARTITION_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION etl_create_events_partition(date) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION etl_create_events_partition(date) TO etl_transform")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS etl_create_events_partition(date)")
    tables = ("raw_batches", "staging_events", "quarantine", "source_cursors", "events", "event_ledger", "source_fields")
    op.execute(f"REVOKE ALL ON {', '.join(tables + DAILY_TABLES)} FROM {', '.join(ROLES)}")
    op.execute(f"REVOKE ALL ON SEQUENCE staging_events_id_seq, quarantine_id_seq FROM {', '.join(ROLES)}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {', '.join(ROLES)}")
