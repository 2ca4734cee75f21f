"""What the schema promises, checked against PostgreSQL itself."""

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from etl_assets.warehouse.partitions import ensure_event_partitions, list_event_partitions
from etl_assets.warehouse.schema import events, staging_events


def _event(event_id: str, occurred_at: datetime, **extra):
    row = {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "event_type": "purchase",
        "user_id": "u1",
        "person_id": "u1",
        "source": "test",
        "batch_id": "b1",
        "content_hash": "0" * 32,
        "ingested_at": occurred_at,
    }
    row.update(extra)
    return row


def test_events_is_partitioned_by_day(warehouse_engine):
    with warehouse_engine.begin() as conn:
        kind = conn.execute(text("SELECT pg_get_partkeydef('events'::regclass)")).scalar_one()
    assert kind == "RANGE (occurred_at)"


def test_an_event_needs_its_days_partition(warehouse_engine):
    with pytest.raises(DBAPIError, match="no partition of relation"), warehouse_engine.begin() as conn:
        conn.execute(insert(events).values(_event("e1", datetime(2025, 8, 1, 12, tzinfo=UTC))))


def test_rows_land_in_the_partition_of_their_utc_day(warehouse_engine):
    with warehouse_engine.begin() as conn:
        created = ensure_event_partitions(conn, [date(2025, 8, 1), date(2025, 8, 2)])
        assert created == ["events_p20250801", "events_p20250802"]
        assert ensure_event_partitions(conn, [date(2025, 8, 1)]) == []
        conn.execute(
            insert(events),
            [
                _event("late", datetime(2025, 8, 1, 23, 59, 59, tzinfo=UTC)),
                _event("midnight", datetime(2025, 8, 2, 0, 0, tzinfo=UTC)),
            ],
        )
        placed = dict(conn.execute(text("SELECT event_id, tableoid::regclass::text FROM events")).all())
    assert placed == {"late": "events_p20250801", "midnight": "events_p20250802"}
    with warehouse_engine.connect() as conn:
        assert list_event_partitions(conn) == ["events_p20250801", "events_p20250802"]


def test_event_type_and_price_are_constrained(warehouse_engine):
    with warehouse_engine.begin() as conn:
        ensure_event_partitions(conn, [date(2025, 8, 1)])
    moment = datetime(2025, 8, 1, 12, tzinfo=UTC)
    for bad in ({"event_type": "teleport"}, {"price": -1}):
        with pytest.raises(IntegrityError), warehouse_engine.begin() as conn:
            conn.execute(insert(events).values(_event("e1", moment, **bad)))


def test_a_staged_record_is_unique_by_batch_and_position(warehouse_engine):
    row = {"batch_id": "b1", "record_no": 1, "source": "test", "payload": {"id": "e1"}}
    with warehouse_engine.begin() as conn:
        conn.execute(insert(staging_events).values(row))
        status = conn.execute(text("SELECT status FROM staging_status")).scalar_one()
    assert status == "pending"
    with pytest.raises(IntegrityError), warehouse_engine.begin() as conn:
        conn.execute(insert(staging_events).values(row))
