"""The warehouse schema: SQLAlchemy Core tables, the one source Alembic migrations are checked against.

Flow of a record: ``raw_batches`` (one row per file, API page or webhook request that entered)
→ ``staging_events`` (one row per raw record, append-only but for its status columns)
→ ``events`` (normalized, one row per ``event_id``, range-partitioned by day of ``occurred_at``)
or ``quarantine`` (with the reason) → the daily enrichment tables.

PostgreSQL requires the partition key inside every unique constraint of a partitioned table, so
``events`` can only enforce ``(event_id, occurred_at)``. ``event_ledger`` holds one row per
``event_id`` with the timestamp its row currently has; merges consult it, which keeps ``event_id``
unique across days (an event re-sent with another timestamp moves, it is not doubled).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from etl_assets.transform.vocabulary import EVENT_TYPES

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

STAGING_STATUSES = ("pending", "succeeded", "failed")
MONEY = Numeric(18, 4)


raw_batches = Table(
    "raw_batches",
    metadata,
    Column(
        "batch_id", Text, primary_key=True, comment="Stable id of what entered: file key + ETag, API page, request."
    ),
    Column("source", Text, nullable=False, comment="Source name: s3, api:<name>, webhook:<partner>, segment."),
    Column("source_uri", Text, nullable=False, comment="Where it came from (s3://bucket/key, URL, endpoint)."),
    Column("archive_key", Text, nullable=True, comment="Key of the unchanged bytes in the raw archive."),
    Column("sha256", String(64), nullable=False),
    Column("byte_count", BigInteger, nullable=False),
    Column("record_count", Integer, nullable=True, comment="Records parsed from the batch, once staged."),
    Column("quarantined_count", Integer, nullable=True, comment="Records that could not be parsed."),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("staged_at", DateTime(timezone=True), nullable=True),
    Column(
        "archive_pruned_at",
        DateTime(timezone=True),
        nullable=True,
        comment="When the retention job deleted the archived bytes: the batch can no longer be replayed.",
    ),
    Column(
        "staging_pruned_at",
        DateTime(timezone=True),
        nullable=True,
        comment="When the retention job first deleted merged staging rows of the batch: it no longer reconciles.",
    ),
    comment="Ledger of every batch that entered, with its checksum; the unit of reconciliation.",
)

staging_events = Table(
    "staging_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("batch_id", Text, nullable=False),
    Column("record_no", Integer, nullable=False, comment="1-based position (line) of the record in its batch."),
    Column("event_id", Text, nullable=True, comment="The record's id as sent, when it has one."),
    Column("event_day", Date, nullable=True, comment="UTC day of the record's timestamp, when it parses."),
    Column("source", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("error", Text, nullable=True),
    Column("processed_at", DateTime(timezone=True), nullable=True),
    Column(
        "transform_version",
        Text,
        nullable=True,
        comment="Version of the normalize transform that last processed the row; a new version reprocesses it.",
    ),
    UniqueConstraint("batch_id", "record_no"),
    CheckConstraint(f"status IN {STAGING_STATUSES!r}", name="status"),
    Index(None, "event_day", "status"),
    Index(None, "event_id"),
    Index("ix_staging_events_pending_day", "event_day", postgresql_where=text("status = 'pending'")),
    comment="One row per raw record, written with COPY; append-only except for the status columns.",
)

events = Table(
    "events",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="When it happened, UTC."),
    Column("event_type", Text, nullable=False),
    Column("user_id", Text, nullable=True),
    Column("anonymous_id", Text, nullable=True),
    Column("session_id", Text, nullable=True),
    Column("product_id", Text, nullable=True),
    Column("quantity", Integer, nullable=True),
    Column("price", MONEY, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("order_id", Text, nullable=True),
    Column("page_url", Text, nullable=True),
    Column("referrer", Text, nullable=True),
    Column("properties", JSONB, nullable=True, comment="Fields the normalized shape has no column for."),
    Column("quality_tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("source", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column(
        "content_hash", String(32), nullable=False, comment="Hash of the normalized row: merges skip unchanged rows."
    ),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("event_id", "occurred_at"),
    CheckConstraint(f"event_type IN {EVENT_TYPES!r}", name="event_type"),
    CheckConstraint("price IS NULL OR price >= 0", name="price_not_negative"),
    Index(None, "user_id", "occurred_at"),
    Index(None, "event_type", "occurred_at"),
    Index(None, "product_id"),
    postgresql_partition_by="RANGE (occurred_at)",
    comment="Normalized events, one row per event_id, partitioned by UTC day of occurred_at.",
)

event_ledger = Table(
    "event_ledger",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column(
        "staging_id",
        BigInteger,
        nullable=False,
        comment="Staging row of the version in events; a later-arrived version (higher id) wins, an older one never.",
    ),
    comment="Where each event_id lives in events: keeps event_id unique across day partitions.",
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("record_no", Integer, nullable=True),
    Column("stage", Text, nullable=False, comment="parse (never staged) or normalize (staged, rejected by transform)."),
    Column("reason", Text, nullable=False),
    Column(
        "raw_record", LargeBinary, nullable=True, comment="The record's bytes as received (may hold NUL, bad UTF-8)."
    ),
    Column("payload", JSONB, nullable=True, comment="The record as parsed, when it parsed."),
    Column("staging_id", BigInteger, nullable=True),
    Column("event_id", Text, nullable=True),
    Column("event_day", Date, nullable=True),
    Column("quarantined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True), nullable=True, comment="Set when a re-drive loaded the record."),
    CheckConstraint("stage IN ('parse', 'normalize')", name="stage"),
    UniqueConstraint("batch_id", "record_no", "stage"),
    Index(None, "event_day"),
    comment="Records that could not be loaded, with the reason and the bytes; nothing accepted is lost.",
)

source_cursors = Table(
    "source_cursors",
    metadata,
    Column("source", Text, primary_key=True),
    Column("cursor", Text, nullable=True, comment="Opaque position to resume from (a page token, a key, a time)."),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="Where each pull source resumes; moved only after the page it follows is staged.",
)

source_fields = Table(
    "source_fields",
    metadata,
    Column("source", Text, nullable=False),
    Column(
        "field",
        Text,
        nullable=False,
        comment="Dotted path in the staged payload: a top-level key, or one level into an object (properties.sku).",
    ),
    Column(
        "json_types",
        ARRAY(Text),
        nullable=False,
        comment="jsonb_typeof names the field has had (null left out), sorted.",
    ),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("first_seen_day", Date, nullable=False, comment="Earliest profiled event day the field appeared on."),
    Column("last_seen_day", Date, nullable=False, comment="Latest profiled event day the field appeared on."),
    PrimaryKeyConstraint("source", "field"),
    comment="The fields each source sends, as profiled from staging payloads: what schema drift compares against.",
)

retention_log = Table(
    "retention_log",
    metadata,
    Column("day", Date, primary_key=True, comment="Event day (staging_events.event_day) of the pruned rows."),
    Column("staging_rows", BigInteger, nullable=False, comment="Merged staging rows of the day deleted so far."),
    Column("first_pruned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_pruned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="Days whose merged staging rows the retention job deleted: their events rows may have no staged "
    "record left, which reconciliation then accepts.",
)

held_sources = Table(
    "held_sources",
    metadata,
    Column("day", Date, nullable=False, comment="Event day (staging_events.event_day) of the held rows."),
    Column("source", Text, nullable=False, comment="The source whose rows of the day are held back."),
    Column("reason", Text, nullable=False, comment="The staging rules the source breached, with their shares."),
    Column("rows_waiting", Integer, nullable=False, comment="Rows of the source and day waiting when last judged."),
    Column("held_since", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("judged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("day", "source"),
    comment="Sources the staging gate (staged_day_valid) holds back, per day: the merge leaves their rows pending "
    "until a later judgement passes them (a fixed transform, a re-drive) or a re-drive releases them.",
)

user_daily_activity = Table(
    "user_daily_activity",
    metadata,
    Column("day", Date, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("events", Integer, nullable=False),
    Column("page_views", Integer, nullable=False),
    Column("product_views", Integer, nullable=False),
    Column("add_to_carts", Integer, nullable=False),
    Column("purchases", Integer, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("day", "user_id"),
    comment="Per user and day: events by type, sessions, first and last seen.",
)

sessions = Table(
    "sessions",
    metadata,
    Column("day", Date, nullable=False, comment="UTC day the session started."),
    Column("session_key", Text, nullable=False, comment="User (or anonymous id) and start time."),
    Column("user_id", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("duration_seconds", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("page_views", Integer, nullable=False),
    Column("converted", Boolean, nullable=False, comment="The session holds a purchase."),
    PrimaryKeyConstraint("day", "session_key"),
    comment="Sessions: 30 minutes without an event closes one.",
)

daily_funnel = Table(
    "daily_funnel",
    metadata,
    Column("day", Date, primary_key=True),
    Column("viewers", Integer, nullable=False, comment="Users who viewed a product."),
    Column("carters", Integer, nullable=False, comment="Users who added to cart."),
    Column("purchasers", Integer, nullable=False, comment="Users who purchased."),
    Column("view_to_cart_rate", Numeric(7, 6), nullable=True),
    Column("cart_to_purchase_rate", Numeric(7, 6), nullable=True),
    Column("view_to_purchase_rate", Numeric(7, 6), nullable=True),
    comment="Daily funnel: viewed a product → added to cart → purchased, with rates.",
)

product_daily_sales = Table(
    "product_daily_sales",
    metadata,
    Column("day", Date, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("orders", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    Column("revenue", MONEY, nullable=False),
    PrimaryKeyConstraint("day", "product_id", "currency"),
    comment="Units and revenue per product, day and currency.",
)

DAILY_TABLES = (user_daily_activity, sessions, daily_funnel, product_daily_sales)
