"""identity graph

One person across ids (``etl_assets/warehouse/identity.py``):

- ``events.person_id``: the person each event belongs to (filled here with the user id, else the anonymous id;
  the identity links that re-attribute anonymous events are built when stored rows are merged again);
- ``users``: every user id, with the latest traits of its identify calls;
- ``identity_links``: anonymous ids (and alias previous ids) linked to a user id, or refused;
- ``group_memberships``: group calls;
- ``rebuild_requests``: days whose daily tables a merge made out of date (re-attributed persons, sessions across
  midnight), which staged_days_sensor runs;
- ``identify``, ``alias`` and ``group`` are event types.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENT_TYPES = (
    "page_view",
    "search",
    "product_list_view",
    "product_list_filter",
    "promotion_view",
    "promotion_click",
    "product_click",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "cart_view",
    "checkout_started",
    "checkout_step_view",
    "checkout_step_complete",
    "payment_info_entered",
    "order_updated",
    "purchase",
    "order_refunded",
    "order_cancelled",
    "coupon_entered",
    "coupon_applied",
    "coupon_denied",
    "coupon_removed",
    "wishlist_add",
    "wishlist_remove",
    "product_share",
    "cart_share",
    "product_review",
    "custom",
)
NEW_EVENT_TYPES = (*OLD_EVENT_TYPES, "identify", "alias", "group")
PERSON_COMMENT = (
    "The person the event belongs to: its user id, else the user its anonymous id is linked to (identity_links), "
    "else the anonymous id."
)


def _event_type_check(types: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_events_event_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_event_type"), "events", f"event_type IN {types!r}")


def upgrade() -> None:
    op.add_column("events", sa.Column("person_id", sa.Text(), nullable=True, comment=PERSON_COMMENT))
    op.execute("UPDATE events SET person_id = coalesce(user_id, anonymous_id)")
    op.alter_column("events", "person_id", nullable=False)
    op.create_index(op.f("ix_events_person_id_occurred_at"), "events", ["person_id", "occurred_at"])
    op.create_index(op.f("ix_events_anonymous_id"), "events", ["anonymous_id"])
    _event_type_check(NEW_EVENT_TYPES)

    op.create_table(
        "users",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column(
            "traits",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="Latest traits from identify calls (newest value per trait), PII pseudonymized as in events.",
        ),
        sa.Column("traits_at", sa.DateTime(timezone=True), nullable=True, comment="Timestamp of the newest identify."),
        sa.Column(
            "first_seen_at", sa.DateTime(timezone=True), nullable=False, comment="Earliest event with this user id."
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        comment="Every user id events carry, with the latest traits its identify calls gave.",
    )
    op.execute(
        "INSERT INTO users (user_id, first_seen_at) SELECT user_id, min(occurred_at) FROM events "
        "WHERE user_id IS NOT NULL GROUP BY user_id"
    )
    op.create_table(
        "identity_links",
        sa.Column(
            "anonymous_id", sa.Text(), nullable=False, comment="An anonymous id, or the previous id of an alias call."
        ),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column(
            "via", sa.Text(), nullable=False, comment="What first said so: identify, alias, or event (both ids on one)."
        ),
        sa.Column("event_id", sa.Text(), nullable=False, comment="The earliest event that links the two ids."),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, comment="When that event happened."),
        sa.Column(
            "status",
            sa.Text(),
            nullable=False,
            comment="linked: the anonymous id's events belong to the user; refused: it would merge two known users.",
        ),
        sa.Column("reason", sa.Text(), nullable=True, comment="Why a link is refused."),
        sa.Column("decided_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('linked', 'refused')", name=op.f("ck_identity_links_status")),
        sa.PrimaryKeyConstraint("anonymous_id", "user_id", name=op.f("pk_identity_links")),
        comment="The identity graph: which anonymous ids belong to which user; an id is linked to one user at most.",
    )
    op.create_index(op.f("ix_identity_links_user_id"), "identity_links", ["user_id"])
    op.create_table(
        "group_memberships",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column(
            "member_id", sa.Text(), nullable=False, comment="The user id of the group call, else its anonymous id."
        ),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("anonymous_id", sa.Text(), nullable=True),
        sa.Column(
            "traits",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="The group's traits (newest value per trait), PII pseudonymized.",
        ),
        sa.Column(
            "occurred_at", sa.DateTime(timezone=True), nullable=False, comment="Timestamp of the newest group call."
        ),
        sa.Column("event_id", sa.Text(), nullable=False, comment="The newest group call (a row of events)."),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member_id", name=op.f("pk_group_memberships")),
        comment="Group calls: which user (or anonymous visitor) belongs to which group, with the group's traits.",
    )
    op.create_table(
        "rebuild_requests",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "table_name", sa.Text(), nullable=False, comment="A daily table whose rows of the day are out of date."
        ),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("day", "table_name", name=op.f("pk_rebuild_requests")),
        comment="Days a merge changed beyond its own (persons re-attributed, sessions across midnight): "
        "staged_days_sensor runs them, and a table's rebuild of the day removes its request.",
    )
    for table, comment in (
        ("sessions", "Sessions of a person: 30 minutes without an event closes one; one that runs past midnight "
         "stays one, on the day it started."),
        ("user_daily_activity", "Per person and day: events by type, sessions, first and last seen."),
    ):
        op.create_table_comment(table, comment)
    for table, column, comment in (
        ("sessions", "session_key", "Person id and start time."),
        ("sessions", "user_id", "The person (events.person_id)."),
        ("user_daily_activity", "user_id", "The person (events.person_id)."),
        ("user_daily_activity", "sessions", "Sessions the person started that day."),
        ("daily_funnel", "viewers", "Persons who viewed a product."),
        ("daily_funnel", "carters", "Persons who added to cart."),
        ("daily_funnel", "purchasers", "Persons who purchased."),
    ):
        op.alter_column(table, column, comment=comment, existing_nullable=False)
    op.execute("GRANT SELECT, INSERT, UPDATE ON users, identity_links, group_memberships TO etl_transform")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON rebuild_requests TO etl_transform")
    op.execute("GRANT SELECT ON users, identity_links, group_memberships TO etl_reader")


def downgrade() -> None:
    for table, column, comment in (
        ("sessions", "session_key", "User (or anonymous id) and start time."),
        ("sessions", "user_id", None),
        ("user_daily_activity", "user_id", None),
        ("user_daily_activity", "sessions", None),
        ("daily_funnel", "viewers", "Users who viewed a product."),
        ("daily_funnel", "carters", "Users who added to cart."),
        ("daily_funnel", "purchasers", "Users who purchased."),
    ):
        op.alter_column(table, column, comment=comment, existing_nullable=False)
    op.create_table_comment("sessions", "Sessions: 30 minutes without an event closes one.")
    op.create_table_comment("user_daily_activity", "Per user and day: events by type, sessions, first and last seen.")
    op.drop_table("rebuild_requests")
    op.drop_table("group_memberships")
    op.drop_index(op.f("ix_identity_links_user_id"), table_name="identity_links")
    op.drop_table("identity_links")
    op.drop_table("users")
    identity_calls = "SELECT event_id FROM events WHERE event_type IN ('identify', 'alias', 'group')"
    op.execute(f"DELETE FROM event_ledger WHERE event_id IN ({identity_calls})")
    op.execute("DELETE FROM events WHERE event_type IN ('identify', 'alias', 'group')")
    _event_type_check(OLD_EVENT_TYPES)
    op.drop_index(op.f("ix_events_anonymous_id"), table_name="events")
    op.drop_index(op.f("ix_events_person_id_occurred_at"), table_name="events")
    op.drop_column("events", "person_id")
