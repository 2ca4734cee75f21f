"""event names and order lines

The open vocabulary and orders with their lines:

- ``events`` keeps each event's name as sent (``event_name``), a page or screen call's category
  (``page_category``) and an order's money (``revenue``, ``total``, ``shipping``, ``tax``, ``discount``,
  ``coupon``); ``event_type`` takes the canonical types of Segment's Ecommerce V2 spec and ``custom``.
- ``order_lines`` holds one row per product of an order event, written by the merge with its event.
- ``product_daily_sales`` counts refunds beside sales: ``units`` is now ``units_sold``, ``revenue`` is
  ``gross_revenue``, and ``units_refunded``, ``net_units``, ``refunded_revenue``, ``net_revenue`` are new.

Existing events get their names and lines when their days merge again: the transform version changes, so
a day's next merge reprocesses its stored rows.

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 4)
EVENT_TYPES = (
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
PREVIOUS_EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_started", "purchase")
ORDER_EVENT_TYPES = ("purchase", "order_updated", "order_refunded", "order_cancelled")
NEW_SALES_COLUMNS = ("units_refunded", "net_units", "refunded_revenue", "net_revenue")


def upgrade() -> None:
    op.alter_column(
        "events", "event_type", comment="Canonical type of the event's name; custom for any other.", existing_type=sa.Text()
    )
    op.add_column(
        "events",
        sa.Column(
            "event_name",
            sa.Text(),
            nullable=True,
            comment="The name as sent: a track call's event, a page or screen call's name, a file's type.",
        ),
    )
    op.add_column("events", sa.Column("revenue", MONEY, nullable=True, comment="An order's revenue, as sent."))
    op.add_column("events", sa.Column("total", MONEY, nullable=True, comment="An order's total, as sent."))
    op.add_column("events", sa.Column("shipping", MONEY, nullable=True))
    op.add_column("events", sa.Column("tax", MONEY, nullable=True))
    op.add_column("events", sa.Column("discount", MONEY, nullable=True))
    op.add_column(
        "events",
        sa.Column("coupon", sa.Text(), nullable=True, comment="The coupon of an order (or of a coupon event)."),
    )
    op.add_column(
        "events",
        sa.Column("page_category", sa.Text(), nullable=True, comment="The category of a page or screen call."),
    )
    op.drop_constraint("event_type", "events", type_="check")
    op.create_check_constraint("event_type", "events", f"event_type IN {EVENT_TYPES!r}")

    op.create_table(
        "order_lines",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column(
            "line_number",
            sa.Integer(),
            nullable=False,
            comment="1-based place of the product in the event's products.",
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, comment="The order event's time, UTC."),
        sa.Column("day", sa.Date(), nullable=False, comment="UTC day of occurred_at."),
        sa.Column(
            "event_type", sa.Text(), nullable=False, comment="The order event's type: a sale, an update or a refund."
        ),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True, comment="The order event's currency."),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("brand", sa.Text(), nullable=True),
        sa.Column("variant", sa.Text(), nullable=True),
        sa.Column("price", MONEY, nullable=True, comment="Unit price."),
        sa.Column("quantity", sa.Integer(), nullable=True, comment="Units; a line without one counts one unit."),
        sa.Column("coupon", sa.Text(), nullable=True),
        sa.Column(
            "position", sa.Integer(), nullable=True, comment="The product's position as the sender gave it."
        ),
        sa.CheckConstraint(f"event_type IN {ORDER_EVENT_TYPES!r}", name=op.f("ck_order_lines_event_type")),
        sa.CheckConstraint("line_number >= 1", name=op.f("ck_order_lines_line_number_positive")),
        sa.CheckConstraint("price IS NULL OR price >= 0", name=op.f("ck_order_lines_price_not_negative")),
        sa.CheckConstraint("quantity IS NULL OR quantity >= 0", name=op.f("ck_order_lines_quantity_not_negative")),
        sa.PrimaryKeyConstraint("event_id", "line_number", name=op.f("pk_order_lines")),
        comment="One row per product of an order event (completed, updated, refunded, cancelled), merged with its "
        "event: replaced when the event changes, moved when it moves.",
    )
    op.create_index(op.f("ix_order_lines_order_id"), "order_lines", ["order_id"])
    op.create_index(op.f("ix_order_lines_day"), "order_lines", ["day"])
    op.execute("GRANT SELECT, INSERT, DELETE ON order_lines TO etl_transform")
    op.execute("GRANT SELECT ON order_lines TO etl_reader")

    op.alter_column("product_daily_sales", "units", new_column_name="units_sold")
    op.alter_column(
        "product_daily_sales",
        "revenue",
        new_column_name="gross_revenue",
        comment="Price times units of the completed orders.",
        existing_type=MONEY,
    )
    op.alter_column(
        "product_daily_sales", "orders", comment="Completed orders with the product.", existing_type=sa.Integer()
    )
    comments = {
        "units_refunded": "Units of refunded and cancelled orders.",
        "net_units": "units_sold - units_refunded.",
        "refunded_revenue": "Price times units refunded or cancelled.",
        "net_revenue": "gross_revenue - refunded_revenue.",
    }
    for name in NEW_SALES_COLUMNS:
        kind = sa.Integer() if "units" in name else MONEY
        op.add_column(
            "product_daily_sales",
            sa.Column(name, kind, nullable=False, server_default=sa.text("0"), comment=comments[name]),
        )
        op.alter_column("product_daily_sales", name, server_default=None, existing_type=kind)
    op.execute("UPDATE product_daily_sales SET net_units = units_sold, net_revenue = gross_revenue")
    op.execute(
        "COMMENT ON TABLE product_daily_sales IS 'Units and revenue per product, day and currency: sold, refunded "
        "(on the day of the refund) and net.'"
    )


def downgrade() -> None:
    op.execute("COMMENT ON TABLE product_daily_sales IS 'Units and revenue per product, day and currency.'")
    for name in NEW_SALES_COLUMNS:
        op.drop_column("product_daily_sales", name)
    op.alter_column("product_daily_sales", "orders", comment=None, existing_type=sa.Integer())
    op.alter_column("product_daily_sales", "gross_revenue", new_column_name="revenue", comment=None, existing_type=MONEY)
    op.alter_column("product_daily_sales", "units_sold", new_column_name="units")
    op.drop_table("order_lines")
    # Events of the new types cannot stay under the old constraint: they leave events and their staged rows wait
    # to merge again, so the older transform judges them (it quarantines them with its reason); nothing is lost.
    op.execute(
        "WITH gone AS ("
        f"DELETE FROM events WHERE event_type NOT IN {PREVIOUS_EVENT_TYPES!r} RETURNING event_id), "
        "unledgered AS (DELETE FROM event_ledger l USING gone g WHERE l.event_id = g.event_id RETURNING l.event_id) "
        "UPDATE staging_events s SET status = 'pending', transform_version = NULL "
        "FROM unledgered u WHERE s.event_id = u.event_id"
    )
    op.drop_constraint("event_type", "events", type_="check")
    op.create_check_constraint("event_type", "events", f"event_type IN {PREVIOUS_EVENT_TYPES!r}")
    for name in ("page_category", "coupon", "discount", "tax", "shipping", "total", "revenue", "event_name"):
        op.drop_column("events", name)
    op.alter_column("events", "event_type", comment=None, existing_type=sa.Text())
