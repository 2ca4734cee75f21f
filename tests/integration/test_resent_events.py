"""Re-sent events on a real PostgreSQL: a record whose version is in ``events`` unchanged is recognized at ingest,
claimed in the event ledger and never staged again, and the newest arrival still wins."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
from sqlalchemy import text

from etl_assets.quality.reconciliation import reconcile_batches, reconcile_day
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.records import ParsedRecord
from etl_assets.warehouse.staging import (
    RESENT_SAMPLE,
    BatchEntry,
    PreparedBatch,
    prepare_batch,
    record_batch,
    stage_prepared,
    stage_records,
)
from tests.harness import ACCEPTED, merge_day, stage_payloads

DAY = date(2025, 8, 1)


def purchase(event_id: str, price: str = "10.00", email: str | None = None) -> dict:
    record = {
        "id": event_id,
        "type": "purchase",
        "timestamp": "2025-08-01T10:00:00Z",
        "user": {"id": "u1"},
        "product": {"id": "p1", "price": price, "currency": "EUR", "quantity": 1},
    }
    if email:
        record["email"] = email
    return record


def prices(engine) -> dict[str, float]:
    with engine.connect() as conn:
        return {event_id: float(price) for event_id, price in conn.execute(text("SELECT event_id, price FROM events"))}


def staged_ids(engine, batch_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(text("SELECT event_id FROM staging_events WHERE batch_id = :b ORDER BY id"), {"b": batch_id})
        )


def assert_reconciled(engine) -> None:
    assert reconcile_day(engine, DAY).balanced
    assert [batch.problem for batch in reconcile_batches(engine, 3650)] == [None] * len(reconcile_batches(engine, 3650))


def test_a_resent_file_stages_only_what_changed_and_reconciles(warehouse_engine):
    stage_payloads(warehouse_engine, "f1", [purchase("e1"), purchase("e2"), purchase("e3")])
    merge_day(warehouse_engine, DAY)

    resent = stage_payloads(
        warehouse_engine,
        "f2",
        [purchase("e3"), purchase("e2", "99.00"), purchase("e1"), purchase("e4"), purchase("e4", "4.00")],
    )

    # e1 and e3 are in events as sent; e2 changed, e4 is new (sent twice in the file: both versions staged).
    assert (resent.records, resent.staged, resent.resent) == (5, 3, 2)
    assert staged_ids(warehouse_engine, "f2") == ["e2", "e4", "e4"]
    merged = merge_day(warehouse_engine, DAY)
    assert (merged.received, merged.inserted, merged.updated, merged.duplicates) == (3, 1, 1, 1)
    assert prices(warehouse_engine) == {"e1": 10.0, "e2": 99.0, "e3": 10.0, "e4": 4.0}
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT resent_count FROM raw_batches WHERE batch_id = 'f2'")) == 2
    assert_reconciled(warehouse_engine)


def test_a_resend_wins_over_a_version_staged_before_it_and_loses_to_one_staged_after(warehouse_engine):
    stage_payloads(warehouse_engine, "f1", [purchase("e1"), purchase("e2")])
    merge_day(warehouse_engine, DAY)
    stage_payloads(warehouse_engine, "changed", [purchase("e1", "20.00"), purchase("e2", "20.00")])
    # Before that change merges, the first version of both arrives again: it is the newest arrival.
    assert stage_payloads(warehouse_engine, "resent", [purchase("e1"), purchase("e2")]).resent == 2
    stage_payloads(warehouse_engine, "later", [purchase("e2", "30.00")])

    merged = merge_day(warehouse_engine, DAY)

    assert prices(warehouse_engine) == {"e1": 10.0, "e2": 30.0}
    assert (merged.superseded, merged.updated) == (1, 1)  # e1's change lost to the re-send; e2's last version won
    assert_reconciled(warehouse_engine)


def test_a_resend_is_staged_when_the_transform_would_read_it_differently(warehouse_engine):
    def stage_with(batch_id: str, pii: PiiPolicy, accepted: AcceptedTimes = ACCEPTED):
        record_batch(
            warehouse_engine,
            batch_id=batch_id,
            source="s3",
            source_uri=f"s3://b/{batch_id}",
            archive_key=None,
            sha256="0" * 64,
            byte_count=1,
        )
        payload = purchase("e1", email="ann@example.com")
        records = [ParsedRecord(1, payload, orjson.dumps(payload).decode())]
        return stage_records(warehouse_engine, batch_id, "s3", records, accepted, pii=pii)

    stage_with("f1", PiiPolicy(key=b"first key"))
    merge_day(warehouse_engine, DAY, pii=PiiPolicy(key=b"first key"))

    assert stage_with("same key", PiiPolicy(key=b"first key")).resent == 1
    # Another key makes another pseudonym: the record is staged and merged again.
    assert stage_with("rotated key", PiiPolicy(key=b"second key")).staged == 1
    # Past the window the platform accepts, it is quarantined, as any record there is.
    later = AcceptedTimes(datetime(2025, 9, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    outside = stage_with("outside the window", PiiPolicy(key=b"first key"), later)
    assert (outside.resent, outside.staged, outside.quarantined) == (0, 0, 1)


def test_a_new_file_is_not_looked_up_past_its_first_ids(warehouse_engine):
    stage_payloads(warehouse_engine, "f1", [purchase("known")])
    merge_day(warehouse_engine, DAY)
    payloads = [purchase(f"new-{n}") for n in range(RESENT_SAMPLE)] + [purchase("known")]

    counts = stage_payloads(warehouse_engine, "f2", payloads)

    # Its first ids are all new: the chunk streams into staging, the known event with it (the merge finds it
    # unchanged).
    assert (counts.staged, counts.resent) == (RESENT_SAMPLE + 1, 0)
    assert merge_day(warehouse_engine, DAY).unchanged == 1
    assert_reconciled(warehouse_engine)


def test_small_batches_staged_together_claim_what_is_in_events_and_keep_their_order(warehouse_engine):
    def batch(batch_id: str, *payloads: dict) -> PreparedBatch:
        entry = BatchEntry(batch_id, "segment", f"collector:{batch_id}", None, "0" * 64, 1)
        records = [ParsedRecord(n, p, orjson.dumps(p).decode()) for n, p in enumerate(payloads, 1)]
        return prepare_batch(entry, records, ACCEPTED)

    stage_prepared(warehouse_engine, [batch("flush-1", purchase("e1"), purchase("e2"))])
    merge_day(warehouse_engine, DAY)

    # A client re-sends both; in a later request of the same group, e2 changes: the later version must win.
    resent, changed = stage_prepared(
        warehouse_engine, [batch("flush-2", purchase("e1"), purchase("e2")), batch("flush-3", purchase("e2", "7.00"))]
    )

    assert (resent.staged, resent.resent) == (1, 1)  # e1 claimed; e2 is sent twice in the group: staged both times
    assert (changed.staged, changed.resent) == (1, 0)
    merge_day(warehouse_engine, DAY)
    assert prices(warehouse_engine) == {"e1": 10.0, "e2": 7.0}
    assert_reconciled(warehouse_engine)
