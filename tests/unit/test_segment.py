import copy
from datetime import UTC, date, datetime, timedelta, timezone

import orjson
import pytest

from etl_assets.transform.normalize import AcceptedTimes, normalize
from etl_assets.transform.segment import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    InvalidRequest,
    derived_message_id,
    segment_messages,
    size_limit,
)

RECEIVED = datetime(2025, 8, 1, 12, 10, 5, tzinfo=UTC)
RECEIVED_TEXT = "2025-08-01T12:10:05.000Z"
TRACK = {"event": "Product Viewed", "userId": "u1", "properties": {"product_id": "p1"}}


def invalid(endpoint, body) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        segment_messages(endpoint, body, RECEIVED)
    return raised.value


def one(endpoint, body, received_at=RECEIVED):
    (message,) = segment_messages(endpoint, body, received_at)
    return message


def body_of_size(size: int) -> dict:
    body = {**TRACK, "properties": {"pad": ""}}
    body["properties"]["pad"] = "a" * (size - len(orjson.dumps(body)))
    assert len(orjson.dumps(body)) == size
    return body


# --- size limits -------------------------------------------------------------------------------------------------


def test_size_limit_is_500_kb_for_a_batch_and_32_kb_for_a_single_call():
    assert size_limit("batch") == MAX_BATCH_BYTES == 500 * 1024
    for call in ("track", "page", "screen", "identify", "group", "alias"):
        assert size_limit(call) == MAX_MESSAGE_BYTES == 32 * 1024


def test_a_single_call_of_exactly_32_kb_is_accepted():
    assert one("track", body_of_size(MAX_MESSAGE_BYTES))["event"] == "Product Viewed"


def test_a_single_call_over_32_kb_is_refused_as_too_large():
    error = invalid("track", body_of_size(MAX_MESSAGE_BYTES + 1))
    assert error.too_large
    assert f"{MAX_MESSAGE_BYTES + 1} bytes" in str(error)


def test_a_batch_message_over_32_kb_refuses_the_whole_batch_and_names_its_position():
    batch = [{**TRACK, "type": "track"}, {**body_of_size(MAX_MESSAGE_BYTES + 1), "type": "track"}]
    error = invalid("batch", {"batch": batch})
    assert error.too_large
    assert "batch message 2" in str(error)


# --- validation --------------------------------------------------------------------------------------------------


def test_an_unknown_endpoint_is_refused():
    error = invalid("purchase", TRACK)
    assert "/v1/purchase" in str(error)
    assert not error.too_large


@pytest.mark.parametrize(
    ("body", "kind"), [([TRACK], "a list"), (None, "null"), ("x", "a string"), (3, "a number"), (True, "a boolean")]
)
def test_a_body_that_is_not_an_object_is_refused(body, kind):
    for endpoint in ("track", "batch"):
        error = invalid(endpoint, body)
        assert str(error) == f"the body must be a JSON object, not {kind}"
        assert not error.too_large


@pytest.mark.parametrize(("batch", "kind"), [(None, "null"), ({"type": "track"}, "an object"), ("x", "a string")])
def test_a_batch_that_is_not_a_list_is_refused(batch, kind):
    body = {} if batch is None else {"batch": batch}
    assert str(invalid("batch", body)) == f'"batch" must be a list of messages, not {kind}'


def test_a_batch_message_that_is_not_an_object_is_refused_with_its_position():
    error = invalid("batch", {"batch": [{**TRACK, "type": "track"}, [1, 2]]})
    assert str(error) == "batch message 2 must be a JSON object, not a list"


@pytest.mark.parametrize("call_type", [None, "purchase", "Track", 1])
def test_a_batch_message_of_an_unknown_type_is_refused(call_type):
    message = {**TRACK} if call_type is None else {**TRACK, "type": call_type}
    error = invalid("batch", {"batch": [message]})
    assert str(error).startswith(f"batch message 1 has type {call_type!r}")
    assert not error.too_large


def test_an_empty_batch_gives_no_messages():
    assert segment_messages("batch", {"batch": []}, RECEIVED) == []


def test_an_incomplete_message_is_kept_for_the_transform_to_quarantine():
    message = one("batch", {"batch": [{"type": "track"}]})
    assert message["type"] == "track"
    assert "event" not in message


def test_a_single_call_takes_its_type_from_the_endpoint():
    assert one("track", {**TRACK, "type": "page"})["type"] == "track"
    assert one("page", {"userId": "u1", "name": "Home"})["type"] == "page"


def test_the_input_body_is_not_modified():
    body = {
        "batch": [{**TRACK, "type": "track", "context": {"ip": "1.1.1.1"}}],
        "context": {"library": {"name": "x"}},
        "sentAt": "2025-08-01T12:00:00Z",
        "writeKey": "wk",
    }
    before = copy.deepcopy(body)
    segment_messages("batch", body, RECEIVED)
    assert body == before


# --- completion ----------------------------------------------------------------------------------------------------


def test_batch_context_and_integrations_are_merged_with_the_message_winning():
    body = {
        "batch": [
            {**TRACK, "type": "track", "context": {"ip": "5.6.7.8", "locale": "fr-FR"}, "integrations": {"All": False}},
            {**TRACK, "type": "track"},
        ],
        "context": {"ip": "1.2.3.4", "library": {"name": "analytics-python"}},
        "integrations": {"All": True, "Mixpanel": False},
    }
    merged, inherited = segment_messages("batch", body, RECEIVED)
    assert merged["context"] == {"ip": "5.6.7.8", "library": {"name": "analytics-python"}, "locale": "fr-FR"}
    assert merged["integrations"] == {"All": False, "Mixpanel": False}
    assert inherited["context"] == body["context"]
    assert inherited["integrations"] == body["integrations"]


def test_a_batch_context_that_is_not_an_object_is_ignored():
    message = one("batch", {"batch": [{**TRACK, "type": "track"}], "context": "mobile"})
    assert "context" not in message


def test_other_batch_level_fields_do_not_reach_the_messages():
    message = one("batch", {"batch": [{**TRACK, "type": "track"}], "writeKey": "wk", "extra": 1})
    assert "writeKey" not in message
    assert "extra" not in message


def test_the_write_key_is_dropped_from_single_calls_and_batch_messages():
    assert "writeKey" not in one("track", {**TRACK, "writeKey": "wk"})
    assert "writeKey" not in one("batch", {"batch": [{**TRACK, "type": "track", "writeKey": "wk"}]})


def test_received_at_is_stamped_in_utc_with_milliseconds_replacing_any_sent():
    paris = timezone(timedelta(hours=2))
    received = datetime(2025, 8, 1, 14, 10, 5, 123456, tzinfo=paris)
    message = one("track", {**TRACK, "receivedAt": "2020-01-01T00:00:00Z"}, received)
    assert message["receivedAt"] == "2025-08-01T12:10:05.123Z"


def test_the_batch_sent_at_is_given_to_messages_without_their_own():
    body = {
        "batch": [{**TRACK, "type": "track"}, {**TRACK, "type": "track", "sentAt": "2025-08-01T12:00:09Z"}],
        "sentAt": "2025-08-01T12:00:05Z",
    }
    first, second = segment_messages("batch", body, RECEIVED)
    assert first["sentAt"] == "2025-08-01T12:00:05Z"
    assert second["sentAt"] == "2025-08-01T12:00:09Z"


# --- timestamp -------------------------------------------------------------------------------------------------------


def test_timestamp_is_corrected_for_clock_skew_from_the_message_sent_at():
    """Device clock 10 minutes behind: sent 5 s after the event by its clock, received at 12:10:05 UTC."""
    message = one("track", {**TRACK, "originalTimestamp": "2025-08-01T12:00:00Z", "sentAt": "2025-08-01T12:00:05Z"})
    assert message["timestamp"] == "2025-08-01T12:10:00.000Z"
    assert message["originalTimestamp"] == "2025-08-01T12:00:00Z"


def test_timestamp_is_corrected_from_the_batch_sent_at():
    body = {
        "batch": [{**TRACK, "type": "track", "originalTimestamp": "2025-08-01T12:30:00.250+00:00"}],
        "sentAt": "2025-08-01T12:30:02Z",
    }
    # The device clock is ahead: receivedAt - (sentAt - originalTimestamp) = 12:10:05 - 1.75 s.
    assert one("batch", body)["timestamp"] == "2025-08-01T12:10:03.250Z"


def test_timestamp_correction_handles_offsets_and_naive_times_as_utc():
    message = one("track", {**TRACK, "originalTimestamp": "2025-08-01T14:00:00+02:00", "sentAt": "2025-08-01T12:00:05"})
    assert message["timestamp"] == "2025-08-01T12:10:00.000Z"


def test_without_sent_at_the_original_timestamp_is_taken_as_is():
    message = one("track", {**TRACK, "originalTimestamp": "2025-08-01T14:00:00+02:00"})
    assert message["timestamp"] == "2025-08-01T12:00:00.000Z"


def test_without_original_timestamp_the_timestamp_is_received_at():
    assert one("track", {**TRACK, "sentAt": "2025-08-01T12:00:05Z"})["timestamp"] == RECEIVED_TEXT


def test_an_unparseable_original_timestamp_falls_back_to_received_at():
    assert one("track", {**TRACK, "originalTimestamp": "yesterday"})["timestamp"] == RECEIVED_TEXT
    assert one("track", {**TRACK, "originalTimestamp": 1754049600})["timestamp"] == RECEIVED_TEXT


def test_a_timestamp_given_by_the_sender_is_kept_uncorrected():
    body = {
        **TRACK,
        "timestamp": "2025-08-01T09:00:00Z",
        "originalTimestamp": "2025-08-01T12:00:00Z",
        "sentAt": "2025-08-01T12:00:05Z",
    }
    assert one("track", body)["timestamp"] == "2025-08-01T09:00:00Z"


# --- messageId -------------------------------------------------------------------------------------------------------


def test_a_message_id_given_by_the_sender_is_kept():
    assert one("track", {**TRACK, "messageId": "m-1"})["messageId"] == "m-1"


def test_an_empty_message_id_is_replaced_by_a_derived_one():
    assert one("track", {**TRACK, "messageId": ""})["messageId"].startswith("derived-")


def test_a_derived_message_id_is_stable_across_retries_of_a_batch():
    """A retry is sent later: a new sentAt (batch and message level), a new receivedAt; the ids must not move."""
    messages = [
        {**TRACK, "type": "track", "originalTimestamp": "2025-08-01T12:00:00Z"},
        {"type": "page", "userId": "u1", "name": "Home", "sentAt": "2025-08-01T12:00:01Z"},
    ]
    first = segment_messages("batch", {"batch": messages, "sentAt": "2025-08-01T12:00:05Z"}, RECEIVED)
    retried_messages = [messages[0], {**messages[1], "sentAt": "2025-08-01T12:05:01Z"}]
    retry = segment_messages(
        "batch", {"batch": retried_messages, "sentAt": "2025-08-01T12:05:05Z"}, RECEIVED + timedelta(minutes=5)
    )
    first_ids = [message["messageId"] for message in first]
    assert first_ids == [message["messageId"] for message in retry]
    assert all(message_id.startswith("derived-") for message_id in first_ids)
    assert len(set(first_ids)) == 2


def test_a_derived_message_id_is_stable_across_retries_of_a_single_call():
    first = one("track", {**TRACK, "sentAt": "2025-08-01T12:00:05Z", "writeKey": "wk"})
    retry = one("track", {**TRACK, "sentAt": "2025-08-01T12:07:00Z"}, RECEIVED + timedelta(minutes=7))
    assert first["messageId"] == retry["messageId"]


def test_a_derived_message_id_does_not_depend_on_key_order():
    assert derived_message_id({"a": 1, "b": {"x": 1, "y": 2}}) == derived_message_id({"b": {"y": 2, "x": 1}, "a": 1})


def test_different_messages_get_different_derived_ids():
    ids = {
        one("track", TRACK)["messageId"],
        one("track", {**TRACK, "event": "Product Added"})["messageId"],
        one("track", {**TRACK, "originalTimestamp": "2025-08-01T12:00:00Z"})["messageId"],
        one("page", TRACK)["messageId"],
    }
    assert len(ids) == 4


def test_derived_message_id_format():
    message_id = derived_message_id(TRACK)
    assert message_id.startswith("derived-")
    suffix = message_id.removeprefix("derived-")
    assert len(suffix) == 32
    assert set(suffix) <= set("0123456789abcdef")


# --- through the normalizer ------------------------------------------------------------------------------------------

ACCEPTED = AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))
TIMESTAMP = "2025-08-01T12:00:00.000Z"


@pytest.mark.parametrize(
    ("call", "fields", "event_type"),
    [
        ("track", {"event": "Product Viewed", "properties": {"product_id": "p1", "price": 19.99}}, "product_view"),
        ("track", {"event": "Product Added", "properties": {"product_id": "p1", "quantity": 2}}, "add_to_cart"),
        ("track", {"event": "Product Removed", "properties": {"product_id": "p1"}}, "remove_from_cart"),
        ("track", {"event": "Checkout Started", "properties": {"order_id": "o1"}}, "checkout_started"),
        ("track", {"event": "Order Completed", "properties": {"order_id": "o1", "revenue": 25}}, "purchase"),
        ("page", {"name": "Home", "properties": {"url": "https://shop.example/"}}, "page_view"),
    ],
)
@pytest.mark.parametrize("endpoint", ["single", "batch"])
def test_ecommerce_v2_calls_normalize_to_platform_event_types(call, fields, event_type, endpoint):
    message = {"userId": "u1", "messageId": "m-1", "originalTimestamp": TIMESTAMP, **fields}
    if endpoint == "single":
        (completed,) = segment_messages(call, message, RECEIVED)
    else:
        (completed,) = segment_messages("batch", {"batch": [{**message, "type": call}]}, RECEIVED)
    event = normalize(completed, ACCEPTED)
    assert event.event_type == event_type
    assert event.event_id == completed["messageId"] == "m-1"
    assert event.user_id == "u1"
    assert event.occurred_at == datetime(2025, 8, 1, 12, tzinfo=UTC)


def test_a_derived_message_id_becomes_the_event_id():
    completed = one("track", {"event": "Order Completed", "userId": "u1", "originalTimestamp": TIMESTAMP})
    event = normalize(completed, ACCEPTED)
    assert event.event_id == completed["messageId"]
    assert event.event_id.startswith("derived-")


@pytest.mark.parametrize("call", ["identify", "alias", "group"])
def test_identify_alias_and_group_calls_are_events_of_their_own_type(call: str):
    completed = one(call, {"userId": "u1", "traits": {"plan": "pro"}, "messageId": "m-2"})
    event = normalize(completed, ACCEPTED)
    assert (event.event_type, event.user_id) == (call, "u1")
    assert event.properties is not None and event.properties["traits"] == {"plan": "pro"}
