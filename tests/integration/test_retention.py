"""Retention on a real PostgreSQL and S3 endpoint, through the real ``retention_job``.

The warehouse holds an old batch (merged, one record rejected), an old batch still pending, and a recent
batch on the same event day as the old one; the archive holds old and recent objects. A dry run deletes
nothing and reports what it would; a real run deletes exactly the old merged rows and the old archive
objects, keeps pending and recent ones, and leaves the day reconciling; a replay of the pruned batch fails
with a clear message.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from etl_assets.quality.reconciliation import reconcile_batches, reconcile_day
from etl_assets.sources.replay import CannotReplay, replay_batch
from etl_assets.transform.pii import PiiPolicy
from etl_assets.warehouse.staging import find_batch
from tests.harness import ACCEPTED, merge_day, stage_payloads

DAY = date(2025, 3, 1)
PENDING_DAY = date(2025, 3, 2)
TODAY = datetime.now(UTC).date()
OLD = TODAY - timedelta(days=200)
PII = PiiPolicy(("email", "ip", "phone"), b"retention-test-key-0123")

OLD_ARCHIVE_KEY = f"raw/source=s3/ingest_date={OLD.isoformat()}/etag1/landing/old.jsonl"
OLD_ORPHAN_KEY = f"raw/source=api:demo/ingest_date={OLD.isoformat()}/page-1.json"
RECENT_KEY = f"raw/source=s3/ingest_date={TODAY.isoformat()}/etag2/landing/new.jsonl"
UNDATED_KEY = "raw/stray.txt"  # no ingest_date: judged by LastModified (now), so kept
OUTSIDE_KEY = f"notes/ingest_date={OLD.isoformat()}/x.txt"  # not under raw/: never touched


def event(event_id: str, day: date, kind: str = "page_view") -> dict:
    return {"id": event_id, "type": kind, "timestamp": f"{day.isoformat()}T10:00:00Z", "user_id": "u1"}


def merge(engine: Engine, day: date) -> None:
    merge_day(engine, day, pii=PII)


def scalar(engine: Engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.scalar(text(sql), params)


def keys(s3, bucket: str) -> set[str]:
    return {entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.fixture
def aged(warehouse_engine: Engine, s3, buckets) -> Engine:
    engine = warehouse_engine
    stage_payloads(engine, "old-merged", [event("o1", DAY), event("o2", DAY), event("o3", DAY, "")])
    stage_payloads(engine, "recent", [event("r1", DAY), event("r2", DAY)])
    merge(engine, DAY)
    stage_payloads(engine, "old-pending", [event("p1", PENDING_DAY), event("p2", PENDING_DAY)])
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE staging_events SET ingested_at = ingested_at - interval '200 days' "
                "WHERE batch_id IN ('old-merged', 'old-pending')"
            )
        )
        conn.execute(
            text(
                "UPDATE raw_batches SET received_at = received_at - interval '200 days', archive_key = :key "
                "WHERE batch_id = 'old-merged'"
            ),
            {"key": OLD_ARCHIVE_KEY},
        )
        conn.execute(
            text(
                "UPDATE raw_batches SET received_at = received_at - interval '200 days' WHERE batch_id = 'old-pending'"
            )
        )
    for key in (OLD_ARCHIVE_KEY, OLD_ORPHAN_KEY, RECENT_KEY, UNDATED_KEY, OUTSIDE_KEY):
        s3.put_object(Bucket=buckets["archive"], Key=key, Body=b"0123456789", ServerSideEncryption="AES256")
    # the ledger's checksum of the old batch, so that only "pruned" can stop its replay
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE raw_batches SET sha256 = encode(sha256('0123456789'::bytea), 'hex') WHERE batch_id = 'old-merged'"
            )
        )
    return engine


def statuses(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT batch_id, status FROM staging_status ORDER BY batch_id, record_no")).all()
    found: dict[str, list[str]] = {}
    for batch_id, status in rows:
        found.setdefault(batch_id, []).append(status)
    return found


def run_retention(definitions: dg.Definitions, **config) -> dict:
    result = definitions.resolve_job_def("retention_job").execute_in_process(
        run_config={"ops": {"prune_expired_data": {"config": config}}} if config else None
    )
    assert result.success
    [materialization] = [
        event.event_specific_data.metadata
        for event in result.all_events
        if event.event_type_value == "STEP_OUTPUT" and event.event_specific_data.metadata
    ]
    return {name: value.value for name, value in materialization.items()}


def test_a_dry_run_deletes_nothing_and_reports_what_it_would(definitions, aged, s3, buckets):
    before_rows = statuses(aged)
    before_keys = keys(s3, buckets["archive"])
    report = run_retention(definitions)  # dry_run is the default
    assert report["dry run"] is True
    assert report["days kept"] == 90
    assert report["staging rows would delete"] == 3
    assert report["staging batches"] == 1
    assert report["old pending rows kept"] == 2
    assert report["archive objects would delete"] == 2
    assert report["archive bytes would delete"] == 20
    assert statuses(aged) == before_rows
    assert keys(s3, buckets["archive"]) == before_keys
    assert scalar(aged, "SELECT count(*) FROM retention_log") == 0
    assert scalar(aged, "SELECT count(*) FROM raw_batches WHERE archive_pruned_at IS NOT NULL") == 0


def test_a_real_run_deletes_exactly_the_old_merged_rows_and_old_objects(definitions, aged, s3, buckets):
    events_before = scalar(aged, "SELECT count(*) FROM events")
    assert statuses(aged) == {
        "old-merged": ["succeeded", "succeeded", "failed"],
        "old-pending": ["pending", "pending"],
        "recent": ["succeeded", "succeeded"],
    }
    report = run_retention(definitions, dry_run=False)
    assert (report["dry run"], report["staging rows deleted"], report["archive objects deleted"]) == (False, 3, 2)
    assert report["batches marked archive-pruned"] == 1
    assert statuses(aged) == {"old-pending": ["pending", "pending"], "recent": ["succeeded", "succeeded"]}
    assert keys(s3, buckets["archive"]) == {RECENT_KEY, UNDATED_KEY, OUTSIDE_KEY}

    # What stays: events, the quarantined record, the ledger row (marked), the pruned day logged.
    assert scalar(aged, "SELECT count(*) FROM events") == events_before == 4
    assert scalar(aged, "SELECT count(*) FROM quarantine WHERE batch_id = 'old-merged'") == 1
    old = find_batch(aged, "old-merged")
    assert old is not None and old["archive_pruned_at"] is not None and old["staging_pruned_at"] is not None
    assert old["archive_key"] == OLD_ARCHIVE_KEY
    assert find_batch(aged, "old-pending")["staging_pruned_at"] is None
    with aged.connect() as conn:
        assert conn.execute(text("SELECT day, staging_rows FROM retention_log")).all() == [(DAY, 3)]

    # The day still reconciles: its events whose record was pruned are accounted for, the rest still adds up.
    day = reconcile_day(aged, DAY)
    assert (day.balanced, day.pruned_records, day.total("in_events"), day.events_rows) == (True, 2, 2, 4)
    assert all(batch.batch_id != "old-merged" for batch in reconcile_batches(aged, 365))
    with aged.begin() as conn:  # without the log entry, the same day would not balance
        conn.execute(text("DELETE FROM retention_log"))
    assert not reconcile_day(aged, DAY).balanced

    # A second run finds nothing more to delete.
    again = run_retention(definitions, dry_run=False)
    assert (again["staging rows deleted"], again["archive objects deleted"]) == (0, 0)


def test_the_days_override_and_pending_rows_are_never_deleted(definitions, aged, s3, buckets):
    report = run_retention(definitions, dry_run=False, days=0)  # keep only today
    # Rows ingested today are not older than today's midnight: only the 200-day-old merged rows go.
    assert report["days kept"] == 0
    assert report["staging rows deleted"] == 3
    assert statuses(aged)["old-pending"] == ["pending", "pending"]
    assert RECENT_KEY in keys(s3, buckets["archive"])


def test_a_replay_of_a_pruned_batch_fails_with_a_clear_message(definitions, aged, s3, buckets):
    run_retention(definitions, dry_run=False)
    batch = find_batch(aged, "old-merged")
    with pytest.raises(
        CannotReplay, match=r"batch old-merged: archive pruned by the retention job on \d{4}-\d{2}-\d{2}"
    ):
        replay_batch(s3, aged, batch, buckets["archive"], ACCEPTED, {})

    result = definitions.resolve_job_def("replay_job").execute_in_process(
        run_config={
            "ops": {"replay_archived_batches": {"config": {"first_day": OLD.isoformat(), "last_day": OLD.isoformat()}}}
        },
        raise_on_error=False,
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("1 of the 1 batches received")
    assert "archive pruned by the retention job" in message
    assert "\n" not in message


def test_a_replay_of_a_batch_whose_object_vanished_says_so(aged, s3, buckets):
    s3.delete_object(Bucket=buckets["archive"], Key=OLD_ARCHIVE_KEY)
    with pytest.raises(CannotReplay, match="is missing"):
        replay_batch(s3, aged, find_batch(aged, "old-merged"), buckets["archive"], ACCEPTED, {})
