"""The data contracts as pure functions: a frame of rows in, verdicts by rule and a severity out."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter

import pandas as pd
import pytest

from etl_assets.quality.contracts import Severity, enrichment_contracts, events_contract, staging_contract
from etl_assets.quality.day_checks import ContractReport, held_reason, key_aligned_chunks, source_verdicts
from etl_assets.settings import QualitySettings
from etl_assets.warehouse.holds import Verdict

DAY = date(2025, 3, 1)
NOON = datetime(2025, 3, 1, 12, tzinfo=UTC)
NOW = datetime(2025, 3, 2, 9, tzinfo=UTC)
QUALITY = QualitySettings()


def _event(number: int, **changes) -> dict:
    row = {
        "event_id": f"e{number}",
        "occurred_at": NOON + timedelta(minutes=number),
        "event_type": "page_view",
        "user_id": f"u{number % 7}",
        "anonymous_id": None,
        "session_id": f"s{number % 5}",
        "product_id": None,
        "quantity": None,
        "price": None,
        "currency": None,
        "order_id": None,
        "revenue": None,
        "total": None,
        "page_url": f"https://shop.example/p/{number}",
        "referrer": None,
        "source": "s3",
        "batch_id": "b1",
        "content_hash": "0" * 32,
        "ingested_at": NOON,
    }
    row.update(changes)
    return row


def _purchase(number: int, **changes) -> dict:
    purchase = {"event_type": "purchase", "product_id": "p1", "price": 9.5, "currency": "EUR", "quantity": 1}
    return _event(number, **{**purchase, "page_url": None, **changes})


def _events_report(rows: list[dict], quality: QualitySettings = QUALITY, now: datetime = NOW) -> ContractReport:
    report = ContractReport(events_contract(DAY, now, quality), DAY)
    frame = pd.DataFrame.from_records(rows)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    for column in ("price", "quantity", "revenue", "total"):
        frame[column] = pd.to_numeric(frame[column])
    report.add_frame(frame)
    return report


def _failing(report: ContractReport) -> dict[str, int]:
    return {verdict.rule.name: verdict.failing for verdict in report.verdicts() if verdict.failing}


def test_a_clean_day_passes_every_rule():
    report = _events_report([_event(n) for n in range(20)] + [_purchase(n) for n in range(20, 30)])
    assert _failing(report) == {}
    assert report.severity is None


def test_a_duplicate_event_id_is_an_error_naming_both_rows():
    report = _events_report([_event(1), _event(2), _event(1, occurred_at=NOON + timedelta(hours=3))])
    assert _failing(report) == {"event_id_unique": 2}
    assert report.severity is Severity.ERROR
    examples = next(v.examples for v in report.verdicts() if v.rule.name == "event_id_unique")
    assert {example["event_id"] for example in examples} == {"e1"}


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"event_type": "Signed Up"}, "accepted_event_type"),
        ({"price": -1.0, "event_type": "add_to_cart", "product_id": "p"}, "price_not_negative"),
        ({"occurred_at": datetime(2025, 3, 2, 0, 0, tzinfo=UTC)}, "occurred_at_in_day"),
        ({"user_id": None, "anonymous_id": None}, "identity_present"),
        ({"batch_id": None}, "required_fields_present"),
    ],
)
def test_a_hard_rule_broken_once_is_an_error(changes, rule):
    report = _events_report([_event(n) for n in range(10)] + [_event(99, **changes)])
    assert _failing(report) == {rule: 1}
    assert report.severity is Severity.ERROR


def test_a_missing_currency_within_tolerance_warns_and_beyond_it_is_an_error():
    purchases = [_purchase(n) for n in range(200)]
    one_missing = _events_report([*purchases[:-1], _purchase(500, currency=None)])
    assert _failing(one_missing) == {"purchase_currency_iso4217": 1}
    assert one_missing.severity is Severity.WARN  # 1 of 200 = 0.5 % ≤ 1 %

    many_missing = _events_report([_purchase(n, currency=None if n % 2 else "EUR") for n in range(200)])
    assert _failing(many_missing) == {"purchase_currency_iso4217": 100}
    assert many_missing.severity is Severity.ERROR


def test_a_currency_that_is_not_iso_4217_counts_as_missing():
    report = _events_report([_purchase(1, currency="ABC")], QualitySettings(max_currency_missing_share=0.0, min_rows=1))
    assert _failing(report) == {"purchase_currency_iso4217": 1}
    assert report.severity is Severity.ERROR


def test_a_purchase_without_a_price_is_not_asked_for_a_currency():
    report = _events_report([_purchase(1, price=None, currency=None)], QualitySettings(max_null_share=1.0))
    assert "purchase_currency_iso4217" not in _failing(report)


def test_an_event_from_the_future_beyond_the_skew_warns():
    now = NOON + timedelta(minutes=30)
    report = _events_report([_event(1), _event(2, occurred_at=now + timedelta(minutes=20))], now=now)
    assert _failing(report) == {"occurred_at_not_in_future": 1}
    assert report.severity is Severity.WARN


def test_nullable_columns_warn_only_above_the_configured_null_share():
    rows = [_event(n, session_id=None if n < 3 else "s") for n in range(10)]
    assert _events_report(rows, QualitySettings(max_null_share=0.5)).severity is None
    tight = _events_report(rows, QualitySettings(max_null_share=0.2, min_rows=10))
    assert _failing(tight) == {"session_id_present": 3}
    assert tight.severity is Severity.WARN


def _staged(number: int, **changes) -> dict:
    row = {
        "staging_id": number,
        "batch_id": "b1",
        "record_no": number,
        "event_id": f"e{number}",
        "event_day": DAY,
        "source": "s3",
        "occurred_at": NOON,
        "rejected_rule": None,
        "rejection": None,
    }
    row.update(changes)
    return row


def _staging_report(rows: list[dict]) -> ContractReport:
    report = ContractReport(staging_contract(DAY, QUALITY), DAY)
    frame = pd.DataFrame.from_records(rows)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    report.add_frame(frame)
    return report


def test_a_share_over_too_few_rows_only_warns():
    unknown = {"occurred_at": None, "rejected_rule": "accepted_event_type", "rejection": "unknown event type 'x'"}
    report = _staging_report([_staged(1), _staged(2, **unknown)])  # 50 % of 2 rows, fewer than min_rows
    assert _failing(report) == {"accepted_event_type": 1}
    assert report.severity is Severity.WARN
    assert "too few rows" in next(v.outcome for v in report.verdicts() if v.failing)


def test_staged_rejections_within_the_threshold_warn_and_beyond_it_hold_the_day():
    unknown = {"occurred_at": None, "rejected_rule": "accepted_event_type", "rejection": "unknown event type 'x'"}
    few = _staging_report([_staged(n) for n in range(1, 100)] + [_staged(100, **unknown)])
    assert _failing(few) == {"accepted_event_type": 1}
    assert few.severity is Severity.WARN
    many = _staging_report([_staged(n, **(unknown if n % 2 else {})) for n in range(1, 201)])
    assert many.severity is Severity.ERROR


def test_the_gate_holds_each_source_over_its_tolerance_with_the_reason_and_lets_the_others_merge():
    negative = {"occurred_at": None, "rejected_rule": "price_not_negative", "rejection": "negative price -1"}
    bad = _staging_report([_staged(n, source="segment:app", **(negative if n % 2 else {})) for n in range(1, 201)])
    bad.source, bad.rows_waiting = "segment:app", 200
    tolerated = _staging_report([_staged(n) for n in range(1, 100)] + [_staged(100, **negative)])
    tolerated.source, tolerated.rows_waiting = "s3", 100
    assert held_reason(bad) == "price_not_negative: 100 of 200 rows (50.0%), over the tolerance 5.0%"
    assert held_reason(tolerated) is None
    assert source_verdicts([bad, tolerated]) == [
        Verdict("segment:app", 200, "price_not_negative: 100 of 200 rows (50.0%), over the tolerance 5.0%"),
        Verdict("s3", 100, None),
    ]
    bad.rows_waiting = 0  # the source's rows merged already (a check by hand of a whole day): nothing to hold
    assert source_verdicts([bad]) == [Verdict("segment:app", 0, None)]


def test_a_hard_rule_breached_once_holds_with_none_tolerated():
    report = _staging_report([_staged(1), _staged(2, occurred_at=NOON + timedelta(days=1))])
    assert held_reason(report) == "staged_in_its_day: 1 of 2 rows (50.0%), none tolerated"


def test_a_staged_row_outside_its_day_is_an_error():
    report = _staging_report([_staged(1), _staged(2, occurred_at=NOON + timedelta(days=1))])
    assert _failing(report) == {"staged_in_its_day": 1}
    assert report.severity is Severity.ERROR


def test_duplicate_deliveries_warn():
    report = _staging_report([_staged(1), _staged(2, event_id="e1")])
    assert _failing(report) == {"delivered_once": 2}
    assert report.severity is Severity.WARN


def test_funnel_rates_outside_0_and_1_fail():
    contract = enrichment_contracts(DAY)["daily_funnel"]
    report = ContractReport(contract, DAY)
    report.add_frame(
        pd.DataFrame.from_records(
            [
                {
                    "day": DAY,
                    "viewers": 10,
                    "carters": 4,
                    "purchasers": 2,
                    "view_to_cart_rate": 1.4,
                    "cart_to_purchase_rate": 0.5,
                    "view_to_purchase_rate": 0.2,
                }
            ]
        )
    )
    assert _failing(report) == {"funnel_rates_between_0_and_1": 1}
    assert report.severity is Severity.ERROR


def test_chunks_never_split_a_key():
    rows = [{"k": key} for key in "aabbbbcdddde"]
    chunks = list(key_aligned_chunks(rows, itemgetter("k"), 3))
    assert [len(chunk) for chunk in chunks] == [6, 5, 1]
    assert [row["k"] for chunk in chunks for row in chunk] == list("aabbbbcdddde")
    for first, second in itertools.pairwise(chunks):
        assert first[-1]["k"] != second[0]["k"]


def test_uniqueness_holds_across_chunks_when_they_follow_the_key():
    rows = [_event(n) for n in range(10)] + [_event(4, occurred_at=NOON + timedelta(hours=5))]
    rows.sort(key=lambda row: row["event_id"])
    report = ContractReport(events_contract(DAY, NOW, QUALITY), DAY)
    for chunk in key_aligned_chunks(rows, itemgetter("event_id"), 2):
        frame = pd.DataFrame.from_records(chunk)
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
        for column in ("price", "quantity"):
            frame[column] = pd.to_numeric(frame[column])
        report.add_frame(frame)
    assert report.chunks > 1
    assert _failing(report) == {"event_id_unique": 2}
