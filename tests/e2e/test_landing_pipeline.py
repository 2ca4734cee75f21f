"""Three landing files (JSONL, CSV, gzip JSONL) through the real sensors and runs into every table.

The files hold duplicates within and across files, a late event and bad lines of each kind; the test
knows by hand what every table must hold. Putting the files again and re-running every day changes
nothing; a re-upload with new content runs again and updates only the changed event.
"""

import gzip
import json
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import text

from etl_assets.defs.ingest import requested_objects
from tests.harness import pipeline, table_rows, warehouse_snapshot


def jsonl(*records: dict | bytes) -> bytes:
    return b"".join(
        (record if isinstance(record, bytes) else json.dumps(record).encode()) + b"\n" for record in records
    )


def event(event_id: str, kind: str, timestamp: str, user: str, **fields) -> dict:
    record = {"id": event_id, "type": kind, "timestamp": timestamp, "user": {"id": user}}
    record.update(fields)
    return record


P1 = {"id": "p1", "price": "10.00", "currency": "EUR"}
P2 = {"id": "p2", "price": "5.50", "currency": "USD"}

FILE_A = jsonl(
    event("e1", "page_view", "2025-08-02T09:00:00Z", "u1", page={"url": "https://shop.example/"}),
    event("e2", "product_view", "2025-08-02T09:01:00Z", "u1", product=P1),
    event("e3", "add_to_cart", "2025-08-02T09:02:00Z", "u1", product={**P1, "quantity": 2}),
    event("e4", "purchase", "2025-08-02T09:05:00+02:00", "u1", product={**P1, "quantity": 2}, order={"id": "o1"}),
    b'{"id": "e5", "type": "page_view", "timest',
    event("e6", "product_view", "2025-08-02T10:00:00Z", "u2", product=P2),
)
FILE_B = (
    b"id,type,timestamp,user_id,anonymous_id,session_id,product_id,quantity,price,currency,order_id,page_url,referrer\r\n"
    b"e6,product_view,2025-08-02T10:00:00Z,u2,,,p2,,5.50,USD,,,\r\n"
    b"e7,add_to_cart,2025-08-02T10:05:00Z,u2,,,p2,1,5.50,USD,,,\r\n"
    b"e99,page_view,2025-08-02T10:06:00Z,u2\r\n"
    b'e8,page_view,2025-08-02T11:00:00Z,,a9,,,,,,,https://shop.example/sale,"https://news.example/?a=1,b=2"\r\n'
    b"e9,purchase,2025-08-02T10:40:00Z,u3,,,p2,1,5.50,USD,o2,,\r\n"
)
FILE_C = gzip.compress(
    jsonl(
        event("e10", "page_view", "2025-08-03T08:00:00Z", "u3"),
        event("e11", "product_view", "2025-08-01T23:59:00Z", "u3", product=P2),
        b'{"id": "e12", "type": "page_view", "timestamp": "2025-08-03T08:01:00Z", "user": {"id": "u3\\u0000"}}',
        event("e2", "product_view", "2025-08-02T09:01:00Z", "u1", product=P1),
        event("e13", "", "2025-08-03T08:02:00Z", "u3"),
    ),
    mtime=0,
)
FILES = {
    "landing/2025-08-02/a.jsonl": FILE_A,
    "landing/2025-08-02/b.csv": FILE_B,
    "landing/2025-08-03/c.jsonl.gz": FILE_C,
}
EXPECTED_DAYS = {
    date(2025, 8, 1): {"e11"},
    date(2025, 8, 2): {"e1", "e2", "e3", "e4", "e6", "e7", "e8", "e9"},
    date(2025, 8, 3): {"e10"},
}
EXPECTED_QUARANTINE = {
    ("landing/2025-08-02/a.jsonl", 5, "parse"),
    ("landing/2025-08-02/b.csv", 4, "parse"),
    ("landing/2025-08-03/c.jsonl.gz", 3, "parse"),
    ("landing/2025-08-03/c.jsonl.gz", 5, "normalize"),
}


def put_files(s3, bucket: str, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_three_files_become_exactly_the_expected_tables(definitions, s3, buckets, warehouse_engine):
    put_files(s3, buckets["landing"], FILES)
    with pipeline(definitions) as run:
        ingest_requests = run.tick("landing_files_sensor")
        [request] = ingest_requests  # three small files, one run
        assert sorted(obj.key for obj in requested_objects(request.run_config)) == sorted(FILES)
        run.execute("landing_files_sensor", ingest_requests)

        day_requests = run.tick("staged_days_sensor")
        assert [
            (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in day_requests
        ] == [("2025-08-01", "2025-08-03")]
        run.execute("staged_days_sensor", day_requests)
        assert run.tick("staged_days_sensor") == []

        rows = table_rows(warehouse_engine, "events", "event_id")
        by_day: dict[date, set[str]] = {}
        for row in rows:
            by_day.setdefault(row["occurred_at"].astimezone(UTC).date(), set()).add(row["event_id"])
        assert by_day == EXPECTED_DAYS
        assert len(rows) == len({row["event_id"] for row in rows})
        e4 = next(row for row in rows if row["event_id"] == "e4")
        assert e4["occurred_at"] == datetime(2025, 8, 2, 7, 5, tzinfo=UTC)
        assert (e4["price"], e4["currency"], e4["quantity"], e4["order_id"]) == (Decimal("10.0000"), "EUR", 2, "o1")
        e8 = next(row for row in rows if row["event_id"] == "e8")
        assert (e8["user_id"], e8["anonymous_id"], e8["referrer"]) == (None, "a9", "https://news.example/?a=1,b=2")

        quarantined = table_rows(warehouse_engine, "quarantine", "batch_id, record_no")
        found = {(row["batch_id"].split("#")[0], row["record_no"], row["stage"]) for row in quarantined}
        assert found == EXPECTED_QUARANTINE
        assert all(row["reason"] for row in quarantined)

        with warehouse_engine.connect() as conn:
            received = conn.scalar(text("SELECT sum(record_count) FROM raw_batches"))
            statuses = dict(conn.execute(text("SELECT status, count(*) FROM staging_status GROUP BY status")).all())
            archived = conn.execute(text("SELECT archive_key, sha256 FROM raw_batches")).all()
        duplicates = 2  # e6 in b.csv, e2 in c.jsonl.gz
        assert received == 16 == len(rows) + len(quarantined) + duplicates
        assert statuses == {"succeeded": 12, "failed": 1}

        reconciled = [e for e in run.check_evaluations("events_reconciled") if e.partition is not None]
        assert sorted(e.partition for e in reconciled) == [day.isoformat() for day in sorted(EXPECTED_DAYS)]
        assert all(evaluation.passed for evaluation in reconciled)
        assert sum(e.metadata["records received"].value for e in reconciled) == 13  # the 16 less 3 never staged
        assert sum(e.metadata["rows in events"].value for e in reconciled) == len(rows)
        assert sum(e.metadata["duplicates skipped"].value for e in reconciled) == duplicates
        assert sum(e.metadata["rows quarantined"].value for e in reconciled) == 1
        assert all(evaluation.passed for evaluation in run.check_evaluations("batches_reconciled", "data_quality_job"))
        for key, sha256 in archived:
            head = s3.head_object(Bucket=buckets["archive"], Key=key)
            assert key.startswith("raw/source=s3/ingest_date=")
            assert head["Metadata"]["sha256"] == sha256

        funnel = table_rows(warehouse_engine, "daily_funnel", "day")
        day2 = next(row for row in funnel if row["day"] == date(2025, 8, 2))
        assert (day2["viewers"], day2["carters"], day2["purchasers"]) == (2, 2, 1)
        assert (day2["view_to_cart_rate"], day2["cart_to_purchase_rate"]) == (Decimal("1.000000"), Decimal("0.500000"))
        sales = {
            (row["product_id"], row["currency"]): (row["orders"], row["units_sold"], row["gross_revenue"])
            for row in table_rows(warehouse_engine, "product_daily_sales", "day, product_id")
            if row["day"] == date(2025, 8, 2)
        }
        assert sales == {("p1", "EUR"): (1, 2, Decimal("20.0000")), ("p2", "USD"): (1, 1, Decimal("5.5000"))}
        activity = {
            row["user_id"]: row
            for row in table_rows(warehouse_engine, "user_daily_activity", "day, user_id")
            if row["day"] == date(2025, 8, 2)
        }
        assert set(activity) == {"u1", "u2", "u3", "a9"}
        u1 = activity["u1"]
        assert (
            u1["events"],
            u1["page_views"],
            u1["product_views"],
            u1["add_to_carts"],
            u1["purchases"],
            u1["sessions"],
        ) == (4, 1, 1, 1, 1, 2)
        sessions = [
            row
            for row in table_rows(warehouse_engine, "sessions", "day, session_key")
            if row["day"] == date(2025, 8, 2)
        ]
        assert len(sessions) == 5
        assert {row["user_id"] for row in sessions if row["converted"]} == {"u1", "u3"}

        before = warehouse_snapshot(warehouse_engine)
        put_files(s3, buckets["landing"], FILES)
        assert run.tick("landing_files_sensor") == []
        job = definitions.resolve_job_def("daily_events_job")
        rerun = job.execute_in_process(
            instance=run.instance,
            tags={
                "dagster/asset_partition_range_start": "2025-08-01",
                "dagster/asset_partition_range_end": "2025-08-03",
            },
            run_config={"ops": {"events": {"config": {"reprocess_all": True}}}},
        )
        assert rerun.success
        assert warehouse_snapshot(warehouse_engine) == before

        changed = FILE_A.replace(b"https://shop.example/", b"https://shop.example/home")
        put_files(s3, buckets["landing"], {"landing/2025-08-02/a.jsonl": changed})
        overdue = json.loads(run.cursors["landing_files_sensor"]) | {"last_sweep": 0.0}
        reupload = run.tick("landing_files_sensor", cursor=json.dumps(overdue))
        assert [request.tags["etl/landing_key"] for request in reupload] == ["landing/2025-08-02/a.jsonl"]
        assert [request.run_key for request in reupload] != [request.run_key]
        run.execute("landing_files_sensor", reupload)
        run.tick_and_run("staged_days_sensor")
        after = {row["event_id"]: row for row in table_rows(warehouse_engine, "events", "event_id")}
        assert after["e1"]["page_url"] == "https://shop.example/home"
        unchanged = {row["event_id"]: row for row in before["events"]}
        assert {event_id for event_id in after if after[event_id] != unchanged[event_id]} == {"e1"}
