"""Orders and their lines on a real PostgreSQL: lines merged exactly once with their event, and refunds in
product_daily_sales beside sales."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, text

from etl_assets.quality.reconciliation import reconcile_day
from etl_assets.warehouse.enrichment import product_daily_sales_query
from etl_assets.warehouse.rebuild import replace_window
from etl_assets.warehouse.schema import events, product_daily_sales
from tests.harness import merge_day, stage_payloads

DAY = date(2025, 8, 1)
NEXT_DAY = date(2025, 8, 2)


def order(event_id: str, name: str, when: str, products: list[dict] | None = None, **properties: Any) -> dict:
    message = {"type": "track", "event": name, "messageId": event_id, "timestamp": when, "userId": "u1"}
    if products is not None:
        properties["products"] = products
    return {**message, "properties": {"currency": "EUR", **properties}}


def product(product_id: str, price: str | None, quantity: int | None = None, **fields: Any) -> dict:
    return {"product_id": product_id, "price": price, "quantity": quantity, **fields}


def lines(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT event_id, line_number, day, event_type, order_id, product_id, price, quantity "
                "FROM order_lines ORDER BY event_id, line_number"
            )
        ).all()


def sales(engine: Engine, day: date) -> dict[str, tuple]:
    start = datetime.combine(day, time(), UTC)
    window = select(events).where(events.c.occurred_at >= start, events.c.occurred_at < start + timedelta(days=1))
    replace_window(engine, product_daily_sales, product_daily_sales_query(window), (day, day + timedelta(days=1)))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT product_id, orders, units_sold, units_refunded, net_units, gross_revenue, refunded_revenue, "
                "net_revenue FROM product_daily_sales WHERE day = :day"
            ),
            {"day": day},
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


TWO_LINES = [product("p1", "20.00", 2, sku="S1", name="Sneaker", position=1), product("p2", "5.50", None)]


def test_an_order_merges_with_its_lines_once_and_a_resend_changes_nothing(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "f1",
        [order("o-1", "Order Completed", "2025-08-01T10:00:00Z", TWO_LINES, order_id="A", revenue=45.5)],
    )
    counts = merge_day(warehouse_engine, DAY)
    assert (counts.inserted, counts.lines) == (1, 2)
    first = lines(warehouse_engine)
    assert first == [
        ("o-1", 1, DAY, "purchase", "A", "p1", Decimal("20.0000"), 2),
        ("o-1", 2, DAY, "purchase", "A", "p2", Decimal("5.5000"), None),
    ]
    resent = stage_payloads(
        warehouse_engine,
        "f2",
        [order("o-1", "Order Completed", "2025-08-01T10:00:00Z", TWO_LINES, order_id="A", revenue=45.5)],
    )
    assert (resent.staged, resent.resent) == (0, 1)
    again = merge_day(warehouse_engine, DAY, reprocess_all=True)
    assert (again.unchanged, again.lines) == (1, 0)
    assert lines(warehouse_engine) == first
    with warehouse_engine.connect() as conn:
        assert conn.execute(text("SELECT event_name, revenue, order_id FROM events")).one() == (
            "Order Completed",
            Decimal("45.5000"),
            "A",
        )
    assert reconcile_day(warehouse_engine, DAY).balanced


def test_a_changed_order_replaces_its_lines_and_a_moved_one_moves_them(warehouse_engine):
    stage_payloads(
        warehouse_engine, "f1", [order("o-1", "Order Completed", "2025-08-01T10:00:00Z", TWO_LINES, order_id="A")]
    )
    merge_day(warehouse_engine, DAY)
    changed = [product("p3", "7.00", 1)]
    stage_payloads(
        warehouse_engine, "f2", [order("o-1", "Order Completed", "2025-08-01T10:00:00Z", changed, order_id="A")]
    )
    counts = merge_day(warehouse_engine, DAY)
    assert (counts.updated, counts.lines) == (1, 1)
    assert lines(warehouse_engine) == [("o-1", 1, DAY, "purchase", "A", "p3", Decimal("7.0000"), 1)]

    stage_payloads(
        warehouse_engine, "f3", [order("o-1", "Order Completed", "2025-08-02T09:00:00Z", changed, order_id="A")]
    )
    moved = merge_day(warehouse_engine, NEXT_DAY)
    assert (moved.moved, moved.lines) == (1, 1)
    assert lines(warehouse_engine) == [("o-1", 1, NEXT_DAY, "purchase", "A", "p3", Decimal("7.0000"), 1)]
    merge_day(warehouse_engine, DAY, reprocess_all=True)  # the older day's version is superseded: nothing returns
    assert lines(warehouse_engine) == [("o-1", 1, NEXT_DAY, "purchase", "A", "p3", Decimal("7.0000"), 1)]
    assert reconcile_day(warehouse_engine, DAY).balanced and reconcile_day(warehouse_engine, NEXT_DAY).balanced


def test_an_order_that_stops_being_one_loses_its_lines(warehouse_engine):
    stage_payloads(warehouse_engine, "f1", [order("o-1", "Order Completed", "2025-08-01T10:00:00Z", TWO_LINES)])
    merge_day(warehouse_engine, DAY)
    stage_payloads(warehouse_engine, "f2", [order("o-1", "Checkout Started", "2025-08-01T10:00:00Z", TWO_LINES)])
    merge_day(warehouse_engine, DAY)
    assert lines(warehouse_engine) == []


def test_a_lost_line_fails_the_day_reconciliation(warehouse_engine):
    stage_payloads(warehouse_engine, "f1", [order("o-1", "Order Completed", "2025-08-01T10:00:00Z", TWO_LINES)])
    merge_day(warehouse_engine, DAY)
    with warehouse_engine.begin() as conn:
        conn.execute(text("DELETE FROM order_lines WHERE line_number = 2"))
    accounting = reconcile_day(warehouse_engine, DAY)
    assert (accounting.balanced, accounting.orders_with_other_lines) == (False, 1)


def test_a_day_merged_under_version_3_gets_names_and_lines_from_the_reprocess(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "f1",
        [
            order("o-1", "Order Completed", "2025-08-01T10:00:00Z", TWO_LINES, order_id="A"),
            {
                "id": "e-2",
                "type": "purchase",
                "timestamp": "2025-08-01T11:00:00Z",
                "user_id": "u2",
                "product_id": "p9",
                "price": "3.00",
                "quantity": 4,
                "currency": "EUR",
            },
        ],
    )
    merge_day(warehouse_engine, DAY)
    with warehouse_engine.begin() as conn:  # what version 3 left: no names, no lines, its own hashes
        conn.execute(text("UPDATE events SET event_name = NULL, revenue = NULL, content_hash = md5(event_id)"))
        conn.execute(text("DELETE FROM order_lines"))
        conn.execute(text("UPDATE staging_events SET transform_version = '3'"))
        conn.execute(text("UPDATE batch_days SET transform_version = '3'"))
    counts = merge_day(warehouse_engine, DAY)
    assert (counts.received, counts.updated, counts.lines) == (2, 2, 3)
    with warehouse_engine.connect() as conn:
        names = conn.execute(text("SELECT event_id, event_name FROM events ORDER BY event_id")).all()
    assert names == [("e-2", "purchase"), ("o-1", "Order Completed")]
    assert [(row[0], row[1], row[5]) for row in lines(warehouse_engine)] == [
        ("e-2", 1, "p9"),
        ("o-1", 1, "p1"),
        ("o-1", 2, "p2"),
    ]


def test_product_daily_sales_counts_sales_partial_and_whole_refunds(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "orders",
        [
            order(
                "o-A",
                "Order Completed",
                "2025-08-01T10:00:00Z",
                [product("p1", "20.00", 2), product("p2", "5.00", 1)],
                order_id="A",
            ),
            order("o-B", "Order Completed", "2025-08-01T11:00:00Z", [product("p1", "20.00", 1)], order_id="B"),
            order("o-C", "Order Completed", "2025-08-01T12:00:00Z", [product("p2", "5.00", 3)], order_id="C"),
            {
                "id": "flat",
                "type": "purchase",
                "timestamp": "2025-08-01T13:00:00Z",
                "user_id": "u9",
                "product_id": "p3",
                "price": "2.50",
                "quantity": 2,
                "currency": "EUR",
            },
            # the next day: a partial refund of A (one p1, its price taken from the order), a whole cancellation of C
            order("r-A", "Order Refunded", "2025-08-02T09:00:00Z", [product("p1", None, 1)], order_id="A"),
            order("x-C", "Order Cancelled", "2025-08-02T10:00:00Z", order_id="C"),
            order("r-Z", "Order Refunded", "2025-08-02T11:00:00Z", order_id="unknown-order"),
        ],
    )
    merge_day(warehouse_engine, DAY)
    merge_day(warehouse_engine, NEXT_DAY)
    assert sales(warehouse_engine, DAY) == {
        "p1": (2, 3, 0, 3, Decimal("60.0000"), Decimal("0"), Decimal("60.0000")),
        "p2": (2, 4, 0, 4, Decimal("20.0000"), Decimal("0"), Decimal("20.0000")),
        "p3": (1, 2, 0, 2, Decimal("5.0000"), Decimal("0"), Decimal("5.0000")),
    }
    assert sales(warehouse_engine, NEXT_DAY) == {
        "p1": (0, 0, 1, -1, Decimal("0"), Decimal("20.0000"), Decimal("-20.0000")),
        "p2": (0, 0, 3, -3, Decimal("0"), Decimal("15.0000"), Decimal("-15.0000")),
    }
    for day in (DAY, NEXT_DAY):
        assert reconcile_day(warehouse_engine, day).balanced
