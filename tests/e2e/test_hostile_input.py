"""Hostile landing files through the real path: the S3 endpoint, the landing sensor, the ingest runs, the merge
into ``events`` and its checks, against a real PostgreSQL.

Every input is either loaded as a user of the platform would expect (the test names which value lands in which
column) or quarantined with a reason that names the problem, no batch fails, and the totals reconcile: records
in = rows in ``events`` + rows in quarantine + duplicates skipped.

The files run once for the module (seventeen ingest runs, then one merge of the five days they touch); each test reads what
one hostile input became.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import orjson
import pytest
from sqlalchemy import Engine, text

from etl_assets.localstack.postgres import EmbeddedPostgres
from etl_assets.quality.drift import FIELD_NAME_CHARS
from etl_assets.quality.reconciliation import reconcile_batches, reconcile_day
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.records import NUL_REASON, TRUNCATED_REASON
from etl_assets.warehouse.engine import create_warehouse_engine
from tests.conftest import S3_CREDENTIALS, migrated_database, new_buckets, pipeline_variables
from tests.harness import pipeline

PREFIX = "landing/hostile/"
OUTSIDE_ACCEPTED = re.compile(r"^timestamp (\S+) is outside the accepted range 2025-01-01 \.\. \d{4}-\d{2}-\d{2}$")
TEN_MB = 10 * 1024 * 1024


def event(event_id: Any, timestamp: Any = "2025-09-01T10:00:00Z", kind: str = "page_view", **fields: Any) -> dict:
    return {"id": event_id, "type": kind, "timestamp": timestamp, "user_id": "u1", **fields}


def jsonl(*records: dict | bytes, line_end: bytes = b"\n") -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + line_end for r in records)


def nested_list(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- a: a byte-order mark, CRLF line ends, NUL bytes, invalid UTF-8 ---------------------------------------------
def raw_event(event_id: bytes, user_id: bytes, more: bytes = b"") -> bytes:
    """A JSON line written by hand, for bytes json.dumps would never write."""
    head = b'{"id": "%s", "type": "page_view", "timestamp": "2025-09-01T10:00:00Z", ' % event_id
    return head + b'"user_id": "%s"%s}' % (user_id, more)


NUL_RAW = raw_event(b"nul-raw", b"u\x001")
NUL_ESCAPED = raw_event(b"nul-escaped", b"u\\u00001")
LATIN1 = raw_event(b"latin-1", b"caf\xe9")
LATIN1_BAD_BYTE = LATIN1.index(b"\xe9") + 1
LONE_SURROGATE = raw_event(b"surrogate", b"\\ud800")
ESCAPED_BACKSLASH = raw_event(b"backslash", b"u1", b', "path": "C:\\\\u0000"')
FILE_A = b"\xef\xbb\xbf" + jsonl(
    event("bom-1", page_url="https://shop.example/"),
    event("crlf-2", referrer="https://search.example/"),
    NUL_RAW,
    NUL_ESCAPED,
    LATIN1,
    LONE_SURROGATE,
    ESCAPED_BACKSLASH,
    event("utf8-ok", user_id="Zoe\u0308", referrer="https://\u4f8b\u3048.jp/"),
    line_end=b"\r\n",
)

# --- b: CSV with a BOM, CRLF, quoted newlines and commas, CSV injection, invalid UTF-8, NUL ----------------------
CSV_LATIN1_ROW = b"csv-3,page_view,2025-09-01T10:00:00Z,caf\xe9,,,,,,"
FILE_B = (
    b"\xef\xbb\xbfid,type,timestamp,user_id,price,quantity,currency,page_url,referrer,note\r\n"
    b'csv-1,purchase,1756720800,u1,12.50,3,eur,https://shop.example/a,"https://news.example/?a=1,b=2",'
    b'"line one\r\nline two, with a comma"\r\n'
    b"csv-2,page_view,1756720800123,\"=cmd|' /C calc'!A0\",,,,"
    b'"=HYPERLINK(""http://evil.example"",""click"")",@SUM(A1:A2),-2+3\r\n' + CSV_LATIN1_ROW + b"\r\n"
    b'csv-4,page_view,2025-09-01T10:00:00Z,"u\x001",,,,,,\r\n'
    b"csv-5,purchase,2025-09-01 10:00:00,u2,twelve,,,,,\r\n"
)

# --- c: numbers as strings and strings as numbers, epoch seconds and milliseconds, ISO times, 1900 and 3000, SQL --
SQL_ID = "sql-1'; DROP TABLE events; --"
SQL_USER = "x' OR '1'='1"
SQL_URL = "https://shop.example/search?q=';DELETE FROM events;--"
SQL_NOTE = "Robert'); DROP TABLE students;--"
SQL_KEY = "'; TRUNCATE quarantine; --"
FILE_C = jsonl(
    event(1001, kind="purchase", user_id=42, product_id=7, price=19.99, quantity=2.0, currency="usd"),
    event("strings", kind="add_to_cart", price=" 12.50 ", quantity="3", product_id="p1", currency="EUR"),
    event("bad-quantity", kind="add_to_cart", quantity="2.5"),
    b'{"id": 123456789012345678901234567890, "type": "page_view", "timestamp": "2025-09-01T10:00:00Z", "user_id": "u1"}',
    event("123456789012345678901234567890"),
    event(18446744073709551615),
    event("epoch-s", 1756720800),
    event("epoch-ms", 1756720800123),
    event("epoch-s-text", "1756720800"),
    event("iso-offset", "2025-09-01T12:00:00+02:00"),
    event("iso-no-offset", "2025-09-01T10:00:00"),
    event("iso-fraction", "2025-09-01T10:00:00.250Z"),
    event("year-1900", "1900-01-01T00:00:00Z"),
    event("year-3000", "3000-01-01T00:00:00Z"),
    event("year-1900-epoch", -2208988800),
    event(SQL_ID, user_id=SQL_USER, page_url=SQL_URL, note=SQL_NOTE, **{SQL_KEY: "a key"}),
)

# --- d: JSON nested 1,000 deep, ids and keys longer than an index entry, a 10 MB record --------------------------
BLOB = (bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"") * (TEN_MB // 90 + 1))[:TEN_MB].decode()
LONG_KEY = "k" * 5000
FILE_D = jsonl(
    b'{"id": "deep-1000", "type": "page_view", "timestamp": "2025-09-02T10:00:00Z", "user_id": "u1", "tree": '
    + nested_list(1000)
    + b"}",
    b'{"id": ' + nested_list(999) + b', "type": "page_view", "timestamp": "2025-09-02T10:00:00Z", "user_id": "u1"}',
    b'{"id": "deep-1100", "type": "page_view", "timestamp": "2025-09-02T10:00:00Z", "tree": '
    + nested_list(1100)
    + b"}",
    event("big-10mb", "2025-09-02T10:00:00Z", blob=BLOB),
    event("L" * 5000, "2025-09-02T10:00:00Z"),
    event("long-user", "2025-09-02T10:00:00Z", user_id="\u00e9" * 1025),
    event("long-key", "2025-09-02T10:00:00Z", **{LONG_KEY: 1}),
    event("deep-day-ok", "2025-09-02T11:00:00Z"),
)


# --- e: a truncated gzip -----------------------------------------------------------------------------------------
def truncated_gzip_file() -> tuple[bytes, int]:
    """600 events of 2025-09-05, gzipped and cut at 60%; and how many whole lines the cut stream still holds."""
    plain = b"".join(
        orjson.dumps(event(f"t{number}", "2025-09-05T10:00:00Z", noise=zlib.crc32(bytes(number)) * number)) + b"\n"
        for number in range(600)
    )
    whole = gzip.compress(plain, mtime=0)
    cut = whole[: len(whole) * 6 // 10]
    readable = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(cut)
    return cut, readable.count(b"\n")


FILE_E, WHOLE_LINES_BEFORE_CUT = truncated_gzip_file()


# --- g: names that lie about the format ----------------------------------------------------------------------------
def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("events.csv", "id,type\ne1,page_view\n")
    return buffer.getvalue()


# --- j: identity calls with hostile ids and traits, and ones that cannot be read -------------------------------
FILE_J = jsonl(
    event("id-browse", "2025-09-03T09:00:00Z", user_id=None, anonymous_id="anon-hostile"),
    event(
        "id-login",
        "2025-09-03T09:05:00Z",
        kind="identify",
        user_id=SQL_USER,
        anonymous_id="anon-hostile",
        traits={SQL_KEY: SQL_NOTE, "nested": {"deep": [1, 2]}},
    ),
    event("id-bad-traits", "2025-09-03T09:06:00Z", kind="identify", traits="vip"),
    event("id-bad-alias", "2025-09-03T09:07:00Z", kind="alias", previousId={"id": 1}),
    event("id-group-no-id", "2025-09-03T09:08:00Z", kind="group", traits={"name": "x"}),
    event("id-alias-self", "2025-09-03T09:09:00Z", kind="alias", previousId="u1"),
)

SQL_NAMED_KEY = f"{PREFIX}h-'; DROP TABLE raw_batches; --.jsonl"
FILES = {
    f"{PREFIX}a-bom-crlf-encoding.jsonl": FILE_A,
    f"{PREFIX}b-bom-crlf-quoted.csv": FILE_B,
    f"{PREFIX}c-values.jsonl": FILE_C,
    f"{PREFIX}d-deep-long-big.jsonl": FILE_D,
    f"{PREFIX}e-truncated.jsonl.gz": FILE_E,
    f"{PREFIX}f-empty.jsonl": b"",
    f"{PREFIX}f-header-only.csv": b"id,type,timestamp\r\n",
    f"{PREFIX}f-empty.jsonl.gz": gzip.compress(b"", mtime=0),
    f"{PREFIX}g-jsonl-named.csv": jsonl(event("lie-csv-name", user_id="u7")),
    f"{PREFIX}g-csv-named.jsonl": b"id,type,timestamp,user_id\r\nlie-jsonl-name,page_view,2025-09-01T10:00:00Z,u7\r\n",
    f"{PREFIX}g-gzip-named.jsonl": gzip.compress(jsonl(event("lie-gzip-unnamed", user_id="u7")), mtime=0),
    f"{PREFIX}g-plain-named.jsonl.gz": jsonl(event("lie-gz-name", user_id="u7")),
    f"{PREFIX}g-zip-named.csv": zip_archive(),
    SQL_NAMED_KEY: jsonl(event("sql-key")),
    f"{PREFIX}i-dups-1.jsonl": jsonl(
        event("d1", "2025-09-03T10:00:00Z", page_url="https://shop.example/v1"),
        event("d1", "2025-09-03T10:00:00Z", page_url="https://shop.example/v2"),
        event("d2", "2025-09-03T11:00:00Z", kind="product_view", product_id="p1"),
    ),
    f"{PREFIX}j-identity.jsonl": FILE_J,
    f"{PREFIX}i-dups-2.jsonl": jsonl(
        event("d1", "2025-09-03T10:00:00Z", page_url="https://shop.example/v3"),
        event("d2", "2025-09-04T09:00:00Z", kind="product_view", product_id="p2"),
    ),
}


@dataclass
class Landed:
    engine: Engine
    batch_ids: dict[str, str]
    """Key → batch id (key#ETag)."""
    runs: list[dg.ExecuteInProcessResult]
    archive_bucket: str

    def batch(self, name: str) -> str:
        return self.batch_ids[name if name.startswith(PREFIX) else PREFIX + name]

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(text(sql), params).mappings()]

    def event(self, event_id: str) -> dict[str, Any]:
        (row,) = self.rows(
            "SELECT event_id, occurred_at, event_type, user_id, anonymous_id, product_id, quantity, price, currency, "
            "page_url, referrer, properties::text AS properties, quality_tags, batch_id FROM events "
            "WHERE event_id = :event_id",
            event_id=event_id,
        )
        row["properties"] = orjson.loads(row["properties"]) if row["properties"] else None
        return row

    def event_ids(self, name: str) -> set[str]:
        return {
            row["event_id"] for row in self.rows("SELECT event_id FROM events WHERE batch_id = :b", b=self.batch(name))
        }

    def quarantined(self, name: str) -> dict[int, dict[str, Any]]:
        """The file's quarantine rows by record number (the payload as text: psycopg cannot load 1,000 levels)."""
        rows = self.rows(
            "SELECT record_no, stage, reason, raw_record, payload::text AS payload, event_id, resolved_at "
            "FROM quarantine WHERE batch_id = :b ORDER BY record_no",
            b=self.batch(name),
        )
        return {row["record_no"]: row for row in rows}

    def ledger(self, name: str) -> dict[str, Any]:
        (row,) = self.rows("SELECT * FROM raw_batches WHERE batch_id = :b", b=self.batch(name))
        return row

    def staged(self, name: str) -> dict[int, dict[str, Any]]:
        rows = self.rows(
            "SELECT record_no, event_id, event_day, status FROM staging_status WHERE batch_id = :b", b=self.batch(name)
        )
        return {row["record_no"]: row for row in rows}


@pytest.fixture(scope="module")
def landed(postgres_server: EmbeddedPostgres, migrated_template: str, s3_endpoint: str) -> Iterator[Landed]:
    s3 = s3_client(s3_endpoint, "us-east-1", **S3_CREDENTIALS)
    buckets = new_buckets(s3)
    with (
        migrated_database(postgres_server, migrated_template) as url,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        for name, value in pipeline_variables(url, s3_endpoint, buckets).items():
            monkeypatch.setenv(name, value)
        batch_ids = {
            key: f"{key}#{s3.put_object(Bucket=buckets['landing'], Key=key, Body=body)['ETag'].strip(chr(34))}"
            for key, body in FILES.items()
        }
        from etl_assets.definitions import defs

        engine = create_warehouse_engine(url, pool_size=2, max_overflow=2)
        try:
            with pipeline(defs()) as run:
                run.settle()
                assert run.tick("landing_files_sensor") == [] and run.tick("staged_days_sensor") == []
                yield Landed(engine, batch_ids, run.runs, buckets["archive"])
        finally:
            engine.dispose()


def test_every_file_ran_once_and_no_run_failed(landed: Landed):
    """No hostile input fails its batch or its neighbours: the files' ingest runs and the merge of every day all
    succeed, and each file is a batch of its own."""
    ingests = [run for run in landed.runs if run.job_def.name == "ingest_landing_file_job"]
    assert 1 <= len(ingests) < len(FILES)
    assert all(run.success for run in landed.runs)
    assert {row["batch_id"] for row in landed.rows("SELECT batch_id FROM raw_batches")} == set(
        landed.batch_ids.values()
    )


def test_a_byte_order_mark_is_stripped_and_crlf_line_ends_load(landed: Landed):
    assert landed.event_ids("a-bom-crlf-encoding.jsonl") == {"bom-1", "crlf-2", "backslash", "utf8-ok"}
    first, second = landed.event("bom-1"), landed.event("crlf-2")
    assert (first["page_url"], first["occurred_at"]) == ("https://shop.example/", datetime(2025, 9, 1, 10, tzinfo=UTC))
    assert second["referrer"] == "https://search.example/"
    assert set(landed.staged("a-bom-crlf-encoding.jsonl")) == {1, 2, 7, 8}


def test_valid_utf8_is_stored_in_nfc(landed: Landed):
    row = landed.event("utf8-ok")
    assert (row["user_id"], row["referrer"]) == ("Zo\u00eb", "https://\u4f8b\u3048.jp/")


def test_nul_bytes_raw_or_escaped_are_quarantined_with_the_reason_and_the_bytes(landed: Landed):
    """PostgreSQL text and jsonb refuse NUL: the record is quarantined, its line kept byte for byte; an escaped
    backslash before u0000 is text, not a NUL, and loads as such."""
    json_rows = landed.quarantined("a-bom-crlf-encoding.jsonl")
    assert (json_rows[3]["stage"], json_rows[3]["reason"], json_rows[3]["raw_record"]) == ("parse", NUL_REASON, NUL_RAW)
    assert (json_rows[4]["reason"], json_rows[4]["raw_record"]) == (NUL_REASON, NUL_ESCAPED)
    assert landed.event("backslash")["properties"] == {"path": "C:\\u0000"}
    csv_row = landed.quarantined("b-bom-crlf-quoted.csv")[6]
    assert (csv_row["stage"], csv_row["reason"]) == ("parse", NUL_REASON)
    assert b"u\x001" in csv_row["raw_record"]


def test_invalid_utf8_is_quarantined_with_its_raw_bytes(landed: Landed):
    json_rows = landed.quarantined("a-bom-crlf-encoding.jsonl")
    assert (json_rows[5]["reason"], json_rows[5]["raw_record"]) == (
        f"invalid UTF-8 at byte {LATIN1_BAD_BYTE}",
        LATIN1,
    )
    assert json_rows[6]["reason"].startswith("invalid JSON: no low surrogate in string")
    assert json_rows[6]["raw_record"] == LONE_SURROGATE
    csv_row = landed.quarantined("b-bom-crlf-quoted.csv")[5]
    assert (csv_row["reason"], csv_row["raw_record"]) == ("invalid UTF-8 in column 'user_id'", CSV_LATIN1_ROW)


def test_csv_with_a_bom_crlf_and_quoted_newlines_and_commas_loads_every_value_verbatim(landed: Landed):
    """The BOM does not stick to the first column's name; a quoted CRLF and comma stay inside their value; the
    next record's number is the line it starts on."""
    row = landed.event("csv-1")
    assert row["referrer"] == "https://news.example/?a=1,b=2"
    assert row["properties"] == {"note": "line one\r\nline two, with a comma"}
    assert (row["price"], row["quantity"], row["currency"], row["event_type"]) == (
        Decimal("12.5000"),
        3,
        "EUR",
        "purchase",
    )
    assert {number: staged["event_id"] for number, staged in landed.staged("b-bom-crlf-quoted.csv").items()} == {
        2: "csv-1",
        4: "csv-2",
        7: "csv-5",
    }


def test_csv_injection_strings_are_stored_verbatim(landed: Landed):
    row = landed.event("csv-2")
    assert row["user_id"] == "=cmd|' /C calc'!A0"
    assert row["page_url"] == '=HYPERLINK("http://evil.example","click")'
    assert row["referrer"] == "@SUM(A1:A2)"
    assert row["properties"] == {"note": "-2+3"}


def test_numbers_given_as_strings_are_coerced_and_ids_given_as_numbers_keep_their_digits(landed: Landed):
    as_numbers = landed.event("1001")
    assert (as_numbers["user_id"], as_numbers["product_id"], as_numbers["quantity"]) == ("42", "7", 2)
    assert (as_numbers["price"], as_numbers["currency"]) == (Decimal("19.9900"), "USD")
    as_strings = landed.event("strings")
    assert (as_strings["price"], as_strings["quantity"], as_strings["product_id"]) == (Decimal("12.5000"), 3, "p1")
    assert landed.event("123456789012345678901234567890")["event_id"] == "123456789012345678901234567890"
    assert landed.event("18446744073709551615")["event_id"] == "18446744073709551615"


def test_values_that_are_not_the_numbers_their_column_needs_are_quarantined_naming_the_field(landed: Landed):
    """ "2.5" as a quantity and "twelve" as a price are rejected by the transform; an id sent as a number too
    large for a double to hold exactly is refused at staging rather than loaded as another number."""
    values = landed.quarantined("c-values.jsonl")
    assert (values[3]["stage"], values[3]["reason"]) == ("normalize", "quantity '2.5' is not a whole number")
    assert (values[4]["stage"], values[4]["reason"]) == (
        "parse",
        "event id 1.2345678901234568e+29 is a number too large to be exact: send it as a string",
    )
    assert values[4]["raw_record"] == FILE_C.splitlines()[3]
    twelve = landed.quarantined("b-bom-crlf-quoted.csv")[7]
    assert (twelve["stage"], twelve["reason"], twelve["event_id"]) == (
        "normalize",
        "price 'twelve' is not a number",
        "csv-5",
    )


def test_epoch_seconds_and_milliseconds_are_told_apart_by_magnitude(landed: Landed):
    ten = datetime(2025, 9, 1, 10, tzinfo=UTC)
    for event_id, expected in [
        ("epoch-s", ten),
        ("epoch-s-text", ten),
        ("epoch-ms", ten + timedelta(milliseconds=123)),
        ("csv-1", ten),
        ("csv-2", ten + timedelta(milliseconds=123)),
    ]:
        row = landed.event(event_id)
        assert (row["occurred_at"], row["quality_tags"]) == (expected, ["timestamp_epoch"]), event_id


def test_iso_times_with_an_offset_become_utc_and_without_one_are_read_as_utc_and_tagged(landed: Landed):
    ten = datetime(2025, 9, 1, 10, tzinfo=UTC)
    assert (landed.event("iso-offset")["occurred_at"], landed.event("iso-offset")["quality_tags"]) == (ten, [])
    assert (landed.event("iso-no-offset")["occurred_at"], landed.event("iso-no-offset")["quality_tags"]) == (
        ten,
        ["timestamp_assumed_utc"],
    )
    assert landed.event("iso-fraction")["occurred_at"] == ten + timedelta(milliseconds=250)


def test_years_1900_and_3000_are_quarantined_outside_the_accepted_times(landed: Landed):
    values = landed.quarantined("c-values.jsonl")
    shown = {number: OUTSIDE_ACCEPTED.match(values[number]["reason"]) for number in (13, 14, 15)}
    assert {number: match and match.group(1) for number, match in shown.items()} == {
        13: "1900-01-01T00:00:00+00:00",
        14: "3000-01-01T00:00:00+00:00",
        15: "1900-01-01T00:00:00+00:00",
    }
    assert {values[number]["stage"] for number in (13, 14, 15)} == {"parse"}


def test_sql_injection_strings_are_stored_verbatim_and_never_executed(landed: Landed):
    row = landed.event(SQL_ID)
    assert (row["user_id"], row["page_url"]) == (SQL_USER, SQL_URL)
    assert row["properties"] == {"note": SQL_NOTE, SQL_KEY: "a key"}
    assert landed.event_ids(SQL_NAMED_KEY) == {"sql-key"}
    assert landed.ledger(SQL_NAMED_KEY)["source_uri"].endswith(SQL_NAMED_KEY)
    tables = landed.rows(
        "SELECT to_regclass('events') AS events, to_regclass('quarantine') AS quarantine, "
        "to_regclass('raw_batches') AS raw_batches"
    )
    assert tables == [{"events": "events", "quarantine": "quarantine", "raw_batches": "raw_batches"}]
    assert landed.rows("SELECT count(*) AS n FROM raw_batches") == [{"n": len(FILES)}]


def test_json_nested_1000_deep_is_quarantined_with_the_reason_and_never_crashes(landed: Landed):
    """orjson reads up to 1,024 levels: 1,000 levels stage and the transform rejects them (events.properties is
    written by orjson, which writes 254); 1,100 levels do not parse; an id nested 999 deep is no id."""
    deep = landed.quarantined("d-deep-long-big.jsonl")
    assert (deep[1]["stage"], deep[1]["reason"], deep[1]["event_id"]) == (
        "normalize",
        "record cannot be stored as JSON: nested deeper than 256 levels",
        "deep-1000",
    )
    assert (deep[2]["stage"], deep[2]["reason"]) == ("parse", "event id [[[[...]]]] is not a string or a number")
    assert deep[3]["stage"] == "parse" and deep[3]["reason"].startswith("invalid JSON: depth limit exceeded")
    assert deep[3]["raw_record"] == FILE_D.splitlines()[2]


def test_a_10_mb_record_loads_whole(landed: Landed):
    row = landed.event("big-10mb")
    assert len(row["properties"]["blob"]) == TEN_MB
    assert row["properties"]["blob"] == BLOB


def test_ids_longer_than_an_index_entry_are_quarantined_and_long_keys_load(landed: Landed):
    """Ids are indexed (a btree entry holds 2,704 bytes): more than 1,024 bytes is quarantined with the size; a
    5,000-character key is just a property, and the schema profile names it cut short."""
    long = landed.quarantined("d-deep-long-big.jsonl")
    assert (long[5]["stage"], long[5]["reason"]) == (
        "parse",
        "event id is 5,000 bytes long; an id may have at most 1,024",
    )
    assert (long[6]["stage"], long[6]["reason"]) == (
        "normalize",
        "user_id is 2,050 bytes long; an id may have at most 1,024",
    )
    assert landed.event("long-key")["properties"] == {LONG_KEY: 1}
    cut = LONG_KEY[: FIELD_NAME_CHARS - 1] + "\u2026"
    assert landed.rows("SELECT field FROM source_fields WHERE field LIKE 'kkk%'") == [{"field": cut}]
    assert landed.event_ids("d-deep-long-big.jsonl") == {"big-10mb", "long-key", "deep-day-ok"}


def test_an_empty_file_makes_a_batch_of_zero_records_and_a_file_with_bytes_and_no_record_says_why(landed: Landed):
    ledger = landed.ledger("f-empty.jsonl")
    assert (ledger["record_count"], ledger["quarantined_count"], ledger["byte_count"]) == (0, 0, 0)
    assert ledger["staged_at"] is not None
    assert landed.staged("f-empty.jsonl") == {} and landed.quarantined("f-empty.jsonl") == {}
    for name, reason in (
        ("f-header-only.csv", "no records: the CSV file has a header and no rows"),
        ("f-empty.jsonl.gz", "no records: the gzip stream holds no bytes"),
    ):
        ledger = landed.ledger(name)
        assert (ledger["record_count"], ledger["quarantined_count"]) == (1, 1), name
        where = f"{ledger['source_uri']}, archived as s3://{landed.archive_bucket}/{ledger['archive_key']}"
        assert {number: (row["stage"], row["reason"]) for number, row in landed.quarantined(name).items()} == {
            0: ("parse", f"{reason} ({where})")
        }, name
        assert landed.staged(name) == {}, name


def test_a_truncated_gzip_stages_every_whole_record_and_the_ledger_names_the_truncation(landed: Landed):
    """Every line the cut stream still holds whole loads; the rest is one quarantine row with the reason (the
    archive keeps the bytes), and the ledger counts it."""
    name = "e-truncated.jsonl.gz"
    assert 100 < WHOLE_LINES_BEFORE_CUT < 600
    assert landed.event_ids(name) == {f"t{number}" for number in range(WHOLE_LINES_BEFORE_CUT)}
    (truncation,) = landed.quarantined(name).values()
    assert (truncation["record_no"], truncation["stage"], truncation["reason"]) == (
        WHOLE_LINES_BEFORE_CUT + 1,
        "parse",
        TRUNCATED_REASON,
    )
    ledger = landed.ledger(name)
    assert (ledger["record_count"], ledger["quarantined_count"]) == (WHOLE_LINES_BEFORE_CUT + 1, 1)


def test_a_name_that_lies_about_the_format_is_read_by_its_content(landed: Landed):
    """A .csv holding JSON lines, a .jsonl holding CSV, gzip without .gz and plain text with .gz all load."""
    for name, event_id in [
        ("g-jsonl-named.csv", "lie-csv-name"),
        ("g-csv-named.jsonl", "lie-jsonl-name"),
        ("g-gzip-named.jsonl", "lie-gzip-unnamed"),
        ("g-plain-named.jsonl.gz", "lie-gz-name"),
    ]:
        assert landed.event_ids(name) == {event_id}, name
        assert landed.event(event_id)["user_id"] == "u7"


def test_a_file_that_is_neither_json_lines_nor_csv_is_quarantined_whole(landed: Landed):
    name = "g-zip-named.csv"
    ledger = landed.ledger(name)
    where = f"{ledger['source_uri']}, archived as s3://{landed.archive_bucket}/{ledger['archive_key']}"
    assert {number: (row["stage"], row["reason"]) for number, row in landed.quarantined(name).items()} == {
        0: ("parse", f"unsupported file: {PREFIX + name!r} is a zip archive, not JSON, CSV or Parquet ({where})")
    }
    assert (landed.ledger(name)["record_count"], landed.ledger(name)["quarantined_count"]) == (1, 1)


def test_duplicate_ids_within_and_across_files_keep_the_newest_version_once(landed: Landed):
    """d1 comes three times (twice in one file, then in the next file), d2 twice, the second time on another
    day: each is one row, the version that arrived last, and the others are counted as duplicates."""
    assert landed.rows(
        "SELECT event_id, count(*) AS n FROM events WHERE event_id IN ('d1', 'd2') GROUP BY 1 ORDER BY 1"
    ) == [{"event_id": "d1", "n": 1}, {"event_id": "d2", "n": 1}]
    d1, d2 = landed.event("d1"), landed.event("d2")
    assert (d1["page_url"], d1["batch_id"]) == ("https://shop.example/v3", landed.batch("i-dups-2.jsonl"))
    assert (d2["product_id"], d2["occurred_at"]) == ("p2", datetime(2025, 9, 4, 9, tzinfo=UTC))
    duplicates = {
        day: reconcile_day(landed.engine, day).total("duplicates") for day in (date(2025, 9, 3), date(2025, 9, 4))
    }
    assert duplicates == {date(2025, 9, 3): 3, date(2025, 9, 4): 0}


def test_identity_calls_with_hostile_values_link_verbatim_and_unreadable_ones_are_quarantined(landed: Landed):
    persons = {
        row["event_id"]: (row["event_type"], row["person_id"])
        for row in landed.rows(
            "SELECT event_id, event_type, person_id FROM events WHERE batch_id = :b", b=landed.batch("j-identity.jsonl")
        )
    }
    assert persons == {
        "id-browse": ("page_view", SQL_USER),
        "id-login": ("identify", SQL_USER),
        "id-group-no-id": ("group", "u1"),
        "id-alias-self": ("alias", "u1"),
    }
    assert landed.rows("SELECT anonymous_id, user_id, via, status FROM identity_links") == [
        {"anonymous_id": "anon-hostile", "user_id": SQL_USER, "via": "identify", "status": "linked"}
    ]
    assert landed.rows("SELECT traits FROM users WHERE user_id = :u", u=SQL_USER) == [
        {"traits": {SQL_KEY: SQL_NOTE, "nested": {"deep": [1, 2]}}}
    ]
    assert landed.rows("SELECT count(*) AS groups FROM group_memberships") == [{"groups": 0}]
    reasons = {
        row["event_id"]: (row["stage"], row["reason"]) for row in landed.quarantined("j-identity.jsonl").values()
    }
    assert reasons == {
        "id-bad-traits": ("normalize", "traits must be an object, not str"),
        "id-bad-alias": ("normalize", "previousId {'id': 1} is not a string or a number"),
    }


def test_every_record_is_accounted_for(landed: Landed):
    """Records in = rows in events + rows in quarantine + duplicates skipped, for every batch and every day, as the
    platform's reconciliation and its events_reconciled check count them."""
    days = [row["day"] for row in landed.rows("SELECT DISTINCT event_day AS day FROM staging_events ORDER BY 1")]
    assert days == [date(2025, 9, day) for day in (1, 2, 3, 4, 5)]
    reconciled = [reconcile_day(landed.engine, day) for day in days]
    assert all(day.balanced for day in reconciled)
    assert sum(day.total("pending") for day in reconciled) == 0
    batches = [batch for batch in reconcile_batches(landed.engine, within_days=1) if batch.batch_id.startswith(PREFIX)]
    assert len(batches) == len(FILES)
    assert [batch.batch_id for batch in batches if batch.unaccounted] == []

    (totals,) = landed.rows(
        "SELECT (SELECT sum(record_count) FROM raw_batches) AS records_in, (SELECT count(*) FROM events) AS events, "
        "(SELECT count(*) FROM quarantine WHERE resolved_at IS NULL) AS quarantined"
    )
    duplicates = sum(day.total("duplicates") for day in reconciled)
    assert totals["records_in"] == totals["events"] + totals["quarantined"] + duplicates
    expected_events = 4 + 2 + 11 + 3 + WHOLE_LINES_BEFORE_CUT + 4 + 1 + 2 + 4
    no_records = 2  # the header-only CSV and the empty gzip: one row each that says so
    identity_rejected = 2  # unreadable traits, an unusable alias id
    assert (totals["events"], totals["quarantined"], duplicates) == (
        expected_events,
        4 + 3 + 5 + 5 + 1 + 1 + no_records + identity_rejected,
        3,
    )

    checks = [
        evaluation
        for run in landed.runs
        for evaluation in run.get_asset_check_evaluations()
        if evaluation.check_name == "events_reconciled" and evaluation.partition is not None
    ]
    assert sorted(evaluation.partition for evaluation in checks) == [day.isoformat() for day in days]
    assert all(evaluation.passed for evaluation in checks)
