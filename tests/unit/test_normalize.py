import dataclasses
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl_assets.transform import exact_json
from etl_assets.transform.normalize import (
    AcceptedTimes,
    NormalizedEvent,
    RecordRejected,
    event_key,
    normalize,
)
from etl_assets.transform.records import FileFormat, ParsedRecord, iter_records
from etl_assets.transform.vocabulary import EVENT_TYPES

ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
NOON = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)
BASE = {"id": "e1", "type": "page_view", "timestamp": "2025-08-01T12:00:00Z", "anonymous_id": "a1"}


def normalized(**fields: Any) -> NormalizedEvent:
    return normalize({**BASE, **fields}, ACCEPTED)


def rejection(payload: Any) -> str:
    with pytest.raises(RecordRejected) as raised:
        normalize(payload, ACCEPTED)
    return str(raised.value)


def test_the_production_guide_snippet():
    event = normalize(
        {"id": "e1", "type": "purchase", "timestamp": "2025-08-01T12:00:00Z", "user": {"id": "u123"}}, ACCEPTED
    )
    assert (event.event_id, event.user_id, event.event_type, event.occurred_at) == ("e1", "u123", "purchase", NOON)
    assert event.anonymous_id is None
    assert event.properties is None
    assert event.quality_tags == ("purchase_without_price",)


NESTED_LINE = (
    b"""{"id": "e42", "type": "purchase", "timestamp": "2025-08-01T14:00:00+02:00",
 "user": {"id": "u1"}, "anonymous_id": "a1", "session": {"id": "s1"},
 "product": {"id": "p1", "price": 19.99, "currency": "eur", "quantity": 2}, "order": {"id": "o1"},
 "page": {"url": "https://shop.example/p1", "referrer": "https://search.example/"},
 "properties": {"coupon": "SUMMER"}}""".replace(b"\n", b"")
    + b"\n"
)
FLAT_CSV = (
    b"id,type,timestamp,user_id,anonymous_id,session_id,product_id,quantity,price,currency,order_id,page_url,"
    b"referrer,coupon\r\n"
    b"e42,purchase,2025-08-01 12:00:00,u1,a1,s1,p1,2,19.99,EUR,o1,https://shop.example/p1,"
    b"https://search.example/,SUMMER\r\n"
)


def test_flat_csv_and_nested_json_of_the_same_event_give_the_same_event():
    (nested,) = iter_records(io.BytesIO(NESTED_LINE), FileFormat.JSONL)
    (flat,) = iter_records(io.BytesIO(FLAT_CSV), FileFormat.CSV)
    assert isinstance(nested, ParsedRecord)
    assert isinstance(flat, ParsedRecord)
    from_json = normalize(nested.payload, ACCEPTED)
    from_csv = normalize(flat.payload, ACCEPTED)
    # The CSV timestamp has no offset, so only the quality tag tells them apart.
    assert from_csv.quality_tags == ("timestamp_assumed_utc",)
    assert from_json.quality_tags == ()
    flat_payload = {**flat.payload, "timestamp": "2025-08-01T12:00:00Z"}
    assert normalize(flat_payload, ACCEPTED) == from_json
    assert from_json == NormalizedEvent(
        event_id="e42",
        occurred_at=NOON,
        event_type="purchase",
        event_name="purchase",
        user_id="u1",
        anonymous_id="a1",
        session_id="s1",
        product_id="p1",
        quantity=2,
        price=Decimal("19.9900"),
        currency="EUR",
        order_id="o1",
        page_url="https://shop.example/p1",
        referrer="https://search.example/",
        page_category=None,
        revenue=None,
        total=None,
        shipping=None,
        tax=None,
        discount=None,
        coupon="SUMMER",
        properties=None,
        quality_tags=(),
        content_hash=from_json.content_hash,
    )


def test_segment_track_call():
    event = normalize(
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "m-1",
            "userId": "u1",
            "anonymousId": "a1",
            "originalTimestamp": "2025-08-01T11:59:58Z",
            "timestamp": "2025-08-01T12:00:00Z",
            "context": {"page": {"url": "https://shop.example/thanks", "title": "Thanks"}, "ip": "10.0.0.1"},
            "properties": {"order_id": "o1", "price": 10, "currency": "usd", "products": [{"sku": "a"}]},
        },
        ACCEPTED,
    )
    assert (event.event_id, event.event_type, event.user_id, event.anonymous_id) == ("m-1", "purchase", "u1", "a1")
    assert (event.order_id, event.price, event.currency) == ("o1", Decimal("10.0000"), "USD")
    assert event.page_url == "https://shop.example/thanks"
    assert event.occurred_at == NOON
    assert event.properties == {
        "originalTimestamp": "2025-08-01T11:59:58Z",
        "context": {"page": {"title": "Thanks"}, "ip": "10.0.0.1"},
        "products": [{"sku": "a"}],
    }


@pytest.mark.parametrize(
    ("fields", "attribute", "expected"),
    [
        ({"id": None, "event_id": "x1"}, "event_id", "x1"),
        ({"id": None, "eventId": "x1"}, "event_id", "x1"),
        ({"id": None, "messageId": "x1"}, "event_id", "x1"),
        ({"id": "", "event_id": "x1"}, "event_id", "x1"),
        ({"type": None, "event_type": "purchase"}, "event_type", "purchase"),
        ({"type": None, "eventType": "purchase"}, "event_type", "purchase"),
        ({"type": None, "event": "purchase"}, "event_type", "purchase"),
        ({"user_id": "u1"}, "user_id", "u1"),
        ({"userId": "u1"}, "user_id", "u1"),
        ({"user": {"id": "u1"}}, "user_id", "u1"),
        ({"user": "u1"}, "user_id", "u1"),
        ({"user": 77}, "user_id", "77"),
        ({"anonymous_id": None, "anonymousId": "a2", "user_id": "u1"}, "anonymous_id", "a2"),
        ({"session_id": "s1"}, "session_id", "s1"),
        ({"sessionId": "s1"}, "session_id", "s1"),
        ({"session": {"id": "s1"}}, "session_id", "s1"),
        ({"product_id": "p1"}, "product_id", "p1"),
        ({"productId": "p1"}, "product_id", "p1"),
        ({"sku": "p1"}, "product_id", "p1"),
        ({"product": {"id": "p1"}}, "product_id", "p1"),
        ({"properties": {"product_id": "p1"}}, "product_id", "p1"),
        ({"properties": {"sku": "p1"}}, "product_id", "p1"),
        ({"price": "5"}, "price", Decimal("5.0000")),
        ({"product": {"price": 5}}, "price", Decimal("5.0000")),
        ({"properties": {"price": 5.5}}, "price", Decimal("5.5000")),
        ({"currency": "usd"}, "currency", "USD"),
        ({"product": {"currency": "usd"}}, "currency", "USD"),
        ({"properties": {"currency": "usd"}}, "currency", "USD"),
        ({"quantity": 3}, "quantity", 3),
        ({"qty": "3"}, "quantity", 3),
        ({"product": {"quantity": 3}}, "quantity", 3),
        ({"properties": {"quantity": 3.0}}, "quantity", 3),
        ({"order_id": "o1"}, "order_id", "o1"),
        ({"orderId": "o1"}, "order_id", "o1"),
        ({"order": {"id": "o1"}}, "order_id", "o1"),
        ({"properties": {"order_id": "o1"}}, "order_id", "o1"),
        ({"page_url": "https://a/"}, "page_url", "https://a/"),
        ({"url": "https://a/"}, "page_url", "https://a/"),
        ({"page": {"url": "https://a/"}}, "page_url", "https://a/"),
        ({"context": {"page": {"url": "https://a/"}}}, "page_url", "https://a/"),
        ({"properties": {"url": "https://a/"}}, "page_url", "https://a/"),
        ({"referrer": "https://r/"}, "referrer", "https://r/"),
        ({"page": {"referrer": "https://r/"}}, "referrer", "https://r/"),
        ({"context": {"page": {"referrer": "https://r/"}}}, "referrer", "https://r/"),
        ({"properties": {"referrer": "https://r/"}}, "referrer", "https://r/"),
    ],
)
def test_aliases(fields: dict[str, Any], attribute: str, expected: Any):
    event = normalized(**fields)
    assert getattr(event, attribute) == expected
    assert event.properties is None


def test_the_first_alias_wins_and_a_different_later_one_is_kept():
    event = normalized(user_id="u1", user={"id": "u2"}, id="e1", event_id="")
    assert (event.user_id, event.event_id) == ("u1", "e1")
    assert event.properties == {"user": {"id": "u2"}}


@pytest.mark.parametrize(
    "timestamp_field", ["timestamp", "occurred_at", "ts", "time", "event_time", "originalTimestamp"]
)
def test_timestamp_aliases(timestamp_field: str):
    payload = {**BASE, "timestamp": None, timestamp_field: "2025-08-01T12:00:00Z"}
    assert normalize(payload, ACCEPTED).occurred_at == NOON


@pytest.mark.parametrize(
    ("timestamp", "expected", "tags"),
    [
        ("2025-08-01T12:00:00Z", NOON, ()),
        ("2025-08-01T12:00:00.250Z", NOON + timedelta(milliseconds=250), ()),
        ("2025-08-01T14:00:00+02:00", NOON, ()),
        ("2025-08-01T07:30:00-04:30", NOON, ()),
        ("2025-08-01T12:00:00z", NOON, ()),
        ("2025-08-01 12:00:00 UTC", NOON, ()),
        ("2025-08-01T12:00:00", NOON, ("timestamp_assumed_utc",)),
        ("2025-08-01 12:00:00", NOON, ("timestamp_assumed_utc",)),
        ("2025-08-01 12:00:00.000001", NOON + timedelta(microseconds=1), ("timestamp_assumed_utc",)),
        (" 2025-08-01T12:00:00Z ", NOON, ()),
        (1754049600, NOON, ("timestamp_epoch",)),
        ("1754049600", NOON, ("timestamp_epoch",)),
        (1754049600.5, NOON + timedelta(milliseconds=500), ("timestamp_epoch",)),
        ("1754049600.5", NOON + timedelta(milliseconds=500), ("timestamp_epoch",)),
        (1754049600123, NOON + timedelta(milliseconds=123), ("timestamp_epoch",)),
        ("1754049600123", NOON + timedelta(milliseconds=123), ("timestamp_epoch",)),
        (1754049600123456, NOON + timedelta(microseconds=123456), ("timestamp_epoch",)),
        ("1754049600123456", NOON + timedelta(microseconds=123456), ("timestamp_epoch",)),
        (1754049600123456789, NOON + timedelta(microseconds=123456), ("timestamp_epoch",)),
    ],
)
def test_timestamps_become_utc(timestamp: Any, expected: datetime, tags: tuple[str, ...]):
    event = normalized(timestamp=timestamp)
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.quality_tags == tags


@pytest.mark.parametrize(
    ("timestamp", "shown"),
    [
        ("1900-01-01T00:00:00Z", "1900-01-01T00:00:00+00:00"),
        ("3000-01-01T00:00:00Z", "3000-01-01T00:00:00+00:00"),
        (-2208988800, "1900-01-01T00:00:00+00:00"),
        ("2026-11-22T00:00:00Z", "2026-11-22T00:00:00+00:00"),
        ("9999-12-31T23:00:00-05:00", "'9999-12-31T23:00:00-05:00'"),
    ],
)
def test_timestamps_outside_the_accepted_range_are_rejected(timestamp: Any, shown: str):
    assert rejection({**BASE, "timestamp": timestamp}) == (
        f"timestamp {shown} is outside the accepted range 2025-01-01 .. 2026-11-22"
    )


def test_the_earliest_accepted_moment_is_accepted():
    assert normalized(timestamp="2025-01-01T00:00:00Z").occurred_at == ACCEPTED.earliest


@pytest.mark.parametrize("timestamp", ["yesterday", "2025-13-01T00:00:00Z", True, [1754049600], {"at": 1}, "NaN"])
def test_unparseable_timestamps_are_rejected(timestamp: Any):
    assert rejection({**BASE, "timestamp": timestamp}).startswith("unparseable timestamp ")


def test_a_missing_timestamp_is_rejected():
    assert rejection({**BASE, "timestamp": " "}) == "no timestamp"


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (19.99, "19.9900"),
        ("19.99", "19.9900"),
        (" 19.99 ", "19.9900"),
        (0.1, "0.1000"),
        (0.30000000000000004, "0.3000"),
        (1.00005, "1.0001"),
        (20, "20.0000"),
        ("1e2", "100.0000"),
        (0, "0.0000"),
        (-0.0, "0.0000"),
        ("99999999999999.99", "99999999999999.9900"),
    ],
)
def test_prices_are_exact(price: Any, expected: str):
    event = normalized(price=price, currency="EUR")
    assert event.price is not None
    assert str(event.price) == expected


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        ("-1.00", "negative price -1.00"),
        (-5, "negative price -5"),
        ("abc", "price 'abc' is not a number"),
        ("19,99", "price '19,99' is not a number"),
        ("NaN", "price 'NaN' is not a number"),
        ("Infinity", "price 'Infinity' is not a number"),
        (float("nan"), "price nan is not a finite number"),
        (float("inf"), "price inf is not a finite number"),
        (True, "price True is not a number"),
        ({"amount": 1}, "price {'amount': 1} is not a number"),
        ("1e20", "price 1E+20 is too large (the limit is 100000000000000)"),
    ],
)
def test_bad_prices_are_rejected(price: Any, reason: str):
    assert rejection({**BASE, "price": price}) == reason


@pytest.mark.parametrize(("currency", "expected"), [("eur", "EUR"), (" usd ", "USD"), ("Gbp", "GBP")])
def test_currency_codes(currency: str, expected: str):
    assert normalized(currency=currency).currency == expected


@pytest.mark.parametrize(
    ("currency", "reason"),
    [
        ("EURO", "currency 'EURO' is not an ISO 4217 code"),
        ("E1R", "currency 'E1R' is not an ISO 4217 code"),
        ("€", "currency '€' is not an ISO 4217 code"),
        ("ÄÖÜ", "currency 'ÄÖÜ' is not an ISO 4217 code"),
        (978, "currency 978 is not an ISO 4217 code"),
    ],
)
def test_bad_currencies_are_rejected(currency: Any, reason: str):
    assert rejection({**BASE, "currency": currency}) == reason


def test_purchase_quality_tags():
    purchase = {**BASE, "type": "purchase"}
    assert normalize(purchase, ACCEPTED).quality_tags == ("purchase_without_price",)
    assert normalize({**purchase, "price": 5}, ACCEPTED).quality_tags == ("currency_missing",)
    assert normalize({**purchase, "price": 5, "currency": "EUR"}, ACCEPTED).quality_tags == ()
    assert normalize({**BASE, "price": 5}, ACCEPTED).quality_tags == ()
    tags = normalize({**purchase, "timestamp": "1754049600", "price": 5}, ACCEPTED).quality_tags
    assert tags == ("currency_missing", "timestamp_epoch")


@pytest.mark.parametrize(("quantity", "expected"), [(2, 2), ("2", 2), (" 2 ", 2), (2.0, 2), ("2.0", 2), (0, 0)])
def test_quantities(quantity: Any, expected: int):
    assert normalized(quantity=quantity).quantity == expected


@pytest.mark.parametrize(
    ("quantity", "reason"),
    [
        (-1, "negative quantity -1"),
        ("-3", "negative quantity '-3'"),
        (1.5, "quantity 1.5 is not a whole number"),
        ("two", "quantity 'two' is not a whole number"),
        (True, "quantity True is not a whole number"),
        (2**40, f"quantity {2**40} is too large (the limit is 2147483647)"),
    ],
)
def test_bad_quantities_are_rejected(quantity: Any, reason: str):
    assert rejection({**BASE, "quantity": quantity}) == reason


EVENT_TYPE_NAMES = {
    "page_view": ["page_view", "pageview", "page", "page_viewed", "Page Viewed", "screen", "PAGE-VIEW"],
    "product_view": ["product_view", "product_viewed", "Product Viewed", "view_item", "product"],
    "add_to_cart": ["add_to_cart", "Product Added", "cart_add", "add", "Add To Cart", "Wishlist Product Added to Cart"],
    "remove_from_cart": ["remove_from_cart", "Product Removed", "cart_remove"],
    "checkout_started": ["checkout_started", "Checkout Started", "begin_checkout", "checkout"],
    "purchase": ["purchase", "Order Completed", "order", "order_completed", "purchased", " Purchase "],
    "identify": ["identify"],
    "alias": ["alias"],
    "group": ["group"],
}
"""The names landing files have always sent, beside the spec's (``tests/unit/test_vocabulary.py``)."""


@pytest.mark.parametrize(
    ("name", "event_type"), [(name, event_type) for event_type, names in EVENT_TYPE_NAMES.items() for name in names]
)
def test_event_type_names(name: str, event_type: str):
    event = normalized(type=name)
    assert event.event_type == event_type
    assert event.event_name == name.strip()


def test_segment_track_calls_take_their_type_from_event():
    event = normalized(type="track", event="Product Added")
    assert event.event_type == "add_to_cart"
    assert event.properties is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": 3}, "event type 3 is not a name (text)"),
        ({"type": {"name": "x"}}, "event type {'name': 'x'} is not a name (text)"),
        ({"type": None}, "no event type"),
        ({"type": "  "}, "no event type"),
        ({"type": "track"}, "no event type"),
        ({"type": "x" * 1025}, "event type is 1,025 bytes long; a name may have at most 1,024"),
    ],
)
def test_missing_or_unusable_event_names_are_rejected(fields: dict[str, Any], reason: str):
    assert rejection({**BASE, **fields}) == reason


@pytest.mark.parametrize(
    ("event_id", "expected"),
    [
        (123, "123"),
        ("  e1 \t", "e1"),
        (12.0, "12"),
        ("cafe\u0301", "caf\u00e9"),
        ("6F9619FF-8B86-D011-B42D-00C04FC964FF", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        ("ORDER-ABCD-1234-EFGH-5678-IJKL-MNOPQR", "ORDER-ABCD-1234-EFGH-5678-IJKL-MNOPQR"),
    ],
)
def test_ids_are_canonical(event_id: Any, expected: str):
    assert normalized(id=event_id).event_id == expected


def test_ids_given_as_numbers_or_strings_are_the_same_event():
    as_numbers = normalized(id=123, user_id=456, anonymous_id=None, product_id=789, quantity=2)
    as_strings = normalized(id="123", user_id="456", anonymous_id=None, product_id="789", quantity="2")
    assert as_numbers == as_strings


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"id": None}, "no event id"),
        ({"id": "  "}, "no event id"),
        ({"id": True}, "event id True is not a string or a number"),
        ({"id": ["e1"]}, "event id ['e1'] is not a string or a number"),
        ({"anonymous_id": None}, "no user_id or anonymous_id"),
        ({"anonymous_id": None, "user": {"name": "Ann"}}, "no user_id or anonymous_id"),
        ({"user_id": {"id": 1}}, "user_id {'id': 1} is not a string or a number"),
        ({"user_id": "u\x001"}, "user_id: NUL character (PostgreSQL text cannot hold it)"),
    ],
)
def test_missing_or_invalid_ids_are_rejected(fields: dict[str, Any], reason: str):
    assert rejection({**BASE, **fields}) == reason


@pytest.mark.parametrize("payload", [None, [], ["e1"], "e1", 12])
def test_a_record_that_is_not_an_object_is_rejected(payload: Any):
    assert rejection(payload).startswith("record is ")


def test_unknown_fields_land_in_properties():
    event = normalized(
        browser="firefox",
        user={"id": "u1", "email": "ann@example.com"},
        product={"id": "p1", "name": "Mug"},
        page={"url": "https://a/"},
        properties={"coupon": "X", "sku": "p9", "tags": ["a", "b"]},
    )
    assert (event.user_id, event.product_id, event.page_url) == ("u1", "p1", "https://a/")
    assert event.properties == {
        "browser": "firefox",
        "user": {"email": "ann@example.com"},
        "product": {"name": "Mug"},
        "sku": "p9",
        "coupon": "X",
        "tags": ["a", "b"],
    }


def test_a_properties_key_clashing_with_a_top_level_field_is_kept():
    event = normalized(coupon="A", properties={"coupon": "B", "color": "red", "size": 3})
    assert event.properties == {"coupon": "A", "color": "red", "size": 3, "properties": {"coupon": "B"}}
    same = normalized(coupon="A", properties={"coupon": "A"})
    assert same.properties == {"coupon": "A"}


def test_empty_values_read_as_missing_like_empty_csv_fields():
    event = normalized(coupon=None, note="  ", user={"id": None, "email": ""}, properties={"size": None})
    assert event.properties is None
    assert event == normalized()


def test_properties_that_are_not_an_object_are_kept_as_they_are():
    assert normalized(properties="gift").properties == {"properties": "gift"}


FULL = {
    "id": "e1",
    "type": "purchase",
    "timestamp": "2025-08-01T12:00:00Z",
    "user_id": "u1",
    "anonymous_id": "a1",
    "session_id": "s1",
    "product_id": "p1",
    "quantity": 1,
    "price": "9.99",
    "currency": "EUR",
    "order_id": "o1",
    "page_url": "https://a/",
    "referrer": "https://r/",
    "coupon": "X",
}


@pytest.mark.parametrize(
    "change",
    [
        {"id": "e2"},
        {"timestamp": "2025-08-01T12:00:01Z"},
        {"type": "add_to_cart"},
        {"user_id": "u2"},
        {"anonymous_id": "a2"},
        {"session_id": "s2"},
        {"product_id": "p2"},
        {"quantity": 2},
        {"price": "9.98"},
        {"currency": "USD"},
        {"order_id": "o2"},
        {"page_url": "https://b/"},
        {"referrer": "https://s/"},
        {"coupon": "Y"},
        {"coupon": None},
        {"campaign": "summer"},
        {"price": None},
        {"timestamp": "2025-08-01T12:00:00"},
    ],
)
def test_content_hash_changes_with_any_field(change: dict[str, Any]):
    original = normalize(FULL, ACCEPTED)
    changed = normalize({**FULL, **change}, ACCEPTED)
    assert changed != original
    assert changed.content_hash != original.content_hash


def test_content_hash_is_stable_for_the_same_content():
    first = normalize(FULL, ACCEPTED)
    reordered = normalize(dict(reversed(list(FULL.items()))), ACCEPTED)
    respelled = normalize({**FULL, "price": 9.99, "currency": " eur", "quantity": "1"}, ACCEPTED)
    assert len(first.content_hash) == 32
    int(first.content_hash, 16)
    assert first.content_hash == reordered.content_hash == respelled.content_hash
    assert normalize(FULL, ACCEPTED) == first


def test_event_key_agrees_with_normalize():
    payload = {**FULL, "id": None, "messageId": 991, "timestamp": "2025-08-01T14:00:00+02:00"}
    key = event_key(payload, ACCEPTED)
    event = normalize(payload, ACCEPTED)
    assert (key.event_id, key.occurred_at) == (event.event_id, event.occurred_at) == ("991", NOON)


def test_event_key_rejects_what_it_cannot_key():
    with pytest.raises(RecordRejected, match="no event id"):
        event_key({"timestamp": "2025-08-01T12:00:00Z"}, ACCEPTED)
    with pytest.raises(RecordRejected, match="outside the accepted range"):
        event_key({"id": "e1", "timestamp": "1900-01-01T00:00:00Z"}, ACCEPTED)


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("value", [2**70, "\ud800", {1: "one"}, nested_lists(300)])
def test_properties_that_cannot_be_stored_as_json_are_rejected(value: Any):
    assert rejection({**BASE, "extra": value}).startswith("record cannot be stored as JSON: ")


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("id", "event id [[[[...]]]] is not a string or a number"),
        ("type", "event type [[[[...]]]] is not a name (text)"),
        ("timestamp", "unparseable timestamp [[[[...]]]]"),
        ("anonymous_id", "anonymous_id [[[[...]]]] is not a string or a number"),
        ("page_url", "page_url [[[[...]]]] is not a string or a number"),
        ("price", "price [[[[...]]]] is not a number"),
        ("currency", "currency [[[[...]]]] is not an ISO 4217 code"),
        ("quantity", "quantity [[[[...]]]] is not a whole number"),
    ],
)
def test_a_value_nested_1000_deep_is_rejected_with_a_short_reason_not_a_recursion_error(field: str, reason: str):
    assert rejection({**BASE, field: nested_lists(1000)}) == reason


@pytest.mark.parametrize("field", ["id", "user_id", "anonymous_id", "session_id", "product_id", "order_id"])
def test_ids_may_have_at_most_1024_bytes_the_indexes_can_hold(field: str):
    name = "event id" if field == "id" else field
    assert getattr(normalized(**{field: "e" * 1024}), "event_id" if field == "id" else field) == "e" * 1024
    assert rejection({**BASE, field: "e" * 1025}) == f"{name} is 1,025 bytes long; an id may have at most 1,024"
    assert rejection({**BASE, field: "\u00e9" * 513}) == f"{name} is 1,026 bytes long; an id may have at most 1,024"


@pytest.mark.parametrize(
    ("event_id", "expected"),
    [(2**63, "9223372036854775808"), (2**64 - 1, "18446744073709551615"), (float(2**53 - 1), "9007199254740991")],
)
def test_whole_numbers_as_ids_keep_their_digits(event_id: int | float, expected: str):
    assert normalized(id=event_id).event_id == expected


@pytest.mark.parametrize("number", [float(2**53), 1.2345678901234568e29, -1e300])
def test_an_id_given_as_a_float_too_large_to_be_exact_is_rejected_not_rounded(number: float):
    """JSON parsers read an integer beyond 64 bits as a double: its digits would not be the ones sent."""
    assert rejection({**BASE, "id": number}) == (
        f"event id {number!r} is a number too large to be exact: send it as a string"
    )


def test_an_id_sent_as_a_whole_number_past_64_bits_is_rejected_though_its_digits_were_read_exactly():
    """The parsers keep such a number's digits (``exact_json``); every other reader of the sender's JSON takes it for
    a double, so it is refused as it always was, and a product id's digits are kept."""
    record = exact_json.loads(b'{"id": 123456789012345678901234567890, "product_id": 123456789012345678901234567891}')
    assert record["id"] == Decimal("123456789012345678901234567890")
    assert rejection({**BASE, **record}) == (
        "event id 1.2345678901234568e+29 is a number too large to be exact: send it as a string"
    )
    assert normalized(product_id=record["product_id"]).product_id == "123456789012345678901234567891"
    assert normalized(id=Decimal("0.12345678901234567890123")).event_id == "0.12345678901234567890123"


def test_a_reason_shows_a_huge_value_cut_short():
    reason = rejection({**BASE, "price": "-" + "9" * 5000})
    assert reason == "negative price -" + "9" * 56 + "..."


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
KNOWN_KEYS = sorted(
    {
        *("id", "event_id", "eventId", "messageId", "type", "event_type", "eventType", "event"),
        *("timestamp", "occurred_at", "ts", "time", "event_time", "originalTimestamp"),
        *("user_id", "userId", "user", "anonymous_id", "anonymousId", "session_id", "sessionId", "session"),
        *("product_id", "productId", "sku", "product", "price", "currency", "quantity", "qty"),
        *("order_id", "orderId", "order", "page_url", "url", "page", "referrer", "context", "properties"),
    }
)
PLAUSIBLE_VALUES = st.sampled_from(
    [
        "e1",
        "purchase",
        "Order Completed",
        "track",
        "2025-08-01T12:00:00Z",
        "2025-08-01 12:00:00",
        1754049600,
        "1754049600123",
        "19.99",
        -1,
        "EUR",
        {"id": "x1"},
        {"id": None},
        {"page": {"url": "https://a/"}},
        {"price": "1.5", "sku": "p1"},
        "",
    ]
)
FIELD_VALUES = JSON_VALUES | PLAUSIBLE_VALUES
KNOWN_SHAPES = st.dictionaries(st.sampled_from(KNOWN_KEYS), FIELD_VALUES, max_size=14)
NESTED_SHAPES = st.fixed_dictionaries(
    {"id": FIELD_VALUES, "type": FIELD_VALUES, "timestamp": FIELD_VALUES},
    optional={
        "user": st.fixed_dictionaries({}, optional={"id": FIELD_VALUES, "email": JSON_VALUES}) | FIELD_VALUES,
        "anonymous_id": FIELD_VALUES,
        "product": st.fixed_dictionaries(
            {}, optional={"id": FIELD_VALUES, "price": FIELD_VALUES, "currency": FIELD_VALUES, "quantity": FIELD_VALUES}
        ),
        "context": st.fixed_dictionaries({"page": st.dictionaries(st.sampled_from(["url", "referrer"]), FIELD_VALUES)}),
        "properties": st.dictionaries(st.sampled_from([*KNOWN_KEYS, "coupon"]), FIELD_VALUES, max_size=6),
    },
)

VALID_CORE = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["e1", 7, " e2 "]),
        "type": st.sampled_from(["purchase", "Product Added", "page"]),
        "timestamp": st.sampled_from(["2025-08-01T12:00:00Z", "2025-08-01 12:00:00", 1754049600123]),
        "anonymous_id": st.sampled_from(["a1", 3]),
    }
)
MOSTLY_VALID = st.tuples(
    VALID_CORE | NESTED_SHAPES, st.dictionaries(st.sampled_from([*KNOWN_KEYS, "coupon"]), FIELD_VALUES, max_size=8)
).map(lambda parts: {**parts[0], **parts[1]})


@settings(max_examples=1000, deadline=None)
@given(JSON_VALUES | KNOWN_SHAPES | NESTED_SHAPES | MOSTLY_VALID)
def test_normalize_raises_only_record_rejected(payload: Any):
    try:
        event = normalize(payload, ACCEPTED)
    except RecordRejected as rejected:
        assert str(rejected)
        return
    key = event_key(payload, ACCEPTED)
    assert (key.event_id, key.occurred_at) == (event.event_id, event.occurred_at)
    assert event.event_type in EVENT_TYPES
    assert event.user_id is not None or event.anonymous_id is not None
    assert ACCEPTED.earliest <= event.occurred_at < ACCEPTED.latest
    assert event.price is None or (event.price >= 0 and event.price.as_tuple().exponent == -4)
    assert list(event.quality_tags) == sorted(set(event.quality_tags))
    assert event.properties is None or orjson.loads(orjson.dumps(event.properties)) is not None
    assert normalize(payload, ACCEPTED) == event


def test_a_normalized_event_is_a_frozen_normalized_event_equal_to_one_built_by_its_constructor():
    event = normalized(user={"id": "u1"}, product={"id": "p1", "price": "19.99", "currency": "eur"}, plan="pro")
    assert type(event) is NormalizedEvent
    rebuilt = NormalizedEvent(*(getattr(event, name) for name in NormalizedEvent.__slots__))
    assert event == rebuilt
    assert repr(event) == repr(rebuilt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.user_id = "u2"  # type: ignore[misc]


def test_records_of_one_shape_are_each_read_for_their_own_values():
    """The aliases a set of keys holds are worked out once: two records of the same keys still differ by value."""
    first = normalized(user={"id": "u1"}, session={"id": "s1"}, price="1.5", currency="EUR")
    second = normalized(user={"id": " "}, user_id="u2", session={"id": ""}, price="2", currency="usd")
    blank = normalized(user={"id": "u3"}, session=" ", price=None, currency="gbp")
    assert (first.user_id, first.session_id, first.price, first.properties) == ("u1", "s1", Decimal("1.5000"), None)
    assert (second.user_id, second.session_id, second.price, second.currency) == ("u2", None, Decimal("2.0000"), "USD")
    assert second.properties is None
    assert (blank.user_id, blank.session_id, blank.price, blank.currency) == ("u3", None, None, "GBP")
