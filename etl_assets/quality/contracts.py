"""Data contracts of the warehouse tables: the rules each table's rows keep, as pandera schemas.

A contract is a list of ``Rule``s. Each rule says which rows it is about (``applies``, all rows when
absent) and what those rows must satisfy (``holds``). ``Contract.schema()`` turns the rules into a
pandera ``DataFrameSchema`` whose checks carry the rules' names, so a lazy validation reports every
failing row under the rule it breaks.

Severity follows one convention for every table:

- a rule is *breached* when the share of its rows that fail it is above its ``tolerance`` (a share
  over fewer than ``min_rows`` rows, say three rows waiting for a near-real-time merge, means little
  and cannot breach); a breached rule fails the check with the rule's severity (``ERROR`` for hard
  rules, ``WARN`` for soft ones such as null ratios);
- an ``ERROR`` rule that some rows fail within its tolerance makes the check warn: those rows were
  tolerated (quarantined, or loaded with a quality tag), not ignored.

Hard rules have tolerance 0: a single failing row is an error. The thresholds come from
``QualitySettings`` (``ETL_QUALITY_*``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TypedDict

import pandas as pd
import pandera.pandas as pa
import pycountry

from etl_assets.settings import QualitySettings
from etl_assets.transform.days import day_start
from etl_assets.transform.normalize import (
    RULE_ACCEPTED_EVENT_TYPE,
    RULE_IDENTITY_PRESENT,
    RULE_PRICE_NOT_NEGATIVE,
    RULE_TIME_IN_RANGE,
    RULE_VALID_VALUES,
)
from etl_assets.transform.vocabulary import EVENT_TYPES, ORDER_EVENT_TYPES, PURCHASE

ISO_4217_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)
PRODUCT_EVENT_TYPES = ("product_click", "product_view", "add_to_cart", "remove_from_cart", "wishlist_add")
"""Types about one product, which name it (an order names its products in its lines)."""

RowTest = Callable[[pd.DataFrame], pd.Series]


class Severity(StrEnum):
    ERROR = "ERROR"
    WARN = "WARN"


class _Tolerance(TypedDict, total=False):
    """Keyword arguments several rules of a contract share."""

    severity: Severity
    tolerance: float
    min_rows: int


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    holds: RowTest
    applies: RowTest | None = None
    severity: Severity = Severity.ERROR
    tolerance: float = 0.0
    min_rows: int = 0
    """Rows the rule must be about before its share can breach the tolerance (hard rules: 0)."""

    def applicable(self, frame: pd.DataFrame) -> pd.Series:
        if self.applies is None:
            return pd.Series(True, index=frame.index)
        return self.applies(frame).fillna(False).astype(bool)

    def passes(self, frame: pd.DataFrame) -> pd.Series:
        """True for rows that keep the rule or that it is not about; an unknown answer counts as broken."""
        return ~self.applicable(frame) | self.holds(frame).fillna(False).astype(bool)


@dataclass(frozen=True)
class Contract:
    table: str
    rules: tuple[Rule, ...]
    key: str
    """Column that identifies a row; chunks of a large partition never split rows with the same key."""
    shown_columns: tuple[str, ...]
    """Columns shown for failing rows."""

    def schema(self) -> pa.DataFrameSchema:
        return pa.DataFrameSchema(
            name=self.table,
            checks=[pa.Check(rule.passes, name=rule.name, description=rule.description) for rule in self.rules],
        )

    def rule(self, name: str) -> Rule:
        return next(rule for rule in self.rules if rule.name == name)


def _present(*columns: str) -> RowTest:
    return lambda frame: frame[list(columns)].notna().all(axis=1)


def _in_day(column: str, day: date) -> RowTest:
    start = pd.Timestamp(day_start(day))
    end = start + pd.Timedelta(days=1)
    return lambda frame: (frame[column] >= start) & (frame[column] < end)


def _not_negative(*columns: str) -> RowTest:
    return lambda frame: (frame[list(columns)].fillna(0) >= 0).all(axis=1)


def _unique(column: str) -> RowTest:
    return lambda frame: ~frame[column].duplicated(keep=False)


def _is_type(*types: str) -> RowTest:
    return lambda frame: frame["event_type"].isin(types)


def _priced_purchase(frame: pd.DataFrame) -> pd.Series:
    return (frame["event_type"] == PURCHASE) & frame[["price", "revenue", "total"]].notna().any(axis=1)


def _rate_between_0_and_1(*columns: str) -> RowTest:
    return lambda frame: frame[list(columns)].apply(lambda rates: rates.isna() | rates.between(0, 1)).all(axis=1)


def events_contract(day: date, now: datetime, quality: QualitySettings) -> Contract:
    """Rules of one day of ``events``; ``now`` is the check's clock (for the future-skew rule)."""
    latest = pd.Timestamp(now.astimezone(UTC) + timedelta(minutes=quality.future_skew_minutes))
    soft: _Tolerance = {"severity": Severity.WARN, "tolerance": quality.max_null_share, "min_rows": quality.min_rows}
    rules = (
        Rule("event_id_unique", "each event_id appears once in the day", _unique("event_id")),
        Rule(
            "required_fields_present",
            "event_id, occurred_at, event_type, source, batch_id and content_hash are set",
            _present("event_id", "occurred_at", "event_type", "source", "batch_id", "content_hash"),
        ),
        Rule(
            RULE_IDENTITY_PRESENT,
            "a user_id or an anonymous_id is set",
            lambda frame: frame["user_id"].notna() | frame["anonymous_id"].notna(),
        ),
        Rule(RULE_ACCEPTED_EVENT_TYPE, f"event_type is one of {', '.join(EVENT_TYPES)}", _is_type(*EVENT_TYPES)),
        Rule(RULE_PRICE_NOT_NEGATIVE, "price and quantity are not negative", _not_negative("price", "quantity")),
        Rule(
            "purchase_currency_iso4217",
            "a purchase with a price, revenue or total names its ISO 4217 currency",
            lambda frame: frame["currency"].isin(ISO_4217_CODES),
            applies=_priced_purchase,
            tolerance=quality.max_currency_missing_share,
            min_rows=quality.min_rows,
        ),
        Rule("occurred_at_in_day", f"occurred_at falls inside {day.isoformat()} (UTC)", _in_day("occurred_at", day)),
        Rule(
            "occurred_at_not_in_future",
            f"occurred_at is at most {quality.future_skew_minutes} minutes ahead of the check's clock",
            lambda frame: frame["occurred_at"] <= latest,
            severity=Severity.WARN,
        ),
        Rule("session_id_present", "events carry a session_id", _present("session_id"), **soft),
        Rule(
            "product_id_present",
            "product events name their product",
            _present("product_id"),
            applies=_is_type(*PRODUCT_EVENT_TYPES),
            **soft,
        ),
        Rule(
            "page_url_present",
            "page views carry their URL",
            _present("page_url"),
            applies=_is_type("page_view"),
            **soft,
        ),
        Rule(
            "purchase_price_present",
            "purchases carry a price, a revenue or a total",
            lambda frame: frame[["price", "revenue", "total"]].notna().any(axis=1),
            applies=_is_type(PURCHASE),
            **soft,
        ),
    )
    return Contract(
        "events", rules, key="event_id", shown_columns=("event_id", "occurred_at", "event_type", "batch_id")
    )


STAGING_REJECTION_RULES = (
    RULE_ACCEPTED_EVENT_TYPE,
    RULE_PRICE_NOT_NEGATIVE,
    RULE_TIME_IN_RANGE,
    RULE_IDENTITY_PRESENT,
    RULE_VALID_VALUES,
)


def _not_rejected_for(rule: str) -> RowTest:
    return lambda frame: frame["rejected_rule"].ne(rule) | frame["rejected_rule"].isna()


def staging_contract(day: date, quality: QualitySettings) -> Contract:
    """Rules of one day of staged rows, read together with the transform's verdict on each.

    The frame holds the staging columns plus ``occurred_at`` (from the transform, when it accepted
    the row) and ``rejected_rule`` / ``rejection`` (when it did not).
    """
    rejected: _Tolerance = {"tolerance": quality.max_rejected_share, "min_rows": quality.min_rows}
    rules = (
        Rule(
            "staging_fields_present",
            "batch_id, record_no, event_id, event_day and source are set",
            _present("batch_id", "record_no", "event_id", "event_day", "source"),
        ),
        Rule("record_no_positive", "record numbers start at 1", lambda frame: frame["record_no"] >= 1),
        Rule(
            "staged_in_its_day",
            f"a row staged for {day.isoformat()} has its timestamp inside that day (UTC)",
            _in_day("occurred_at", day),
            applies=lambda frame: frame["rejected_rule"].isna(),
        ),
        *(
            Rule(rule, f"the transform accepts the row ({rule.replace('_', ' ')})", _not_rejected_for(rule), **rejected)
            for rule in STAGING_REJECTION_RULES
        ),
        Rule(
            "delivered_once",
            "each event_id was delivered once (the merge keeps one of the duplicates)",
            _unique("event_id"),
            severity=Severity.WARN,
        ),
    )
    return Contract(
        "staging_events",
        rules,
        key="event_id",
        shown_columns=("staging_id", "batch_id", "record_no", "event_id", "rejection"),
    )


def _counts_not_negative(*columns: str) -> Rule:
    return Rule("counts_not_negative", f"{', '.join(columns)} are not negative", _not_negative(*columns))


def _day_is(day: date) -> Rule:
    return Rule("day_is_partition", f"day is {day.isoformat()}", lambda frame: frame["day"] == day)


def enrichment_contracts(day: date) -> dict[str, Contract]:
    """Rules of one day of each daily table."""
    return {
        "user_daily_activity": Contract(
            "user_daily_activity",
            (
                _day_is(day),
                Rule("user_unique", "one row per user", _unique("user_id")),
                _counts_not_negative("events", "page_views", "product_views", "add_to_carts", "purchases", "sessions"),
                Rule(
                    "typed_counts_within_events",
                    "page views, product views, carts and purchases add up to at most the events",
                    lambda frame: (
                        frame[["page_views", "product_views", "add_to_carts", "purchases"]].sum(axis=1)
                        <= frame["events"]
                    ),
                ),
                Rule(
                    "first_seen_before_last",
                    "first_seen_at is not after last_seen_at",
                    lambda frame: frame["first_seen_at"] <= frame["last_seen_at"],
                ),
            ),
            key="user_id",
            shown_columns=("day", "user_id", "events"),
        ),
        "sessions": Contract(
            "sessions",
            (
                _day_is(day),
                Rule("session_unique", "one row per session", _unique("session_key")),
                Rule("session_has_events", "a session holds at least one event", lambda frame: frame["events"] >= 1),
                _counts_not_negative("duration_seconds", "page_views"),
                Rule(
                    "session_ends_after_start",
                    "ended_at is not before started_at",
                    lambda frame: frame["ended_at"] >= frame["started_at"],
                ),
            ),
            key="session_key",
            shown_columns=("day", "session_key", "events", "duration_seconds"),
        ),
        "daily_funnel": Contract(
            "daily_funnel",
            (
                _day_is(day),
                _counts_not_negative("viewers", "carters", "purchasers"),
                Rule(
                    "funnel_rates_between_0_and_1",
                    "funnel rates lie between 0 and 1",
                    _rate_between_0_and_1("view_to_cart_rate", "cart_to_purchase_rate", "view_to_purchase_rate"),
                ),
                Rule(
                    "funnel_narrows",
                    "purchasers ≤ carters ≤ viewers",
                    lambda frame: (frame["purchasers"] <= frame["carters"]) & (frame["carters"] <= frame["viewers"]),
                ),
            ),
            key="day",
            shown_columns=("day", "viewers", "carters", "purchasers", "view_to_cart_rate"),
        ),
        "product_daily_sales": Contract(
            "product_daily_sales",
            (
                _day_is(day),
                Rule(
                    "product_currency_unique",
                    "one row per product and currency",
                    lambda frame: ~frame.duplicated(["product_id", "currency"], keep=False),
                ),
                Rule(
                    "sales_not_negative",
                    "orders, units sold and refunded, gross and refunded revenue are not negative",
                    _not_negative("orders", "units_sold", "units_refunded", "gross_revenue", "refunded_revenue"),
                ),
                Rule(
                    "net_is_gross_less_refunds",
                    "net units and net revenue are what was sold less what was refunded",
                    lambda frame: (
                        (frame["net_units"] == frame["units_sold"] - frame["units_refunded"])
                        & ((frame["net_revenue"] - (frame["gross_revenue"] - frame["refunded_revenue"])).abs() < 1e-6)
                    ),
                ),
                Rule(
                    "currency_iso4217",
                    "currency is an ISO 4217 code",
                    lambda frame: frame["currency"].isin(ISO_4217_CODES),
                ),
            ),
            key="product_id",
            shown_columns=("day", "product_id", "currency", "gross_revenue", "refunded_revenue"),
        ),
    }


def order_lines_contract(day: date) -> Contract:
    """Rules of one day of ``order_lines`` (the lines of the day's order events)."""
    return Contract(
        "order_lines",
        (
            _day_is(day),
            Rule(
                "line_unique",
                "one row per event and line number",
                lambda frame: ~frame.duplicated(["event_id", "line_number"], keep=False),
            ),
            Rule("line_number_positive", "line numbers start at 1", lambda frame: frame["line_number"] >= 1),
            Rule(
                "line_of_an_order",
                "the line belongs to an order event",
                lambda frame: frame["event_type"].isin(ORDER_EVENT_TYPES),
            ),
            Rule(
                "price_and_quantity_not_negative",
                "price and quantity are not negative",
                _not_negative("price", "quantity"),
            ),
            Rule(
                "product_present",
                "a line names its product (product_id or sku)",
                _present("product_id"),
                severity=Severity.WARN,
            ),
        ),
        key="event_id",
        shown_columns=("day", "event_id", "line_number", "product_id", "quantity", "price"),
    )
