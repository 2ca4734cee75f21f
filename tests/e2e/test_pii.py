"""No PII in clear reaches ``events`` or a daily table; the raw archive keeps it, encrypted, as received.

Two landing files (JSON lines and CSV) carry emails, IP addresses and phone numbers at the top level, in
``properties``, ``context.ip``, ``traits.email``, as a user id and inside a URL. They run through the real
sensors and runs with ETL_PII_KEY set: every row of ``events`` and of each daily table, read whole as text,
holds none of the clear values, and holds their pseudonyms instead (one person, one pseudonym: distinct users
still count). Without a key, the same data stops the day's run with one line and loads nothing.
"""

import json
import re

import pytest
from sqlalchemy import text

from etl_assets.transform.pii import pseudonymize
from etl_assets.warehouse.schema import DAILY_TABLES
from tests.conftest import TEST_PII_KEY
from tests.harness import pipeline

KEY = TEST_PII_KEY.encode()


def hidden(value: str) -> str:
    return pseudonymize(value, KEY)


RECORDS = [
    {
        "id": "p1",
        "type": "page_view",
        "timestamp": "2025-08-02T09:00:00Z",
        "user": {"id": "ann@example.com", "email": "ann@example.com"},
        "session_id": "s1",
        "context": {"ip": "203.0.113.7", "page": {"url": "https://shop.example/"}},
        "properties": {"phone": "+1 555 010 0001", "referrer_email": "Ann@Example.com"},
    },
    {
        "id": "p2",
        "type": "product_view",
        "timestamp": "2025-08-02T09:01:00Z",
        "userId": " ANN@example.com",
        "session_id": "s1",
        "traits": {"email": "ANN@EXAMPLE.COM", "phone_number": "+15550100001"},
        "properties": {"product_id": "sku1", "email_address": "ann@example.com", "ip_address": "198.51.100.23"},
    },
    {
        "id": "p3",
        "type": "purchase",
        "timestamp": "2025-08-02T10:00:00Z",
        "user_id": "u-bob",
        "email": "bob@example.org",
        "phone_number": "+44 20 7946 0000",
        "context": {"ip": "2001:db8::42"},
        "product_id": "sku1",
        "price": "10.00",
        "currency": "EUR",
        "page_url": "https://shop.example/thanks?email=bob%40example.org",
    },
    {
        "id": "p4",
        "type": "Order Completed",
        "timestamp": "2025-08-02T10:05:00Z",
        "user_id": "u-bob",
        "properties": {
            "order_id": "o4",
            "currency": "EUR",
            "coupon": "for dave@example.com",
            "products": [
                {"product_id": "sku1", "price": 10, "quantity": 1},
                {"product_id": "sku2", "price": 5, "name": "gift card for dave@example.com", "coupon": "192.0.2.5"},
            ],
        },
    },
]
CSV = (
    b"id,type,timestamp,user_id,email,ip,phone\r\n"
    b"c1,page_view,2025-08-02T11:00:00Z,carol@example.net,carol@example.net,192.0.2.99,07700 900123\r\n"
)
FILES = {
    "landing/2025-08-02/pii.jsonl": b"".join(json.dumps(record).encode() + b"\n" for record in RECORDS),
    "landing/2025-08-02/pii.csv": CSV,
}
CLEAR_VALUES = [
    "ann@example.com",
    "203.0.113.7",
    "+1 555 010 0001",
    "5550100001",
    "198.51.100.23",
    "bob@example.org",
    "bob%40example.org",
    "+44 20 7946 0000",
    "2079460000",
    "2001:db8::42",
    "carol@example.net",
    "192.0.2.99",
    "07700 900123",
    "07700900123",
    "dave@example.com",
    "192.0.2.5",
]


def rows_as_text(engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return [row.lower() for row in conn.scalars(text(f"SELECT t::text FROM {table} t"))]


def test_no_clear_pii_reaches_events_order_lines_or_the_daily_tables(definitions, s3, buckets, warehouse_engine):
    for key, body in FILES.items():
        s3.put_object(Bucket=buckets["landing"], Key=key, Body=body)
    with pipeline(definitions) as run:
        run.settle()
        assert run.runs and all(result.success for result in run.runs)

    tables = ("events", "order_lines", *(t.name for t in DAILY_TABLES))
    searched = {table: rows_as_text(warehouse_engine, table) for table in tables}
    assert all(searched.values()), "every table has rows to search"
    for table, rows in searched.items():
        for clear in CLEAR_VALUES:
            assert not any(clear.lower() in row for row in rows), f"{clear!r} found in {table}"

    with warehouse_engine.connect() as conn:
        events = {row.event_id: row for row in conn.execute(text("SELECT * FROM events"))}
        distinct_users = conn.scalar(text("SELECT count(DISTINCT user_id) FROM events"))
        activity = dict(conn.execute(text("SELECT user_id, events FROM user_daily_activity")).all())
    ann, bob, carol = hidden("ann@example.com"), hidden("bob@example.org"), hidden("carol@example.net")
    assert set(events) == {"p1", "p2", "p3", "p4", "c1"}
    # one person, one pseudonym, whichever field and spelling carried the email
    assert events["p1"].user_id == events["p2"].user_id == ann
    assert events["c1"].user_id == carol
    assert events["p3"].user_id == "u-bob"  # not PII: left as sent
    assert distinct_users == 3
    assert activity == {ann: 2, "u-bob": 2, carol: 1}
    p1, p2, p3, c1 = (events[name].properties for name in ("p1", "p2", "p3", "c1"))
    assert p1["user"]["email"] == ann and p1["referrer_email"] == ann
    assert p1["context"]["ip"] == hidden("203.0.113.7")
    assert p1["phone"] == p2["traits"]["phone_number"] == hidden("+15550100001")
    assert p2["traits"]["email"] == p2["email_address"] == ann
    assert p2["ip_address"] == hidden("198.51.100.23")
    assert p3["email"] == bob and p3["context"]["ip"] == hidden("2001:db8::42")
    assert events["p3"].page_url == f"https://shop.example/thanks?email={bob}"
    assert (c1["email"], c1["ip"], c1["phone"]) == (carol, hidden("192.0.2.99"), hidden("07700900123"))
    assert (events["p3"].price, events["p3"].product_id, events["p3"].session_id) == (10, "sku1", None)

    # The raw archive is the audit copy: the bytes as received, PII in clear, encrypted at rest.
    with warehouse_engine.connect() as conn:
        archived = dict(conn.execute(text("SELECT source_uri, archive_key FROM raw_batches")).all())
    for key, body in FILES.items():
        archive_key = archived[f"s3://{buckets['landing']}/{key}"]
        stored = s3.get_object(Bucket=buckets["archive"], Key=archive_key)
        assert stored["ServerSideEncryption"] == "AES256"
        assert stored["Body"].read() == body
    assert b"ann@example.com" in FILES["landing/2025-08-02/pii.jsonl"]


@pytest.mark.parametrize("job_name", ["daily_events_job", "redrive_quarantine_job"])
def test_pii_without_a_key_stops_the_run_with_one_line_and_loads_nothing(
    definitions, s3, buckets, warehouse_engine, monkeypatch, job_name
):
    monkeypatch.delenv("ETL_PII_KEY")
    for key, body in FILES.items():
        s3.put_object(Bucket=buckets["landing"], Key=key, Body=body)
    with pipeline(definitions) as run:
        run.tick_and_run("landing_files_sensor")  # ingest needs no key: staging holds what was received
        [request] = run.tick("staged_days_sensor")
        result = definitions.resolve_job_def(job_name).execute_in_process(
            instance=run.instance, tags=request.tags, raise_on_error=False
        )
    assert not result.success
    failures = result.get_step_failure_events()
    assert failures
    message = failures[0].step_failure_data.user_failure_data.description
    where, rest = re.fullmatch(r"a staged record holds PII \(([\w.]+)\) and (.*)", message).groups()
    assert where in {"user_id", "email", "ip", "phone", "user.id", "user.email", "context.ip"}
    assert rest == (
        "ETL_PII_KEY is unset: set ETL_PII_KEY to a secret of 16+ characters (e.g. `openssl rand -hex 32`) so PII "
        "is pseudonymized; nothing was loaded"
    )
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM events")) == 0
        assert conn.scalar(text("SELECT count(*) FROM staging_status WHERE status <> 'pending'")) == 0
        assert conn.scalar(text("SELECT count(*) FROM quarantine WHERE stage = 'normalize'")) == 0
