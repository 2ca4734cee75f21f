"""The daily enrichment tables, built in SQL from a window of ``events`` (SQLAlchemy Expression Language).

Every builder takes the events of the window as a ``Select`` (what the IO manager's ``load_input``
hands an asset) and returns a ``Select`` whose labels are the target table's columns; the IO manager
replaces the window's rows with its result server-side, in one transaction. No row passes through
Python.

Everything counts persons (``events.person_id``, kept by the identity graph), not ids: anonymous browsing, a
login and a purchase are one visitor. The identity calls (``identify``, ``alias``, ``group``) are no activity
and count nowhere here.

A session is a person's events until 30 minutes pass without one. One that runs past midnight UTC stays one
session, counted on the day it started: so ``sessions`` and ``user_daily_activity`` read their days' events
with a day before and after (their ``events`` input is read a day wider: ``etl/margin_days``), sessionize them,
and keep the rows of their own days (``days``). A session longer than a day is cut where that margin ends.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    FromClause,
    Integer,
    Numeric,
    Select,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from etl_assets.transform.vocabulary import IDENTITY_CALL_TYPES, PURCHASE, REFUND_EVENT_TYPES
from etl_assets.warehouse.schema import order_lines

SESSION_GAP = timedelta(minutes=30)

Days = tuple[date, date] | None
"""``[first, end)`` days whose rows a query keeps; ``None``: every day of its events."""


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


UTC: ColumnClause[str] = literal_column("'UTC'")
"""Inlined rather than bound, so the same expression in SELECT and GROUP BY is one expression to PostgreSQL."""


def _utc_day(timestamp: ColumnElement[Any]) -> ColumnElement[Any]:
    return cast(func.timezone(UTC, timestamp), Date)


def _within(day: ColumnElement[Any], days: Days) -> list[ColumnElement[bool]]:
    return [] if days is None else [day >= days[0], day < days[1]]


def sessionized(events_in_window: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """The window's activity events with their person, UTC day, whether each starts a session, and the session's
    number (per person, across days)."""
    source = events_in_window.subquery("window_events")
    with_gaps = (
        select(
            source.c.event_type,
            source.c.occurred_at,
            source.c.person_id.label("person"),
            _utc_day(source.c.occurred_at).label("day"),
            (
                source.c.occurred_at
                - func.lag(source.c.occurred_at).over(partition_by=source.c.person_id, order_by=source.c.occurred_at)
            ).label("gap"),
        )
        .where(source.c.event_type.not_in(IDENTITY_CALL_TYPES))
        .subquery("with_gaps")
    )
    starts_session = case((with_gaps.c.gap.is_(None), 1), (with_gaps.c.gap > SESSION_GAP, 1), else_=0)
    return select(
        with_gaps.c.event_type,
        with_gaps.c.occurred_at,
        with_gaps.c.person,
        with_gaps.c.day,
        starts_session.label("starts_session"),
        func.sum(starts_session)
        .over(partition_by=with_gaps.c.person, order_by=with_gaps.c.occurred_at)
        .label("session_no"),
    )


def user_daily_activity_query(
    events_in_window: Select[*tuple[Any, ...]], days: Days = None
) -> Select[*tuple[Any, ...]]:
    rows = sessionized(events_in_window).subquery("visits")
    return (
        select(
            rows.c.day.label("day"),
            rows.c.person.label("user_id"),
            func.count().label("events"),
            _count_where(rows.c.event_type == "page_view").label("page_views"),
            _count_where(rows.c.event_type == "product_view").label("product_views"),
            _count_where(rows.c.event_type == "add_to_cart").label("add_to_carts"),
            _count_where(rows.c.event_type == "purchase").label("purchases"),
            cast(func.sum(rows.c.starts_session), Integer).label("sessions"),
            func.min(rows.c.occurred_at).label("first_seen_at"),
            func.max(rows.c.occurred_at).label("last_seen_at"),
        )
        .where(*_within(rows.c.day, days))
        .group_by(rows.c.day, rows.c.person)
    )


def sessions_query(events_in_window: Select[*tuple[Any, ...]], days: Days = None) -> Select[*tuple[Any, ...]]:
    rows = sessionized(events_in_window).subquery("visits")
    started_at = func.min(rows.c.occurred_at)
    ended_at = func.max(rows.c.occurred_at)
    query = select(
        _utc_day(started_at).label("day"),
        (
            rows.c.person + literal("@") + func.to_char(func.timezone(UTC, started_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ).label("session_key"),
        rows.c.person.label("user_id"),
        started_at.label("started_at"),
        ended_at.label("ended_at"),
        cast(func.extract("epoch", ended_at - started_at), Integer).label("duration_seconds"),
        func.count().label("events"),
        _count_where(rows.c.event_type == "page_view").label("page_views"),
        func.bool_or(rows.c.event_type == "purchase").label("converted"),
    ).group_by(rows.c.person, rows.c.session_no)
    return query if days is None else query.having(*_within(_utc_day(started_at), days))


def daily_funnel_query(events_in_window: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """Viewed a product → added to cart → purchased, each stage counting only persons of the stage before,
    so every rate lies between 0 and 1."""
    source = events_in_window.subquery("window_events")
    per_visitor = (
        select(
            _utc_day(source.c.occurred_at).label("day"),
            source.c.person_id.label("visitor"),
            func.bool_or(source.c.event_type == "product_view").label("viewed"),
            func.bool_or(source.c.event_type == "add_to_cart").label("carted"),
            func.bool_or(source.c.event_type == "purchase").label("purchased"),
        )
        .group_by(_utc_day(source.c.occurred_at), source.c.person_id)
        .subquery("per_visitor")
    )
    viewers = func.count().filter(per_visitor.c.viewed)
    carters = func.count().filter(and_(per_visitor.c.viewed, per_visitor.c.carted))
    purchasers = func.count().filter(and_(per_visitor.c.viewed, per_visitor.c.carted, per_visitor.c.purchased))

    def rate(numerator: ColumnElement[Any], denominator: ColumnElement[Any]) -> ColumnElement[Any]:
        return cast(cast(numerator, Numeric) / func.nullif(denominator, 0), Numeric(7, 6))

    return select(
        per_visitor.c.day.label("day"),
        viewers.label("viewers"),
        carters.label("carters"),
        purchasers.label("purchasers"),
        rate(carters, viewers).label("view_to_cart_rate"),
        rate(purchasers, carters).label("cart_to_purchase_rate"),
        rate(purchasers, viewers).label("view_to_purchase_rate"),
    ).group_by(per_visitor.c.day)


def _line_units(lines: FromClause) -> ColumnElement[int]:
    return func.coalesce(lines.c.quantity, 1)


def product_daily_sales_query(events_in_window: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """Sold, refunded and net units and revenue per product, day and currency, from the lines of the window's
    order events (``order_lines``).

    A completed order (``purchase``) sells its lines on its day. A refund or cancellation takes back, on its own
    day, the lines it lists; one that lists none takes back the whole order: the lines of the latest completed
    order event with its ``order_id``, whatever day that was. A line without a quantity counts one unit; a
    refunded line without a price is valued at the order's price for that product.
    """
    source = events_in_window.subquery("window_events")
    day = _utc_day(source.c.occurred_at)
    own = order_lines.alias("own_lines")
    sold_or_refunded = or_(source.c.event_type == PURCHASE, source.c.event_type.in_(REFUND_EVENT_TYPES))
    is_refund = source.c.event_type.in_(REFUND_EVENT_TYPES)

    ordered = order_lines.alias("ordered_lines")
    order_price = (
        select(ordered.c.price)
        .where(
            ordered.c.order_id == own.c.order_id,
            ordered.c.product_id == own.c.product_id,
            ordered.c.event_type == PURCHASE,
            ordered.c.price.is_not(None),
        )
        .order_by(ordered.c.occurred_at.desc(), ordered.c.event_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    listed = (
        select(
            day.label("day"),
            source.c.event_type.label("event_type"),
            func.coalesce(source.c.order_id, source.c.event_id).label("order_key"),
            own.c.product_id.label("product_id"),
            own.c.currency.label("currency"),
            _line_units(own).label("units"),
            (case((is_refund, func.coalesce(own.c.price, order_price)), else_=own.c.price) * _line_units(own)).label(
                "amount"
            ),
        )
        .select_from(source)
        .join(own, and_(own.c.event_id == source.c.event_id, own.c.occurred_at == source.c.occurred_at))
        .where(sold_or_refunded)
    )

    refunded_order = order_lines.alias("refunded_order")
    has_own_lines = (
        select(literal(1))
        .where(own.c.event_id == source.c.event_id, own.c.occurred_at == source.c.occurred_at)
        .exists()
    )
    latest_order_event = (
        select(ordered.c.event_id)
        .where(ordered.c.order_id == source.c.order_id, ordered.c.event_type == PURCHASE)
        .order_by(ordered.c.occurred_at.desc(), ordered.c.event_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    whole = (
        select(
            day.label("day"),
            source.c.event_type.label("event_type"),
            source.c.order_id.label("order_key"),
            refunded_order.c.product_id.label("product_id"),
            refunded_order.c.currency.label("currency"),
            _line_units(refunded_order).label("units"),
            (refunded_order.c.price * _line_units(refunded_order)).label("amount"),
        )
        .select_from(source)
        .join(refunded_order, refunded_order.c.event_id == latest_order_event)
        .where(is_refund, source.c.order_id.is_not(None), ~has_own_lines)
    )

    lines = union_all(listed, whole).subquery("sale_lines")
    sale = lines.c.event_type == PURCHASE
    refund = lines.c.event_type != PURCHASE
    units_sold = cast(func.coalesce(func.sum(lines.c.units).filter(sale), 0), Integer)
    units_refunded = cast(func.coalesce(func.sum(lines.c.units).filter(refund), 0), Integer)
    gross = func.coalesce(func.sum(lines.c.amount).filter(sale), 0)
    refunded = func.coalesce(func.sum(lines.c.amount).filter(refund), 0)
    return (
        select(
            lines.c.day.label("day"),
            lines.c.product_id.label("product_id"),
            lines.c.currency.label("currency"),
            func.count(distinct(lines.c.order_key)).filter(sale).label("orders"),
            units_sold.label("units_sold"),
            units_refunded.label("units_refunded"),
            (units_sold - units_refunded).label("net_units"),
            gross.label("gross_revenue"),
            refunded.label("refunded_revenue"),
            (gross - refunded).label("net_revenue"),
        )
        .where(lines.c.product_id.is_not(None), lines.c.currency.is_not(None))
        .group_by(lines.c.day, lines.c.product_id, lines.c.currency)
    )
