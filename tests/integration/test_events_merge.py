"""The merge into events on a real PostgreSQL: exactly once by event_id, across days and in any order."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from etl_assets.transform import exact_json
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.records import ParsedRecord
from etl_assets.warehouse.merge import MergeOptions, merge_days
from etl_assets.warehouse.staging import record_batch, stage_records
from tests.harness import ACCEPTED, merge_day, stage_payloads

OPTIONS = MergeOptions(ACCEPTED, PiiPolicy())


def stage(engine, batch_id: str, *payloads: dict) -> None:
    stage_payloads(engine, batch_id, list(payloads))


def purchase(event_id: str, timestamp: str, price: str = "10.00") -> dict:
    return {
        "id": event_id,
        "type": "purchase",
        "timestamp": timestamp,
        "user": {"id": "u1"},
        "product": {"id": "p1", "price": price, "currency": "EUR", "quantity": 1},
    }


def events_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT event_id, occurred_at, price FROM events ORDER BY event_id")).all()


def ledger_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT xmin::text, * FROM event_ledger ORDER BY event_id")).all()


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")])
def test_an_event_resent_with_another_timestamp_lives_once_on_the_day_of_its_newest_version(warehouse_engine, order):
    stage(warehouse_engine, "file-1", purchase("e1", "2025-08-01T10:00:00Z", "10.00"))
    stage(warehouse_engine, "file-2", purchase("e1", "2025-08-03T10:00:00Z", "12.00"))
    days = {"first": date(2025, 8, 1), "second": date(2025, 8, 3)}
    for name in order:
        merge_day(warehouse_engine, days[name])
    assert events_rows(warehouse_engine) == [("e1", datetime(2025, 8, 3, 10, tzinfo=UTC), pytest.approx(12))]
    for day in days.values():  # re-running every day, in either order, changes nothing
        merge_day(warehouse_engine, day, reprocess_all=True)
    assert events_rows(warehouse_engine) == [("e1", datetime(2025, 8, 3, 10, tzinfo=UTC), pytest.approx(12))]
    with warehouse_engine.connect() as conn:
        assert conn.execute(text("SELECT event_id, occurred_at FROM event_ledger")).all() == [
            ("e1", datetime(2025, 8, 3, 10, tzinfo=UTC))
        ]


def test_a_rerun_writes_nothing_and_a_changed_event_updates_its_row(warehouse_engine):
    stage(warehouse_engine, "file-1", purchase("e1", "2025-08-01T10:00:00Z"), purchase("e2", "2025-08-01T11:00:00Z"))
    first = merge_day(warehouse_engine, date(2025, 8, 1))
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    ledger = ledger_rows(warehouse_engine)
    again = merge_day(warehouse_engine, date(2025, 8, 1), reprocess_all=True)
    assert (again.inserted, again.updated, again.unchanged, again.superseded) == (0, 0, 2, 0)
    assert ledger_rows(warehouse_engine) == ledger  # the ledger already held these versions: not even rewritten
    staged = stage_payloads(
        warehouse_engine,
        "file-2",
        [purchase("e2", "2025-08-01T11:00:00Z", "99.00"), purchase("e1", "2025-08-01T10:00:00Z")],
    )
    assert (staged.records, staged.staged, staged.resent) == (2, 1, 1)  # e1 is in events as sent: not staged again
    changed = merge_day(warehouse_engine, date(2025, 8, 1))
    assert (changed.received, changed.inserted, changed.updated, changed.unchanged) == (1, 0, 1, 0)
    assert [row[2] for row in events_rows(warehouse_engine)] == [pytest.approx(10), pytest.approx(99)]


def test_a_rejected_record_is_quarantined_at_ingest_and_counted_by_its_merge(warehouse_engine):
    stage(
        warehouse_engine,
        "file-1",
        purchase("e1", "2025-08-01T10:00:00Z"),
        {**purchase("e2", "2025-08-01T10:00:00Z"), "type": ""},
    )
    with warehouse_engine.connect() as conn:
        quarantined = conn.execute(text("SELECT record_no, stage, reason FROM quarantine")).all()
    assert quarantined == [(2, "normalize", "no event type")]
    counts = merge_day(warehouse_engine, date(2025, 8, 1))
    assert (counts.inserted, counts.rejected) == (1, 1)
    with warehouse_engine.connect() as conn:
        statuses = conn.execute(text("SELECT record_no, status, error FROM staging_status ORDER BY record_no")).all()
    assert statuses == [(1, "succeeded", None), (2, "failed", "no event type")]


def test_duplicates_within_a_day_are_counted_not_written(warehouse_engine):
    stage(warehouse_engine, "file-1", purchase("e1", "2025-08-01T10:00:00Z"), purchase("e1", "2025-08-01T10:00:00Z"))
    stage(warehouse_engine, "file-2", purchase("e1", "2025-08-01T10:00:00Z"))
    counts = merge_day(warehouse_engine, date(2025, 8, 1))
    assert (counts.received, counts.duplicates, counts.inserted) == (3, 2, 1)
    assert len(events_rows(warehouse_engine)) == 1


BIG_NUMBERS_LINE = (
    '{"id": "big-1", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z", "user": {"id": "u1"}, '
    '"product_id": 123456789012345678901234567890, "properties": {"order_total_micros": '
    '123456789012345678901234567890, "ratio": 0.12345678901234567890123, "plain": 1.5, "count": 18446744073709551615}}'
)


def test_numbers_a_double_cannot_hold_keep_every_digit_in_events(warehouse_engine):
    """orjson alone would load 123456789012345678901234567890 as 1.2345678901234568e+29."""
    record_batch(
        warehouse_engine,
        batch_id="big",
        source="s3",
        source_uri="s3://b/big",
        archive_key=None,
        sha256="0" * 64,
        byte_count=len(BIG_NUMBERS_LINE),
    )
    record = ParsedRecord(1, exact_json.loads(BIG_NUMBERS_LINE), BIG_NUMBERS_LINE)
    stage_records(warehouse_engine, "big", "s3", [record], ACCEPTED)
    counts = merge_day(warehouse_engine, date(2025, 8, 1))
    assert counts.inserted == 1
    with warehouse_engine.connect() as conn:
        product_id, properties = conn.execute(text("SELECT product_id, properties::text FROM events")).one()
    assert product_id == "123456789012345678901234567890"
    assert json.loads(properties, parse_float=Decimal) == {
        "order_total_micros": 123456789012345678901234567890,
        "ratio": Decimal("0.12345678901234567890123"),
        "plain": Decimal("1.5"),
        "count": 18446744073709551615,
    }
    again = merge_day(warehouse_engine, date(2025, 8, 1), reprocess_all=True)
    assert (again.updated, again.unchanged) == (0, 1), "the content hash of exact numbers is stable"


def test_days_merged_at_once_end_as_one_after_another(warehouse_engine):
    """Three days merged three at a time, an id re-sent on two of them: each id once, on its newest version's day."""
    stage(warehouse_engine, "file-1", *(purchase(f"e{n}", f"2025-08-0{1 + n % 3}T10:00:00Z") for n in range(30)))
    stage(warehouse_engine, "file-2", purchase("e0", "2025-08-03T12:00:00Z", "11.00"))
    counts = merge_days(warehouse_engine, [date(2025, 8, 1), date(2025, 8, 2), date(2025, 8, 3)], OPTIONS, at_once=3)
    assert counts.received == 31 and counts.inserted + counts.updated >= 30
    rows = events_rows(warehouse_engine)
    assert len(rows) == len({row[0] for row in rows}) == 30
    assert ("e0", datetime(2025, 8, 3, 12, tzinfo=UTC), pytest.approx(11)) in rows
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM staging_status WHERE status = 'pending'")) == 0
