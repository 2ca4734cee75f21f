"""Properties of the pure transforms over generated input (hypothesis), hostile shapes included.

Which properties hold, and why:

- **Reading a file never raises** on any bytes, named JSONL or CSV, plain or gzip: every record comes out as a
  ``ParsedRecord`` whose ``json_text`` PostgreSQL can store as jsonb (valid UTF-8, no NUL, not nested deeper
  than orjson reads back) and means exactly its ``payload``, or as a ``RejectedRecord`` with a reason.
- **Reading round-trips**: JSON objects written as lines (with or without a BOM, LF or CRLF), and CSV rows
  written by the csv module, read back as the same payloads (CSV: empty fields left out, blank rows skipped).
- **Normalizing never raises anything but ``RecordRejected``** on any JSON value, any field nested up to 5,000
  levels (orjson reads 1,024), before or after PII pseudonymization; a rejection reason is one short line.
- **Normalizing is deterministic and ignores key order** (jsonb stores keys in its own order, so the merge sees
  them reordered).
- **Normalizing is idempotent on its own output**: an event written back as a record of its columns and
  properties normalizes to the same event, except for the two tags that describe the form the timestamp came
  in (epoch number, no offset), which the written-back ISO time no longer has; from there it is a fixed point.
- **Pseudonymizing**: ``canonical`` is idempotent, so every spelling of a value gets one pseudonym
  (``pseudonymize(canonical(x)) == pseudonymize(x)``); ``pseudonymize_payload`` leaves its input and the
  identity keys untouched, and a second pass changes only values under PII keys (a pseudonym is neither an
  email address nor an IP address). It is not idempotent under PII keys, by design: it runs once, on raw
  staged payloads only.

The default suite runs a few hundred examples per property; the ``slow`` marker runs the hostile ones with
many more.
"""

from __future__ import annotations

import bz2
import copy
import csv
import gzip
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from etl_assets.transform.normalize import (
    IDENTITY_KEYS,
    TAG_TIMESTAMP_ASSUMED_UTC,
    TAG_TIMESTAMP_EPOCH,
    AcceptedTimes,
    NormalizedEvent,
    RecordRejected,
    event_key,
    normalize,
)
from etl_assets.transform.pii import PiiPolicy, canonical, key_matches, pseudonymize, pseudonymize_payload
from etl_assets.transform.records import (
    Compression,
    FileFormat,
    ParsedRecord,
    RejectedRecord,
    UnsupportedFile,
    compression_of,
    detect_format,
    has_nul_escape,
    iter_records,
    read_file,
)

ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
POLICY = PiiPolicy(("email", "ip", "phone"), b"property-test-key-0123456789")
FORM_TAGS = frozenset({TAG_TIMESTAMP_EPOCH, TAG_TIMESTAMP_ASSUMED_UTC})
REASON_MAX_CHARS = 200

DEFAULT = settings(max_examples=200, deadline=None)
THOROUGH = settings(max_examples=5000, deadline=None)

# ---------------------------------------------------------------------------------------------- strategies

JSON_TEXT = st.text(max_size=12) | st.sampled_from(["", " ", "\x00", "e1", "caf\u00e9", "a@b.example", "10.0.0.1"])
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | JSON_TEXT | st.text(min_size=300, max_size=2000)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(JSON_TEXT, children, max_size=5),
    max_leaves=30,
)
KNOWN_KEYS = (
    *("id", "event_id", "eventId", "messageId", "type", "event_type", "eventType", "event"),
    *("timestamp", "occurred_at", "ts", "time", "event_time", "originalTimestamp"),
    *("user_id", "userId", "user", "anonymous_id", "anonymousId", "session_id", "sessionId", "session"),
    *("product_id", "productId", "sku", "product", "price", "currency", "quantity", "qty"),
    *("order_id", "orderId", "order", "page_url", "url", "page", "referrer", "context", "properties"),
    *("email", "ip", "phone_number", "traits"),
)
PLAUSIBLE = st.sampled_from(
    [
        "e1",
        "purchase",
        "Order Completed",
        "track",
        "page",
        "2025-08-01T12:00:00Z",
        "2025-08-01 12:00:00",
        "2025-08-01T14:00:00+02:00",
        1754049600,
        1754049600123,
        "1754049600",
        "1900-01-01T00:00:00Z",
        "3000-01-01T00:00:00Z",
        "19.99",
        "12.50",
        "twelve",
        19.99,
        -1,
        2**70,
        1.2345678901234568e29,
        "EUR",
        "u1",
        "ann@example.com",
        "203.0.113.7",
        "x" * 2000,
        "9" * 5000,
        "-" + "9" * 5000 + ".5",
        "'; DROP TABLE events; --",
        "=cmd|' /C calc'!A0",
        {"id": "x1"},
        {"id": None},
        {"url": "https://a/", "referrer": "https://r/"},
        {"price": "1.5", "sku": "p1", "currency": "usd", "quantity": "2"},
        "",
    ]
)


def nested(value: Any, depth: int, as_object: bool) -> Any:
    for _ in range(depth):
        value = {"a": value} if as_object else [value]
    return value


DEPTHS = st.integers(0, 1100) | st.sampled_from([254, 255, 256, 257, 999, 1000, 1023, 1024, 1025, 5000])
DEEP_VALUES = st.builds(nested, JSON_SCALARS | PLAUSIBLE, DEPTHS, st.booleans())
FIELD_VALUES = JSON_VALUES | PLAUSIBLE
EVENT_SHAPED = st.dictionaries(st.sampled_from(KNOWN_KEYS), FIELD_VALUES, max_size=12)
HOSTILE_EVENT_SHAPED = st.dictionaries(st.sampled_from(KNOWN_KEYS), FIELD_VALUES | DEEP_VALUES, max_size=12)
VALID_CORE = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["e1", 7, " e2 ", "6F9619FF-8B86-D011-B42D-00C04FC964FF"]),
        "type": st.sampled_from(["purchase", "Product Added", "page", "checkout_started"]),
        "timestamp": st.sampled_from(
            ["2025-08-01T12:00:00Z", "2025-08-01 12:00:00", 1754049600123, "2025-08-01T14:00:00+02:00"]
        ),
        "anonymous_id": st.sampled_from(["a1", 3, "ann@example.com"]),
    }
)
MOSTLY_VALID = st.tuples(VALID_CORE, st.dictionaries(st.sampled_from(KNOWN_KEYS), FIELD_VALUES, max_size=6)).map(
    lambda parts: {**parts[0], **parts[1]}
)
ONE_DEEP_FIELD = st.builds(
    lambda record, key, deep: {**record, key: deep},
    MOSTLY_VALID,
    st.sampled_from(KNOWN_KEYS),
    st.builds(nested, FIELD_VALUES, st.sampled_from([255, 256, 1000, 1024, 5000]), st.booleans()),
)
ANY_RECORD = (
    JSON_VALUES
    | DEEP_VALUES
    | HOSTILE_EVENT_SHAPED
    | ONE_DEEP_FIELD
    | MOSTLY_VALID
    | MOSTLY_VALID.map(lambda record: {**record, "properties": {**record, "coupon": "A"}})
)


def normalized_or_reason(payload: Any) -> NormalizedEvent | str:
    try:
        return normalize(payload, ACCEPTED)
    except RecordRejected as rejected:
        return f"rejected: {rejected}"


# ------------------------------------------------------------------------------------------ reading files


def assert_storable(item: ParsedRecord | RejectedRecord) -> None:
    """What staging needs of a record: a parsed one is jsonb PostgreSQL takes, a rejected one has a reason."""
    if isinstance(item, RejectedRecord):
        assert item.reason and "\n" not in item.reason and len(item.reason) <= REASON_MAX_CHARS
        assert isinstance(item.raw, bytes)
        return
    assert isinstance(item, ParsedRecord)
    assert type(item.payload) is dict
    encoded = item.json_text.encode()  # valid UTF-8: a lone surrogate would raise here
    assert b"\x00" not in encoded and not has_nul_escape(encoded)
    assert orjson.loads(item.json_text) == item.payload


FILE_BYTES = st.binary(max_size=400) | st.lists(
    st.sampled_from(
        [
            b'{"id": "e1", "type": "purchase"}',
            b'{"id": "e\xff1"}',
            b'{"id": "e\\u00001"}',
            b"\x00",
            b"\xef\xbb\xbf",
            b"id,type,price",
            b'e1,"a,b","line\r\nline"',
            b'"unterminated',
            b"[[[[[[",
            b"\r\n",
            b"\n",
            b",,,",
            b"caf\xe9,\xff",
            b"k" * 1000 + b"," + b"k" * 1000,
        ]
    ),
    max_size=12,
).map(b"\n".join)


COMPRESS = {
    Compression.GZIP: lambda data: gzip.compress(data, mtime=0),
    Compression.BZIP2: bz2.compress,
    Compression.ZSTD: lambda data: zstandard.ZstdCompressor().compress(data),
}
NAMES = st.sampled_from(["events.jsonl", "events.csv", "export-0001", "events.json.gz"])


def read_any(data: bytes, name: str) -> list[ParsedRecord | RejectedRecord]:
    return list(read_file(io.BytesIO(data), name))


def read_shape(data: bytes, fmt: FileFormat) -> list[ParsedRecord | RejectedRecord]:
    return list(iter_records(io.BytesIO(data), fmt))


def check_reading_never_raises(data: bytes, name: str, compression: Compression, cut: float, flip: int | None) -> None:
    items = read_any(data, name)
    for item in items:
        assert_storable(item)
    assert items or not data, "bytes came in, and neither a record nor a rejection came out"
    packed = bytearray(COMPRESS[compression](data))
    if flip is not None:
        packed[flip % len(packed)] ^= 0x5A
    packed = packed[: max(1, int(len(packed) * cut))]
    items = read_any(bytes(packed), name)
    assert items, "bytes came in, and neither a record nor a rejection came out"
    for item in items:
        assert_storable(item)
    numbers = [item.record_no for item in items]
    assert numbers == sorted(numbers) or numbers[-1] == 0


@DEFAULT
@given(FILE_BYTES, NAMES, st.sampled_from(Compression), st.floats(0.0, 1.0), st.none() | st.integers(0, 10_000))
def test_reading_any_bytes_never_raises_and_yields_only_storable_records(data, name, compression, cut, flip):
    check_reading_never_raises(data, name, compression, cut, flip)


@DEFAULT
@given(st.text(max_size=40), st.binary(max_size=64) | FILE_BYTES)
def test_detecting_a_shape_raises_only_unsupported_file_with_one_line(name: str, head: bytes):
    try:
        shape = detect_format(name, head)
    except UnsupportedFile as error:
        assert "\n" not in str(error)
    else:
        assert shape.format in FileFormat
    for compression, compress in COMPRESS.items():
        assert compression_of(compress(head)) is compression


STORABLE_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12)
STORABLE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | STORABLE_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(STORABLE_TEXT, children, max_size=4),
    max_leaves=8,
)


@DEFAULT
@given(
    st.lists(st.dictionaries(STORABLE_TEXT, STORABLE_JSON, max_size=4), max_size=5),
    st.booleans(),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_json_lines_read_back_as_the_objects_written(objects: list[dict], bom: bool, line_end: bytes):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(orjson.dumps(value) + line_end for value in objects)
    items = read_shape(data, FileFormat.JSONL)
    assert [item.payload for item in items if isinstance(item, ParsedRecord)] == objects
    assert [item.record_no for item in items] == list(range(1, len(objects) + 1))


CSV_TEXT = st.text(st.characters(exclude_characters="\x00\ufeff", exclude_categories=("Cs",)), max_size=10)
CSV_NAMES = st.lists(CSV_TEXT.map(str.strip).filter(bool), min_size=1, max_size=5, unique=True)
CSV_DIALECTS = st.sampled_from(
    # The csv module leaves a lone CR unquoted when the line ends in LF only: such files quote every field.
    [{"lineterminator": "\r\n", "quoting": csv.QUOTE_MINIMAL}, {"lineterminator": "\n", "quoting": csv.QUOTE_ALL}]
)


@DEFAULT
@given(
    CSV_NAMES.flatmap(
        lambda names: st.tuples(
            st.just(names), st.lists(st.lists(CSV_TEXT, min_size=len(names), max_size=len(names)), max_size=5)
        )
    ),
    st.booleans(),
    CSV_DIALECTS,
)
def test_csv_rows_read_back_as_the_values_written(table, bom: bool, dialect: dict[str, Any]):
    names, rows = table
    buffer = io.StringIO()
    writer = csv.writer(buffer, **dialect)
    writer.writerow(names)
    writer.writerows(rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode()
    items = read_shape(data, FileFormat.CSV)
    expected = [
        {name: value for name, value in zip(names, row, strict=True) if value != ""}
        for row in rows
        if any(value.strip() for value in row)
    ]
    assert all(isinstance(item, ParsedRecord) for item in items)
    assert [item.payload for item in items] == expected


# -------------------------------------------------------------------------------------------- normalizing


def assert_short_reason(rejected: RecordRejected) -> None:
    reason = str(rejected)
    assert reason and "\n" not in reason and len(reason) <= REASON_MAX_CHARS, reason


def check_normalize_raises_only_record_rejected(payload: Any) -> None:
    """As staging keys it, and as the merge normalizes it: raw, and pseudonymized first."""
    records = [payload]
    try:
        records.append(pseudonymize_payload(payload, POLICY))
    except RecordRejected as rejected:
        assert_short_reason(rejected)
    for record in records:
        try:
            event = normalize(record, ACCEPTED)
        except RecordRejected as rejected:
            assert_short_reason(rejected)
            continue
        key = event_key(record, ACCEPTED)
        assert (key.event_id, key.occurred_at) == (event.event_id, event.occurred_at)
        assert ACCEPTED.earliest <= event.occurred_at < ACCEPTED.latest
        assert normalize(record, ACCEPTED) == event


@DEFAULT
@given(ANY_RECORD)
def test_normalizing_any_json_value_raises_only_record_rejected_with_a_short_reason(payload: Any):
    check_normalize_raises_only_record_rejected(payload)


@DEFAULT
@given(ONE_DEEP_FIELD)
def test_normalizing_a_record_with_a_field_nested_thousands_deep_raises_only_record_rejected(payload: Any):
    """Hypothesis raises the recursion limit by 2,000 while it runs, so 5,000 levels here stand for the 1,000 that
    broke ``repr`` (a reason showing the value) in a run."""
    check_normalize_raises_only_record_rejected(payload)


def reordered(value: Any) -> Any:
    """``value`` with the keys of every object in reverse order, as another writer (or jsonb) might order them."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


@DEFAULT
@given(MOSTLY_VALID | EVENT_SHAPED)
def test_normalizing_ignores_the_order_of_keys(payload: dict[str, Any]):
    assert normalized_or_reason(reordered(payload)) == normalized_or_reason(payload)


def as_record(event: NormalizedEvent) -> dict[str, Any]:
    """An event written back as a record: its columns under their first names, what is left in ``properties``."""
    columns = {
        "id": event.event_id,
        "type": event.event_name,
        "timestamp": event.occurred_at.isoformat(),
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "session_id": event.session_id,
        "product_id": event.product_id,
        "quantity": event.quantity,
        "price": None if event.price is None else str(event.price),
        "currency": event.currency,
        "order_id": event.order_id,
        "page_url": event.page_url,
        "referrer": event.referrer,
        "revenue": None if event.revenue is None else str(event.revenue),
        "total": None if event.total is None else str(event.total),
        "shipping": None if event.shipping is None else str(event.shipping),
        "tax": None if event.tax is None else str(event.tax),
        "discount": None if event.discount is None else str(event.discount),
        "coupon": event.coupon,
        "properties": event.properties,
    }
    return {name: value for name, value in columns.items() if value is not None}


def without_form_tags(event: NormalizedEvent) -> tuple[Any, ...]:
    fields = [getattr(event, name) for name in event.__slots__ if name not in ("quality_tags", "content_hash")]
    return (*fields, tuple(tag for tag in event.quality_tags if tag not in FORM_TAGS))


@DEFAULT
@given(MOSTLY_VALID)
def test_normalizing_is_idempotent_on_its_own_output(payload: dict[str, Any]):
    event = normalized_or_reason(payload)
    assume(isinstance(event, NormalizedEvent))
    again = normalize(as_record(event), ACCEPTED)
    assert without_form_tags(again) == without_form_tags(event)
    assert not FORM_TAGS & set(again.quality_tags)
    assert normalize(as_record(again), ACCEPTED) == again


# ---------------------------------------------------------------------------------------- pseudonymizing

IP_OR_EMAIL = re.compile(r"@|%40|^[0-9a-fA-F.:]+$")


@DEFAULT
@given(st.text(max_size=40) | st.sampled_from([" Ann@Example.COM ", "::ffff:10.0.0.1", "+1 (555) 010-0000", "İ@x.io"]))
def test_canonical_is_idempotent_so_every_spelling_gets_one_pseudonym(value: str):
    once = canonical(value)
    assert canonical(once) == once
    assert pseudonymize(once, POLICY.key) == pseudonymize(value, POLICY.key)
    assert IP_OR_EMAIL.search(pseudonymize(value, POLICY.key)) is None


def differences(first: Any, second: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths at which two JSON values differ."""
    if isinstance(first, dict) and isinstance(second, dict) and first.keys() == second.keys():
        return [found for key in first for found in differences(first[key], second[key], (*path, str(key)))]
    if isinstance(first, list) and isinstance(second, list) and len(first) == len(second):
        return [found for index, item in enumerate(first) for found in differences(item, second[index], path)]
    same = type(first) is type(second) and (first == second or first != first)
    return [] if same else [path]


@DEFAULT
@given(MOSTLY_VALID | EVENT_SHAPED)
def test_pseudonymizing_leaves_input_and_identity_alone_and_a_second_pass_touches_only_pii_keys(payload):
    before = copy.deepcopy(payload)
    once = pseudonymize_payload(payload, POLICY)
    assert differences(payload, before) == []
    assert {key: once[key] for key in IDENTITY_KEYS & once.keys()} == {
        key: payload[key] for key in IDENTITY_KEYS & payload.keys()
    }
    assert differences(pseudonymize_payload(payload, POLICY), once) == []
    twice = pseudonymize_payload(once, POLICY)
    for path in differences(once, twice):
        assert any(key_matches(key, POLICY.fields) for key in path), path


# ------------------------------------------------------------------------------------ many more examples

HOSTILE_PROPERTIES = [
    pytest.param(
        check_reading_never_raises,
        (FILE_BYTES, NAMES, st.sampled_from(Compression), st.floats(0.0, 1.0), st.none() | st.integers(0, 10_000)),
        id="reading",
    ),
    pytest.param(check_normalize_raises_only_record_rejected, (ANY_RECORD,), id="normalizing"),
    pytest.param(check_normalize_raises_only_record_rejected, (ONE_DEEP_FIELD,), id="deep-fields"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("check", "strategies"), HOSTILE_PROPERTIES)
def test_hostile_properties_hold_over_many_examples(check: Callable[..., None], strategies: tuple[Any, ...]):
    THOROUGH(given(*strategies)(check))()
