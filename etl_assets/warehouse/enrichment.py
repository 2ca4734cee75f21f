"""The daily enrichment tables, built in SQL from a window of ``events`` (SQLAlchemy Expression Language).

Every builder takes the events of the window as a ``Select`` (what the IO manager's ``load_input``
hands an asset) and returns a ``Select`` whose labels are the target table's columns; the IO manager
replaces the window's rows with its result server-side, in one transaction. No row passes through
Python.

A visitor is the user id, or the anonymous id when there is none. Sessions are cut at 30 minutes
without an event and at midnight UTC, so each day's tables depend on that day's events only and a
day can be rebuilt on its own.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Date, Integer, Numeric, Select, and_, case, cast, distinct, func, literal, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

SESSION_GAP = timedelta(minutes=30)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


UTC = literal_column("'UTC'")
"""Inlined rather than bound, so the same expression in SELECT and GROUP BY is one expression to PostgreSQL."""


def _utc_day(timestamp: ColumnElement) -> ColumnElement:
    return cast(func.timezone(UTC, timestamp), Date)


def sessionized(events_in_window: Select) -> Select:
    """The window's events with their visitor, UTC day and session number (per visitor and day)."""
    source = events_in_window.subquery("window_events")
    visitor = func.coalesce(source.c.user_id, source.c.anonymous_id).label("visitor")
    day = _utc_day(source.c.occurred_at).label("day")
    with_gaps = select(
        source.c.event_type,
        source.c.occurred_at,
        visitor,
        day,
        (
            source.c.occurred_at
            - func.lag(source.c.occurred_at).over(partition_by=(visitor, day), order_by=source.c.occurred_at)
        ).label("gap"),
    ).subquery("with_gaps")
    starts_session = case((with_gaps.c.gap.is_(None), 1), (with_gaps.c.gap > SESSION_GAP, 1), else_=0)
    return select(
        with_gaps.c.event_type,
        with_gaps.c.occurred_at,
        with_gaps.c.visitor,
        with_gaps.c.day,
        func.sum(starts_session)
        .over(partition_by=(with_gaps.c.visitor, with_gaps.c.day), order_by=with_gaps.c.occurred_at)
        .label("session_no"),
    ).where(with_gaps.c.visitor.is_not(None))


def user_daily_activity_query(events_in_window: Select) -> Select:
    rows = sessionized(events_in_window).subquery("visits")
    return select(
        rows.c.day.label("day"),
        rows.c.visitor.label("user_id"),
        func.count().label("events"),
        _count_where(rows.c.event_type == "page_view").label("page_views"),
        _count_where(rows.c.event_type == "product_view").label("product_views"),
        _count_where(rows.c.event_type == "add_to_cart").label("add_to_carts"),
        _count_where(rows.c.event_type == "purchase").label("purchases"),
        cast(func.max(rows.c.session_no), Integer).label("sessions"),
        func.min(rows.c.occurred_at).label("first_seen_at"),
        func.max(rows.c.occurred_at).label("last_seen_at"),
    ).group_by(rows.c.day, rows.c.visitor)


def sessions_query(events_in_window: Select) -> Select:
    rows = sessionized(events_in_window).subquery("visits")
    started_at = func.min(rows.c.occurred_at)
    ended_at = func.max(rows.c.occurred_at)
    return select(
        rows.c.day.label("day"),
        (
            rows.c.visitor
            + literal("@")
            + func.to_char(func.timezone(UTC, started_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ).label("session_key"),
        rows.c.visitor.label("user_id"),
        started_at.label("started_at"),
        ended_at.label("ended_at"),
        cast(func.extract("epoch", ended_at - started_at), Integer).label("duration_seconds"),
        func.count().label("events"),
        _count_where(rows.c.event_type == "page_view").label("page_views"),
        func.bool_or(rows.c.event_type == "purchase").label("converted"),
    ).group_by(rows.c.day, rows.c.visitor, rows.c.session_no)


def daily_funnel_query(events_in_window: Select) -> Select:
    """Viewed a product → added to cart → purchased, each stage counting only visitors of the stage before,
    so every rate lies between 0 and 1."""
    source = events_in_window.subquery("window_events")
    per_visitor = (
        select(
            _utc_day(source.c.occurred_at).label("day"),
            func.coalesce(source.c.user_id, source.c.anonymous_id).label("visitor"),
            func.bool_or(source.c.event_type == "product_view").label("viewed"),
            func.bool_or(source.c.event_type == "add_to_cart").label("carted"),
            func.bool_or(source.c.event_type == "purchase").label("purchased"),
        )
        .group_by(_utc_day(source.c.occurred_at), func.coalesce(source.c.user_id, source.c.anonymous_id))
        .subquery("per_visitor")
    )
    viewers = func.count().filter(per_visitor.c.viewed)
    carters = func.count().filter(and_(per_visitor.c.viewed, per_visitor.c.carted))
    purchasers = func.count().filter(and_(per_visitor.c.viewed, per_visitor.c.carted, per_visitor.c.purchased))

    def rate(numerator: ColumnElement, denominator: ColumnElement) -> ColumnElement:
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


def product_daily_sales_query(events_in_window: Select) -> Select:
    """Purchases with a product and a currency; a purchase without a quantity counts one unit."""
    source = events_in_window.subquery("window_events")
    units = func.coalesce(source.c.quantity, 1)
    day = _utc_day(source.c.occurred_at)
    return (
        select(
            day.label("day"),
            source.c.product_id.label("product_id"),
            source.c.currency.label("currency"),
            func.count(distinct(func.coalesce(source.c.order_id, source.c.event_id))).label("orders"),
            cast(func.sum(units), Integer).label("units"),
            func.coalesce(func.sum(source.c.price * units), 0).label("revenue"),
        )
        .where(
            source.c.event_type == "purchase",
            source.c.product_id.is_not(None),
            source.c.currency.is_not(None),
        )
        .group_by(day, source.c.product_id, source.c.currency)
    )
