"""initial warehouse schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 05:55:25.128594
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('daily_funnel',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('viewers', sa.Integer(), nullable=False, comment='Users who viewed a product.'),
    sa.Column('carters', sa.Integer(), nullable=False, comment='Users who added to cart.'),
    sa.Column('purchasers', sa.Integer(), nullable=False, comment='Users who purchased.'),
    sa.Column('view_to_cart_rate', sa.Numeric(precision=7, scale=6), nullable=True),
    sa.Column('cart_to_purchase_rate', sa.Numeric(precision=7, scale=6), nullable=True),
    sa.Column('view_to_purchase_rate', sa.Numeric(precision=7, scale=6), nullable=True),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_daily_funnel')),
    comment='Daily funnel: viewed a product → added to cart → purchased, with rates.'
    )
    op.create_table('event_ledger',
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_event_ledger')),
    comment='Where each event_id lives in events: keeps event_id unique across day partitions.'
    )
    op.create_table('events',
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False, comment='When it happened, UTC.'),
    sa.Column('event_type', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=True),
    sa.Column('anonymous_id', sa.Text(), nullable=True),
    sa.Column('session_id', sa.Text(), nullable=True),
    sa.Column('product_id', sa.Text(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=True),
    sa.Column('price', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('order_id', sa.Text(), nullable=True),
    sa.Column('page_url', sa.Text(), nullable=True),
    sa.Column('referrer', sa.Text(), nullable=True),
    sa.Column('properties', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='Fields the normalized shape has no column for.'),
    sa.Column('quality_tags', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('batch_id', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=32), nullable=False, comment='Hash of the normalized row: merges skip unchanged rows.'),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("event_type IN ('page_view', 'product_view', 'add_to_cart', 'remove_from_cart', 'checkout_started', 'purchase')", name=op.f('ck_events_event_type')),
    sa.CheckConstraint('price IS NULL OR price >= 0', name=op.f('ck_events_price_not_negative')),
    sa.PrimaryKeyConstraint('event_id', 'occurred_at', name=op.f('pk_events')),
    comment='Normalized events, one row per event_id, partitioned by UTC day of occurred_at.',
    postgresql_partition_by='RANGE (occurred_at)'
    )
    op.create_index(op.f('ix_events_event_type_occurred_at'), 'events', ['event_type', 'occurred_at'], unique=False)
    op.create_index(op.f('ix_events_product_id'), 'events', ['product_id'], unique=False)
    op.create_index(op.f('ix_events_user_id_occurred_at'), 'events', ['user_id', 'occurred_at'], unique=False)
    op.create_table('product_daily_sales',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('product_id', sa.Text(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('revenue', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.PrimaryKeyConstraint('day', 'product_id', 'currency', name=op.f('pk_product_daily_sales')),
    comment='Units and revenue per product, day and currency.'
    )
    op.create_table('quarantine',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('batch_id', sa.Text(), nullable=False),
    sa.Column('record_no', sa.Integer(), nullable=True),
    sa.Column('stage', sa.Text(), nullable=False, comment='parse (never staged) or normalize (staged, rejected by transform).'),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw_record', sa.LargeBinary(), nullable=True, comment="The record's bytes as received (may hold NUL, bad UTF-8)."),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='The record as parsed, when it parsed.'),
    sa.Column('staging_id', sa.BigInteger(), nullable=True),
    sa.Column('event_id', sa.Text(), nullable=True),
    sa.Column('event_day', sa.Date(), nullable=True),
    sa.Column('quarantined_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True, comment='Set when a re-drive loaded the record.'),
    sa.CheckConstraint("stage IN ('parse', 'normalize')", name=op.f('ck_quarantine_stage')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine')),
    sa.UniqueConstraint('batch_id', 'record_no', 'stage', name=op.f('uq_quarantine_batch_id_record_no_stage')),
    comment='Records that could not be loaded, with the reason and the bytes; nothing accepted is lost.'
    )
    op.create_index(op.f('ix_quarantine_event_day'), 'quarantine', ['event_day'], unique=False)
    op.create_table('raw_batches',
    sa.Column('batch_id', sa.Text(), nullable=False, comment='Stable id of what entered: file key + ETag, API page, request.'),
    sa.Column('source', sa.Text(), nullable=False, comment='Source name: s3, api:<name>, webhook:<partner>, segment.'),
    sa.Column('source_uri', sa.Text(), nullable=False, comment='Where it came from (s3://bucket/key, URL, endpoint).'),
    sa.Column('archive_key', sa.Text(), nullable=True, comment='Key of the unchanged bytes in the raw archive.'),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('byte_count', sa.BigInteger(), nullable=False),
    sa.Column('record_count', sa.Integer(), nullable=True, comment='Records parsed from the batch, once staged.'),
    sa.Column('quarantined_count', sa.Integer(), nullable=True, comment='Records that could not be parsed.'),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staged_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_raw_batches')),
    comment='Ledger of every batch that entered, with its checksum; the unit of reconciliation.'
    )
    op.create_table('sessions',
    sa.Column('day', sa.Date(), nullable=False, comment='UTC day the session started.'),
    sa.Column('session_key', sa.Text(), nullable=False, comment='User (or anonymous id) and start time.'),
    sa.Column('user_id', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_seconds', sa.Integer(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('page_views', sa.Integer(), nullable=False),
    sa.Column('converted', sa.Boolean(), nullable=False, comment='The session holds a purchase.'),
    sa.PrimaryKeyConstraint('day', 'session_key', name=op.f('pk_sessions')),
    comment='Sessions: 30 minutes without an event closes one.'
    )
    op.create_table('source_cursors',
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True, comment='Opaque position to resume from (a page token, a key, a time).'),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_source_cursors')),
    comment='Where each pull source resumes; moved only after the page it follows is staged.'
    )
    op.create_table('staging_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('batch_id', sa.Text(), nullable=False),
    sa.Column('record_no', sa.Integer(), nullable=False, comment='1-based position (line) of the record in its batch.'),
    sa.Column('event_id', sa.Text(), nullable=True, comment="The record's id as sent, when it has one."),
    sa.Column('event_day', sa.Date(), nullable=True, comment="UTC day of the record's timestamp, when it parses."),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('status', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name=op.f('ck_staging_events_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staging_events')),
    sa.UniqueConstraint('batch_id', 'record_no', name=op.f('uq_staging_events_batch_id_record_no')),
    comment='One row per raw record, written with COPY; append-only except for the status columns.'
    )
    op.create_index(op.f('ix_staging_events_event_day_status'), 'staging_events', ['event_day', 'status'], unique=False)
    op.create_index(op.f('ix_staging_events_event_id'), 'staging_events', ['event_id'], unique=False)
    op.create_table('user_daily_activity',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('page_views', sa.Integer(), nullable=False),
    sa.Column('product_views', sa.Integer(), nullable=False),
    sa.Column('add_to_carts', sa.Integer(), nullable=False),
    sa.Column('purchases', sa.Integer(), nullable=False),
    sa.Column('sessions', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('day', 'user_id', name=op.f('pk_user_daily_activity')),
    comment='Per user and day: events by type, sessions, first and last seen.'
    )


def downgrade() -> None:
    op.drop_table('user_daily_activity')
    op.drop_index(op.f('ix_staging_events_event_id'), table_name='staging_events')
    op.drop_index(op.f('ix_staging_events_event_day_status'), table_name='staging_events')
    op.drop_table('staging_events')
    op.drop_table('source_cursors')
    op.drop_table('sessions')
    op.drop_table('raw_batches')
    op.drop_index(op.f('ix_quarantine_event_day'), table_name='quarantine')
    op.drop_table('quarantine')
    op.drop_table('product_daily_sales')
    op.drop_index(op.f('ix_events_user_id_occurred_at'), table_name='events')
    op.drop_index(op.f('ix_events_product_id'), table_name='events')
    op.drop_index(op.f('ix_events_event_type_occurred_at'), table_name='events')
    op.drop_table('events')
    op.drop_table('event_ledger')
    op.drop_table('daily_funnel')
