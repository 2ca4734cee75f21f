"""A varied, seeded corpus of records and what the transform chain made of each, kept as a golden fixture.

The fixture (``golden/transform_outcomes.jsonl.gz``) pins every output of the chain, byte for byte: the staging
key, the pseudonymized payload, the normalized event (every field, its tags, properties with their key order and
number types, its ``content_hash``), the order lines, the identity facts, the JSON the merge writes, and each
rejection's reason and rule. A change that is meant to alter the output bumps ``TRANSFORM_VERSION`` and rewrites
the fixture with ``uv run python -m tests.unit.transform_corpus``; any other change must leave it as it is.

The records: demo landing files (JSON Lines with their timestamp mix, and flat CSV rows, bad records included),
Segment calls completed as the collector completes them, and seeded random records built from every alias of every
field, with empty, hostile and odd values (numbers past 64 bits, NFD text, NUL, blank strings, wrong types, PII in
keys and values, products and traits of every shape).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from etl_assets.demo.landing_files import demo_landing_set
from etl_assets.transform import TRANSFORM_VERSION, exact_json
from etl_assets.transform.identity import identity_facts
from etl_assets.transform.normalize import AcceptedTimes, RecordRejected, event_key, normalize
from etl_assets.transform.orders import order_lines
from etl_assets.transform.pii import PiiKeyMissing, PiiPolicy, pseudonymize_payload
from etl_assets.transform.records import ParsedRecord, read_file
from etl_assets.transform.segment import segment_messages

FIXTURE = Path(__file__).parent / "golden" / "transform_outcomes.jsonl.gz"
ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
KEY = b"golden-corpus-key-0123456789"
POLICIES = {
    "default": PiiPolicy(("email", "ip", "phone"), KEY),
    "no key": PiiPolicy(("email", "ip", "phone"), None),
    "custom": PiiPolicy(("email", "userId", "Name", "zip"), KEY),
    "none": PiiPolicy((), None),
}
SEED = 20261203
RANDOM_RECORDS = 2000
SEGMENT_CALLS = 200


# -- outcomes ------------------------------------------------------------------------------------------------------


def _rejection(error: RecordRejected) -> str:
    return f"rejected [{error.rule}] {error}"


def outcome(payload: Any, policy: PiiPolicy) -> list[str]:
    """Everything the chain makes of ``payload`` under ``policy``, as exact text (``repr`` keeps types and order)."""
    parts: list[str] = []
    try:
        parts.append(f"key {event_key(payload, ACCEPTED)!r}")
    except RecordRejected as error:
        parts.append(f"key {_rejection(error)}")
    before = repr(payload)
    try:
        hidden = pseudonymize_payload(payload, policy)
    except PiiKeyMissing as error:
        return [*parts, f"pii key missing: {error}"]
    except RecordRejected as error:
        return [*parts, f"pii {_rejection(error)}"]
    assert repr(payload) == before, "pseudonymize_payload changed its input"
    shown = repr(hidden)
    parts.append("pseudonymized: unchanged" if shown == before else f"pseudonymized {digest(shown)}")
    try:
        event = normalize(hidden, ACCEPTED)
    except RecordRejected as error:
        return [*parts, f"normalize {_rejection(error)}"]
    parts.append(repr(event))
    if event.properties is not None:
        parts.append(f"properties json {digest(exact_json.dumps(event.properties).decode())}")
    try:
        lines = order_lines(event)
    except RecordRejected as error:
        parts.append(f"lines {_rejection(error)}")
    else:
        parts.append(f"lines {lines!r}")
        if lines:
            parts.append(f"lines json {digest(exact_json.dumps([line.as_json() for line in lines]).decode())}")
    try:
        facts = identity_facts(event)
    except RecordRejected as error:
        parts.append(f"identity {_rejection(error)}")
    else:
        parts.append(f"identity {facts!r}")
        if facts.traits is not None:
            parts.append(f"traits json {digest(exact_json.dumps(facts.traits).decode())}")
    return parts


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def outcomes(payload: Any) -> dict[str, list[str] | str]:
    """The outcome under each policy: in full under the default policy, as a digest under the others (left out
    where it equals the default's), so that the fixture stays small."""
    default = outcome(payload, POLICIES["default"])
    found: dict[str, list[str] | str] = {"default": default}
    for name, policy in POLICIES.items():
        if name != "default" and (other := outcome(payload, policy)) != default:
            found[name] = digest("\n".join(other))
    return found


# -- records -------------------------------------------------------------------------------------------------------


def demo_records() -> Iterator[str]:
    """The records of a small demo landing set (JSONL, CSV, gzip; bad records mixed in), as ingest parses them."""
    for file in demo_landing_set(seed=11, start=date(2025, 8, 1), days=2, events_per_file=60, files=6):
        for record in read_file(io.BytesIO(file.data), file.name):
            if isinstance(record, ParsedRecord):
                yield record.json_text


def segment_records(rng: random.Random) -> Iterator[str]:
    received = datetime(2025, 8, 1, 12, tzinfo=UTC)
    for number in range(0, SEGMENT_CALLS, 10):
        batch = [_segment_call(rng, received, number + offset) for offset in range(10)]
        body = {"batch": batch, "sentAt": "2025-08-01T12:00:01.000Z", "context": {"library": {"name": "sdk"}}}
        for message in segment_messages("batch", body, received + timedelta(seconds=number)):
            yield exact_json.dumps(message).decode()


def _segment_call(rng: random.Random, received: datetime, number: int) -> dict[str, Any]:
    call: dict[str, Any] = {
        "messageId": f"{rng.getrandbits(128):032x}" if rng.random() < 0.9 else "",
        "anonymousId": f"anon-{rng.randrange(50)}",
        "originalTimestamp": (received - timedelta(milliseconds=rng.randrange(9000))).isoformat(),
        "context": {
            "ip": rng.choice(["203.0.113.7", "2001:DB8::1", "::ffff:10.0.0.1", "not-an-ip"]),
            "page": {"url": "https://shop.example/p?email=ann%40example.com", "referrer": "https://r.example/"},
            "traits": {"email": "Ann@Example.com"} if rng.random() < 0.3 else {},
        },
    }
    if rng.random() < 0.7:
        call["userId"] = rng.choice(["u1", "u2", "ann@example.com", 42, " u3 "])
    kind = rng.choice(["track", "track", "page", "screen", "identify", "alias", "group", "order"])
    if kind == "order":
        call |= {
            "type": "track",
            "event": rng.choice(["Order Completed", "Order Refunded", "Order Updated", "Order Cancelled"]),
            "properties": {
                "order_id": f"o{number}",
                "revenue": rng.choice([104.98, "104.98", 0, -5]),
                "currency": rng.choice(["EUR", "usd", None]),
                "products": rng.choice([_products(rng), [], None, "p1"]),
            },
        }
    elif kind == "track":
        call |= {"type": "track", "event": _choice(rng, EVENT_NAMES), "properties": _properties(rng)}
    elif kind in ("page", "screen"):
        call |= {"type": kind, "name": rng.choice(["Home", "", None, "Product"]), "properties": _properties(rng)}
        if rng.random() < 0.5:
            call["category"] = rng.choice(["Docs", " shop ", ""])
    elif kind == "identify":
        call |= {"type": "identify", "traits": _choice(rng, TRAITS)}
    elif kind == "alias":
        call |= {"type": "alias", "previousId": _choice(rng, IDS)}
    else:
        call |= {"type": "group", "groupId": _choice(rng, IDS), "traits": _choice(rng, TRAITS)}
    return call


class _Rng(random.Random):
    friendly = False
    """Draw from the first half of each pool (the values that mostly pass) for the whole record."""


def _choice(rng: random.Random, pool: list[Any]) -> Any:
    if getattr(rng, "friendly", False):
        return rng.choice(pool[: max(3, len(pool) // 2)])
    return rng.choice(pool)


def _products(rng: random.Random) -> list[Any]:
    return [_choice(rng, PRODUCTS) for _ in range(rng.randrange(1, 4))]


def _properties(rng: random.Random) -> dict[str, Any]:
    keys = rng.sample(PROPERTY_KEYS, rng.randrange(0, 6))
    return {key: _value_for(rng, key) for key in keys}


IDS: list[Any] = [
    "e1",
    " e2 ",
    "E3",
    7,
    7.0,
    1.5,
    -3,
    Decimal(10**20),
    2**53 + 1.0,
    2**53 - 1.0,
    1e300,
    Decimal("123456789012345678901234567890"),
    "6F9619FF-8B86-D011-B42D-00C04FC964FF",
    "6f9619ff-8b86-d011-b42d-00c04fc964fg",
    "",
    " ",
    None,
    True,
    [],
    {},
    ["x"],
    {"id": "x1"},
    {"id": None},
    "é" * 300,
    "x" * 1025,
    "a\x00b",
    "Cafe\u0301",
    "ann@example.com",
    "203.0.113.7",
    "\t u4 \n",
]
EVENT_NAMES: list[Any] = [
    "purchase",
    "Order Completed",
    "order_completed",
    "ORDER-COMPLETED",
    " Purchase ",
    "Product Viewed",
    "product_view",
    "pageview",
    "page",
    "screen",
    "Page",
    "track",
    "Track",
    "identify",
    "alias",
    "group",
    "Signed Up",
    "Video Played",
    "add_to_cart",
    "Wishlist Product Added to Cart",
    "checkout",
    "Coupon Applied",
    "Order Refunded",
    "Order Cancelled",
    "cart_view",
    "",
    " ",
    None,
    5,
    ["purchase"],
    "n" * 2000,
    "Caf\u0065\u0301 Visited",
    "a\x00b",
]
TIMESTAMPS: list[Any] = [
    "2025-08-01T12:00:00Z",
    "2025-08-01T12:00:00.123Z",
    "2025-08-01T12:00:00.123456+05:30",
    "2025-08-01T14:00:00+02:00",
    "2025-08-01 12:00:00",
    "2025-08-01 12:00:00 UTC",
    "2025-08-01T12:00:00GMT",
    "2025-08-01t12:00:00z",
    "20250801T120000Z",
    "2025-08-01",
    "  2025-08-01T12:00:00Z ",
    1754049600,
    1754049600.5,
    1754049600123,
    1754049600123456,
    1754049600123456789,
    "1754049600",
    "1754049600.5",
    "-1754049600",
    "1754049600123",
    Decimal("1754049600.0000005"),
    Decimal(10**25),
    Decimal(-(10**25)),
    "1e9",
    "1754049600e0",
    ".",
    "-",
    "abc",
    "1900-01-01T00:00:00Z",
    "3000-01-01T00:00:00Z",
    "2026-11-21T23:59:59.999999Z",
    "2026-11-22T00:00:00Z",
    "2024-12-31T23:59:59Z",
    True,
    None,
    "",
    {"a": 1},
    [1754049600],
    0,
    1e30,
]
PRICES: list[Any] = [
    "19.99",
    19.99,
    19,
    0,
    "0",
    "-0.0",
    -1,
    "-0.00001",
    "0.00005",
    "0.00004999",
    "1e3",
    "1E-2",
    " 12.5 ",
    "12,50",
    "abc",
    "NaN",
    "Infinity",
    True,
    None,
    "",
    1e14,
    99999999999999.99,
    "99999999999999.99995",
    "99999999999999.99994",
    Decimal(10**20),
    Decimal("1.23456789012345678901"),
    [1],
    {"amount": 1},
    1.0000000000000002,
]
CURRENCIES: list[Any] = ["EUR", "eur", " usd ", "EURO", "€€€", "E1R", 3, "", None, "gbp\n", "ÉUR"]
QUANTITIES: list[Any] = [
    "2",
    2,
    2.0,
    "2.0",
    "2.5",
    2.5,
    -1,
    "-1",
    0,
    2**31 - 1,
    2**31,
    "2147483648",
    "\u0663",
    "007",
    True,
    None,
    "",
    "1e2",
    1e2,
    "x",
    [2],
]
TEXTS: list[Any] = [
    "https://shop.example/p/1",
    " https://shop.example/p/2?utm_source=newsletter&utm_medium=email ",
    "https://shop.example/?email=ann%40example.com",
    "mailto:Bob@Example.com",
    "Caf\u0065\u0301",
    "",
    " ",
    None,
    12,
    1.25,
    -0.0,
    1e16,
    True,
    ["a"],
    {"url": "https://nested.example/"},
    "a\x00b",
    "t" * 300,
    "203.0.113.7",
    " 10.0.0.1 ",
    "2001:db8::1",
    "1.2.3",
    "::",
]
PII_VALUES: list[Any] = [
    "Ann@Example.com",
    " ann%40example.com ",
    "Reach me at bob@example.org or carol@example.co.uk",
    "203.0.113.7",
    "::ffff:10.0.0.1",
    "2001:0DB8:0000::1",
    "+1 (555) 010-9999",
    "555-12",
    "5550109999",
    5550109999,
    1.5,
    Decimal("12345678901234567890123"),
    True,
    False,
    None,
    "",
    "  ",
    ["a@b.example", 12, None, {"ip": "10.0.0.2"}],
    {"home": "x@y.example", "n": 3},
    "zip",
    "Café@Exämple.com",
]
TRAITS: list[Any] = [
    {"email": "Ann@Example.com", "name": "Ann", "age": 40, "plan": "pro"},
    {"phone": "+1 555 010 9999", "address": {"zip": "75001", "city": "Paris"}},
    {},
    None,
    "pro",
    ["a"],
    {"emailVerified": True, "telephone": "12", "tip": 3},
]
PRODUCTS: list[Any] = [
    {
        "product_id": "p1",
        "sku": "SKU-1",
        "name": "Sneaker",
        "category": "shoes",
        "brand": "Acme",
        "variant": "red",
        "price": 49.99,
        "quantity": 2,
        "coupon": "SHOES10",
        "position": 3,
        "url": "https://shop.example/p1",
    },
    {"id": "p2", "price": "5", "quantity": "1"},
    {"sku": "SKU-3", "price": 0},
    {"productId": " p4 ", "price": "", "quantity": " "},
    {"product_id": "", "id": None, "sku": "s5"},
    {"product_id": 12, "price": -1},
    {"product_id": "p6", "quantity": "2.5"},
    {"product_id": "p7", "price": "1e20"},
    {"product_id": ["x"]},
    {"product_id": "p8", "position": -2},
    {"product_id": "p9", "name": "a\x00b"},
    "not a product",
    None,
    {},
]
PROPERTY_KEYS = [
    "product_id",
    "productId",
    "sku",
    "price",
    "currency",
    "quantity",
    "order_id",
    "url",
    "referrer",
    "name",
    "category",
    "revenue",
    "total",
    "shipping",
    "tax",
    "discount",
    "coupon",
    "products",
    "traits",
    "previousId",
    "groupId",
    "email",
    "ip",
    "phone_number",
    "title",
    "plan",
    "trial",
    "context",
    "user_id",
    "timestamp",
]
SCALARS: list[Any] = [*TEXTS, *IDS[:14], *PRICES[:6], "x", 0, False]
NESTED_KEYS = ["id", "url", "referrer", "price", "currency", "quantity", "page", "traits", "ip", "email", "x"]


def _value_for(rng: random.Random, key: str, depth: int = 0) -> Any:
    """A value for ``key``: from the pool that fits it mostly, from any pool sometimes."""
    if rng.random() < 0.12:
        key = rng.choice([*ALIAS_KEYS, "x"])
    lowered = key.lower()
    if lowered in ("id", "event_id", "eventid", "messageid", "user_id", "userid", "anonymous_id", "anonymousid"):
        return _choice(rng, IDS)
    if lowered in ("session_id", "sessionid", "order_id", "orderid", "product_id", "productid", "sku", "qty"):
        return _choice(rng, IDS if lowered != "qty" else QUANTITIES)
    if lowered in ("previousid", "previous_id", "groupid", "group_id"):
        return _choice(rng, IDS)
    if lowered in ("type", "event_type", "eventtype", "event"):
        return _choice(rng, EVENT_NAMES)
    if lowered in ("timestamp", "occurred_at", "ts", "time", "event_time", "originaltimestamp"):
        return _choice(rng, TIMESTAMPS)
    if lowered in ("price", "revenue", "total", "shipping", "tax", "discount"):
        return _choice(rng, PRICES)
    if lowered == "currency":
        return _choice(rng, CURRENCIES)
    if lowered == "quantity":
        return _choice(rng, QUANTITIES)
    if lowered in ("email", "ip", "phone_number", "phone", "client_ip", "emailaddress", "mobilephone"):
        return _choice(rng, PII_VALUES)
    if lowered == "traits":
        return _choice(rng, TRAITS)
    if lowered == "products":
        return rng.choice([_products(rng), [], None, "p1", {"p": 1}])
    if lowered in CONTAINERS and depth < 3 and rng.random() < 0.8:
        return _nested(rng, CONTAINERS[lowered], depth + 1)
    return _choice(rng, SCALARS)


CONTAINERS = {
    "user": ["id", "email", "name"],
    "session": ["id", "started"],
    "product": ["id", "price", "currency", "quantity", "name"],
    "order": ["id", "total"],
    "page": ["url", "referrer", "title"],
    "context": ["page", "ip", "traits", "userAgent", "library"],
    "properties": PROPERTY_KEYS,
}
ALIAS_KEYS = [
    *("id", "event_id", "eventId", "messageId", "type", "event_type", "eventType", "event"),
    *("timestamp", "occurred_at", "ts", "time", "event_time", "originalTimestamp"),
    *("user_id", "userId", "user", "anonymous_id", "anonymousId", "session_id", "sessionId", "session"),
    *("product_id", "productId", "sku", "product", "price", "currency", "quantity", "qty"),
    *("order_id", "orderId", "order", "page_url", "url", "page", "referrer", "context", "properties"),
    *("name", "category", "revenue", "total", "shipping", "tax", "discount", "coupon"),
    *("email", "ip", "phone_number", "traits", "products", "previousId", "groupId", "Email-Address", "clientIp"),
    *("mobilePhone", "zip", "telephone", "IPAddress", "user_email", "plan", "userAgent"),
]


def _nested(rng: random.Random, keys: list[str], depth: int) -> dict[str, Any]:
    chosen = rng.sample(keys, rng.randrange(0, min(len(keys), 5) + 1))
    if rng.random() < 0.2:
        chosen.append(rng.choice(NESTED_KEYS))
    return {key: _value_for(rng, key, depth) for key in chosen}


class _Raw(str):
    """JSON text written as it is (a nesting deeper than orjson writes)."""


def _deep_record(rng: random.Random) -> _Raw:
    opening = "".join(rng.choice(['{"a":', "["]) for _ in range(rng.choice([250, 253, 254, 255, 256, 300])))
    closing = "".join("}" if part == "{" else "]" for part in reversed(opening.replace('"a":', "")))
    inner = f'{opening}"ann@example.com"{closing}'
    return _Raw(f'{{"id":"e1","type":"purchase","timestamp":1754049600,"user_id":"u1","x":{inner}}}')


def _both_levels(rng: random.Random, record: dict[str, Any]) -> None:
    """Some keys both at the top and in ``properties``, with the same value or another (a clash)."""
    top = {key: _choice(rng, SCALARS) for key in rng.sample(["plan", "title", "tip", "x", "email", "ip", "url"], 2)}
    record.update(top)
    inner = record.get("properties")
    inner = dict(inner) if isinstance(inner, dict) else {}
    for key, value in top.items():
        inner[key] = value if rng.random() < 0.4 else _choice(rng, SCALARS)
    record["properties"] = inner


def random_record(rng: _Rng) -> Any:
    """A record: mostly event-shaped (a core of id, name, time and a user under some alias), sometimes anything."""
    roll = rng.random()
    if roll < 0.02:
        return rng.choice([[], "x", 3, None, [{"id": "e1"}]])
    if roll < 0.03:
        return _deep_record(rng)
    record: dict[str, Any] = {}
    rng.friendly = roll < 0.6
    if roll < 0.85:
        record[rng.choice(["id", "event_id", "eventId", "messageId", "id"])] = rng.choice(["e1", "e2", " e3 ", 9])
        name_key = rng.choice(["type", "event_type", "eventType", "event", "type"])
        record[name_key] = _choice(rng, EVENT_NAMES[:25]) if rng.random() < 0.9 else _choice(rng, EVENT_NAMES)
        if rng.random() < 0.3:
            record["type"] = rng.choice(["track", "page", "identify", "Track"])
        record[rng.choice(["timestamp", "occurred_at", "ts", "time", "event_time", "timestamp"])] = rng.choice(
            TIMESTAMPS[:18]
        )
        who = rng.choice(["user_id", "userId", "user", "anonymous_id", "anonymousId", "user_id"])
        record[who] = {"id": rng.choice(["u1", "u2", 5])} if who == "user" else rng.choice(["u1", "a1", 5])
    for key in rng.sample(ALIAS_KEYS, rng.randrange(0, 9)):
        record[key] = _value_for(rng, key)
    if rng.random() < 0.15:
        _both_levels(rng, record)
    if rng.random() < 0.1:
        page = {
            key: _choice(rng, TEXTS) for key in rng.sample(["url", "referrer", "title", "path"], rng.randrange(1, 4))
        }
        record["context"] = {"page": page} if rng.random() < 0.7 else {"page": page, "ip": "10.0.0.3"}
    items = list(record.items())
    if rng.random() < 0.3:
        rng.shuffle(items)
    return dict(items)


def corpus() -> Iterator[str]:
    """Every record of the corpus as exact JSON text, in a fixed order."""
    rng = _Rng(SEED)
    yield from demo_records()
    yield from segment_records(rng)
    for _ in range(RANDOM_RECORDS):
        record = random_record(rng)
        yield str(record) if isinstance(record, _Raw) else exact_json.dumps(record).decode()


def write_fixture(path: Path = FIXTURE) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write(orjson.dumps({"transform_version": TRANSFORM_VERSION}, option=orjson.OPT_APPEND_NEWLINE))
        for text in corpus():
            case = {"record": text, "outcomes": outcomes(exact_json.loads(text))}
            out.write(orjson.dumps(case, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count


def read_fixture(path: Path = FIXTURE) -> tuple[str, list[dict[str, Any]]]:
    with gzip.open(path, "rb") as source:
        header, *cases = (orjson.loads(line) for line in source)
    return header["transform_version"], cases


if __name__ == "__main__":
    print(f"{write_fixture():,} records written to {FIXTURE}")
