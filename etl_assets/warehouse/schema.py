"""The warehouse schema: SQLAlchemy Core tables, the one source Alembic migrations are checked against.

Flow of a record: ``raw_batches`` (one row per file, API page or webhook request that entered)
→ ``staging_events`` (one row per raw record, with its normalized columns; ``batch_days`` tracks the merges)
→ ``events`` (normalized, one row per ``event_id``, range-partitioned by day of ``occurred_at``)
(and ``order_lines``, one row per product of an order event) or ``quarantine`` (with the reason) → the daily
enrichment tables.

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

from etl_assets.transform.vocabulary import EVENT_TYPES, ORDER_EVENT_TYPES

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

PENDING = "pending"
"""A state the view ``staging_status`` gives a staging row: waiting for its day's merge."""
SUCCEEDED = "succeeded"
"""A state of a staging row in ``staging_status``: read by its day's merge."""
FAILED = "failed"
"""A state of a staging row in ``staging_status``: rejected by the transform."""
STAGE_PARSE = "parse"
"""A quarantined record that never parsed, so was never staged."""
STAGE_NORMALIZE = "normalize"
"""A quarantined record that was staged and that the transform rejected."""
QUARANTINE_STAGES = (STAGE_PARSE, STAGE_NORMALIZE)
LINKED = "linked"
"""An identity link that holds: the anonymous id's events belong to the user."""
REFUSED = "refused"
"""An identity link kept but not applied: it would merge two known users."""
LINK_STATUSES = (LINKED, REFUSED)
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
    Column(
        "resent_count",
        Integer,
        nullable=False,
        server_default=text("0"),
        comment="Records that were already in events unchanged: claimed in the ledger, not staged again.",
    ),
    comment="Ledger of every batch that entered, with its checksum; the unit of reconciliation.",
)

events = Table(
    "events",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="When it happened, UTC."),
    Column("event_type", Text, nullable=False, comment="Canonical type of the event's name; custom for any other."),
    Column(
        "event_name",
        Text,
        nullable=True,
        comment="The name as sent: a track call's event, a page or screen call's name, a file's type.",
    ),
    Column("user_id", Text, nullable=True),
    Column("anonymous_id", Text, nullable=True),
    Column(
        "person_id",
        Text,
        nullable=False,
        comment="The person the event belongs to: its user id, else the user its anonymous id is linked to "
        "(identity_links), else the anonymous id.",
    ),
    Column("session_id", Text, nullable=True),
    Column("product_id", Text, nullable=True),
    Column("quantity", Integer, nullable=True),
    Column("price", MONEY, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("order_id", Text, nullable=True),
    Column("revenue", MONEY, nullable=True, comment="An order's revenue, as sent."),
    Column("total", MONEY, nullable=True, comment="An order's total, as sent."),
    Column("shipping", MONEY, nullable=True),
    Column("tax", MONEY, nullable=True),
    Column("discount", MONEY, nullable=True),
    Column("coupon", Text, nullable=True, comment="The coupon of an order (or of a coupon event)."),
    Column("page_url", Text, nullable=True),
    Column("referrer", Text, nullable=True),
    Column("page_category", Text, nullable=True, comment="The category of a page or screen call."),
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
    Index(None, "person_id", "occurred_at"),
    Index(None, "anonymous_id"),
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
    Column(
        "previous_occurred_at",
        DateTime(timezone=True),
        nullable=True,
        comment="The time the event had before its latest version: the merge that moves it deletes it there.",
    ),
    Column(
        "payload_digest",
        LargeBinary,
        nullable=True,
        comment="payload_digest of the version in events: a record re-sent with it is already there.",
    ),
    Column(
        "resent_through",
        BigInteger,
        nullable=True,
        comment="Staging position at which the version in events was last re-sent: versions staged before it "
        "lose to it, as to staging_id.",
    ),
    comment="Where each event_id lives in events: keeps event_id unique across day partitions.",
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("line_number", Integer, nullable=False, comment="1-based place of the product in the event's products."),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="The order event's time, UTC."),
    Column("day", Date, nullable=False, comment="UTC day of occurred_at."),
    Column("event_type", Text, nullable=False, comment="The order event's type: a sale, an update or a refund."),
    Column("order_id", Text, nullable=True),
    Column("currency", String(3), nullable=True, comment="The order event's currency."),
    Column("product_id", Text, nullable=True),
    Column("sku", Text, nullable=True),
    Column("name", Text, nullable=True),
    Column("category", Text, nullable=True),
    Column("brand", Text, nullable=True),
    Column("variant", Text, nullable=True),
    Column("price", MONEY, nullable=True, comment="Unit price."),
    Column("quantity", Integer, nullable=True, comment="Units; a line without one counts one unit."),
    Column("coupon", Text, nullable=True),
    Column("position", Integer, nullable=True, comment="The product's position as the sender gave it."),
    PrimaryKeyConstraint("event_id", "line_number"),
    CheckConstraint(f"event_type IN {ORDER_EVENT_TYPES!r}", name="event_type"),
    CheckConstraint("line_number >= 1", name="line_number_positive"),
    CheckConstraint("price IS NULL OR price >= 0", name="price_not_negative"),
    CheckConstraint("quantity IS NULL OR quantity >= 0", name="quantity_not_negative"),
    Index(None, "order_id"),
    Index(None, "day"),
    comment="One row per product of an order event (completed, updated, refunded, cancelled), merged with its "
    "event: replaced when the event changes, moved when it moves.",
)

STAGED_EVENT_COLUMNS = (
    "occurred_at",
    "event_type",
    "event_name",
    "user_id",
    "anonymous_id",
    "session_id",
    "product_id",
    "quantity",
    "price",
    "currency",
    "order_id",
    "revenue",
    "total",
    "shipping",
    "tax",
    "discount",
    "coupon",
    "page_url",
    "referrer",
    "page_category",
    "properties",
    "quality_tags",
    "content_hash",
)
"""The columns of ``events`` a staging row carries once the transform ran at ingest (``event_id``, ``source``,
``batch_id`` and ``ingested_at`` are the staging row's own)."""

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
    Column(
        "transform_version",
        Text,
        nullable=True,
        comment="Version of the transform that filled the normalized columns; NULL: not transformed yet (the "
        "day's merge transforms it).",
    ),
    *(
        Column(column.name, column.type, nullable=True, comment=column.comment)
        for column in events.columns
        if column.name in STAGED_EVENT_COLUMNS
    ),
    Column("lines", JSONB, nullable=True, comment="An order event's products, as its order_lines rows."),
    Column("linked_ids", ARRAY(Text), nullable=True, comment="Ids the record links to its user_id."),
    Column("group_id", Text, nullable=True, comment="A group call's group."),
    Column("traits", JSONB, nullable=True, comment="An identify or group call's traits."),
    Column("rejection", Text, nullable=True, comment="Why the transform rejected the record (it is quarantined)."),
    Column("rejected_rule", Text, nullable=True, comment="The rule the rejected record broke."),
    Column(
        "payload_digest",
        LargeBinary,
        nullable=True,
        comment="Digest of what the transform read: the record as received, its source, the transform version, "
        "the PII key.",
    ),
    UniqueConstraint("batch_id", "record_no"),
    Index(None, "event_day"),
    Index(None, "event_id"),
    comment="One row per raw record, written with COPY, as received and as the transform made it; append-only "
    "(a replay or a new transform version rewrites rows in place). How far merges took it: batch_days.",
)

batch_days = Table(
    "batch_days",
    metadata,
    Column("batch_id", Text, nullable=False),
    Column("day", Date, nullable=False, comment="UTC day (staging_events.event_day) of the batch's rows."),
    Column("source", Text, nullable=False),
    Column("staged_rows", Integer, nullable=False, comment="Rows of the batch staged on the day."),
    Column(
        "merged_rows",
        Integer,
        nullable=False,
        server_default=text("0"),
        comment="Of those, the rows the day's merges have read (merged, skipped as duplicates, or rejected).",
    ),
    Column(
        "merged_through",
        BigInteger,
        nullable=False,
        server_default=text("0"),
        comment="Highest staging id of the batch and day a merge has read; the next merge reads the rows after it.",
    ),
    Column(
        "transform_version",
        Text,
        nullable=True,
        comment="Transform version of all its rows; NULL or another version: the day's merge transforms them again.",
    ),
    Column("staged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("merged_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("batch_id", "day"),
    Index("ix_batch_days_waiting", "day", postgresql_where=text("merged_rows < staged_rows")),
    comment="How far each day's merge has taken each batch: rows staged, rows read, the last staging id read. A "
    "batch's rows of a day wait to merge while merged_rows < staged_rows. The merge advances it per batch, never "
    "per row.",
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
    CheckConstraint(f"stage IN {QUARANTINE_STAGES!r}", name="stage"),
    UniqueConstraint("batch_id", "record_no", "stage"),
    Index(None, "event_day"),
    comment="Records that could not be loaded, with the reason and the bytes; nothing accepted is lost.",
)

users = Table(
    "users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column(
        "traits",
        JSONB,
        nullable=True,
        comment="Latest traits from identify calls (newest value per trait), PII pseudonymized as in events.",
    ),
    Column("traits_at", DateTime(timezone=True), nullable=True, comment="Timestamp of the newest identify."),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, comment="Earliest event with this user id."),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="Every user id events carry, with the latest traits its identify calls gave.",
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("anonymous_id", Text, nullable=False, comment="An anonymous id, or the previous id of an alias call."),
    Column("user_id", Text, nullable=False),
    Column("via", Text, nullable=False, comment="What first said so: identify, alias, or event (both ids on one)."),
    Column("event_id", Text, nullable=False, comment="The earliest event that links the two ids."),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="When that event happened."),
    Column(
        "status",
        Text,
        nullable=False,
        comment="linked: the anonymous id's events belong to the user; refused: it would merge two known users.",
    ),
    Column("reason", Text, nullable=True, comment="Why a link is refused."),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("anonymous_id", "user_id"),
    CheckConstraint(f"status IN {LINK_STATUSES!r}", name="status"),
    Index(None, "user_id"),
    comment="The identity graph: which anonymous ids belong to which user; an id is linked to one user at most.",
)

group_memberships = Table(
    "group_memberships",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("member_id", Text, nullable=False, comment="The user id of the group call, else its anonymous id."),
    Column("user_id", Text, nullable=True),
    Column("anonymous_id", Text, nullable=True),
    Column("traits", JSONB, nullable=True, comment="The group's traits (newest value per trait), PII pseudonymized."),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="Timestamp of the newest group call."),
    Column("event_id", Text, nullable=False, comment="The newest group call (a row of events)."),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("group_id", "member_id"),
    comment="Group calls: which user (or anonymous visitor) belongs to which group, with the group's traits.",
)

rebuild_requests = Table(
    "rebuild_requests",
    metadata,
    Column("day", Date, nullable=False),
    Column("table_name", Text, nullable=False, comment="A daily table whose rows of the day are out of date."),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("day", "table_name"),
    comment="Days a merge changed beyond its own (persons re-attributed, sessions across midnight): "
    "staged_days_sensor runs them, and a table's rebuild of the day removes its request.",
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
    Column("user_id", Text, nullable=False, comment="The person (events.person_id)."),
    Column("events", Integer, nullable=False),
    Column("page_views", Integer, nullable=False),
    Column("product_views", Integer, nullable=False),
    Column("add_to_carts", Integer, nullable=False),
    Column("purchases", Integer, nullable=False),
    Column("sessions", Integer, nullable=False, comment="Sessions the person started that day."),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("day", "user_id"),
    comment="Per person and day: events by type, sessions, first and last seen.",
)

sessions = Table(
    "sessions",
    metadata,
    Column("day", Date, nullable=False, comment="UTC day the session started."),
    Column("session_key", Text, nullable=False, comment="Person id and start time."),
    Column("user_id", Text, nullable=False, comment="The person (events.person_id)."),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("duration_seconds", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("page_views", Integer, nullable=False),
    Column("converted", Boolean, nullable=False, comment="The session holds a purchase."),
    PrimaryKeyConstraint("day", "session_key"),
    comment="Sessions of a person: 30 minutes without an event closes one; one that runs past midnight stays one, "
    "on the day it started.",
)

daily_funnel = Table(
    "daily_funnel",
    metadata,
    Column("day", Date, primary_key=True),
    Column("viewers", Integer, nullable=False, comment="Persons who viewed a product."),
    Column("carters", Integer, nullable=False, comment="Persons who added to cart."),
    Column("purchasers", Integer, nullable=False, comment="Persons who purchased."),
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
    Column("orders", Integer, nullable=False, comment="Completed orders with the product."),
    Column("units_sold", Integer, nullable=False),
    Column("units_refunded", Integer, nullable=False, comment="Units of refunded and cancelled orders."),
    Column("net_units", Integer, nullable=False, comment="units_sold - units_refunded."),
    Column("gross_revenue", MONEY, nullable=False, comment="Price times units of the completed orders."),
    Column("refunded_revenue", MONEY, nullable=False, comment="Price times units refunded or cancelled."),
    Column("net_revenue", MONEY, nullable=False, comment="gross_revenue - refunded_revenue."),
    PrimaryKeyConstraint("day", "product_id", "currency"),
    comment="Units and revenue per product, day and currency: sold, refunded (on the day of the refund) and net.",
)

DAILY_TABLES = (user_daily_activity, sessions, daily_funnel, product_daily_sales)
PERSON_TABLES = (user_daily_activity, sessions, daily_funnel)
"""The daily tables that count persons: rebuilt for every day whose events change person."""
SESSION_TABLES = (user_daily_activity, sessions)
"""The daily tables that read sessions, which may run past midnight: a change near midnight rebuilds the next or
previous day too."""
