from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl_assets.transform.inbound import (
    SEGMENT_SOURCE,
    WEBHOOK_SOURCE_PREFIX,
    InboundRequest,
    as_record,
    request_messages,
    request_records,
    webhook_events,
)
from etl_assets.transform.records import NUL_REASON, ParsedRecord, RejectedRecord
from etl_assets.transform.segment import InvalidRequest

RECEIVED = datetime(2025, 8, 1, 12, 0, 0, 123456, tzinfo=UTC)


def webhook(body, partner="shop") -> InboundRequest:
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    return InboundRequest(WEBHOOK_SOURCE_PREFIX + partner, partner, RECEIVED, text)


# --- InboundRequest as a JSON line -----------------------------------------------------------------------------------


def test_a_request_round_trips_through_its_json_line():
    request = InboundRequest(SEGMENT_SOURCE, "batch", RECEIVED, '{"batch": [\n  {"type": "track"}\n]}')
    line = request.to_json_line()
    assert b"\n" not in line
    assert InboundRequest.from_json_line(line) == request


def test_the_json_line_keeps_the_body_text_unchanged():
    body = '{ "b": 1,   "a": "é\\u00e9" }'
    value = orjson.loads(webhook(body).to_json_line())
    assert value == {"source": "webhook:shop", "endpoint": "shop", "received_at": RECEIVED.isoformat(), "body": body}


def test_a_received_at_with_an_offset_keeps_its_instant():
    received = datetime(2025, 8, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    restored = InboundRequest.from_json_line(InboundRequest("webhook:x", "x", received, "{}").to_json_line())
    assert restored.received_at == datetime(2025, 8, 1, 12, 0, tzinfo=UTC)
    assert restored.received_at.utcoffset() == timedelta(hours=2)


@given(
    source=st.text(),
    endpoint=st.text(),
    received_at=st.datetimes(timezones=st.just(UTC)),
    body=st.text(),
)
def test_any_request_round_trips_through_its_json_line(source, endpoint, received_at, body):
    request = InboundRequest(source, endpoint, received_at, body)
    line = request.to_json_line()
    assert b"\n" not in line
    assert InboundRequest.from_json_line(line) == request


# --- webhook bodies --------------------------------------------------------------------------------------------------


def test_webhook_events_from_an_events_object():
    assert webhook_events({"events": [{"id": "e1"}, {"id": "e2"}], "delivery": "d1"}) == [{"id": "e1"}, {"id": "e2"}]


def test_webhook_events_from_a_bare_list():
    assert webhook_events([{"id": "e1"}, 3]) == [{"id": "e1"}, 3]


def test_webhook_events_from_a_single_event_object():
    assert webhook_events({"id": "e1", "type": "purchase"}) == [{"id": "e1", "type": "purchase"}]


def test_webhook_events_from_an_empty_events_list():
    assert webhook_events({"events": []}) == []


@pytest.mark.parametrize("events", ["e1", {"id": "e1"}, 3])
def test_webhook_events_that_are_not_a_list_are_refused(events):
    with pytest.raises(InvalidRequest, match='"events" must be a list'):
        webhook_events({"events": events})


@pytest.mark.parametrize("body", ["text", 3, None, True])
def test_a_webhook_body_that_is_neither_object_nor_list_is_refused(body):
    with pytest.raises(InvalidRequest, match="must be a JSON object or a list"):
        webhook_events(body)


# --- request_messages ------------------------------------------------------------------------------------------------


def test_malformed_json_is_an_invalid_request():
    for request in (webhook('{"id": '), InboundRequest(SEGMENT_SOURCE, "track", RECEIVED, "not json")):
        with pytest.raises(InvalidRequest, match="malformed JSON"):
            request_messages(request)


def test_a_segment_request_gives_completed_segment_messages():
    body = '{"batch": [{"type": "track", "event": "Product Viewed", "userId": "u1"}], "writeKey": "wk"}'
    (message,) = request_messages(InboundRequest(SEGMENT_SOURCE, "batch", RECEIVED, body))
    assert message["event"] == "Product Viewed"
    assert message["receivedAt"] == "2025-08-01T12:00:00.123Z"
    assert message["messageId"].startswith("derived-")


def test_an_invalid_segment_request_is_refused():
    with pytest.raises(InvalidRequest, match="batch"):
        request_messages(InboundRequest(SEGMENT_SOURCE, "batch", RECEIVED, '{"batch": 1}'))


def test_a_webhook_request_is_not_read_as_segment():
    """A webhook body shaped like a Segment batch is one event, not its messages."""
    body = {"batch": [{"type": "track"}]}
    assert request_messages(webhook(body)) == [body]


# --- records ---------------------------------------------------------------------------------------------------------


def test_records_are_numbered_across_requests_from_the_first_number():
    requests = [webhook({"events": [{"id": "a"}, {"id": "b"}]}), webhook([]), webhook({"id": "c"})]
    records = list(request_records(requests, first_record_no=10))
    assert [(record.record_no, record.payload["id"]) for record in records] == [(10, "a"), (11, "b"), (12, "c")]


def test_records_are_numbered_from_one_by_default():
    assert [record.record_no for record in request_records([webhook([{"id": "a"}, {"id": "b"}])])] == [1, 2]


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=5), max_size=6),
    first=st.integers(min_value=1, max_value=10**9),
)
def test_record_numbers_are_contiguous_whatever_the_request_sizes(sizes, first):
    requests = [webhook([{"request": i, "event": j} for j in range(size)]) for i, size in enumerate(sizes)]
    records = list(request_records(requests, first))
    assert [record.record_no for record in records] == list(range(first, first + sum(sizes)))
    assert [(record.payload["request"], record.payload["event"]) for record in records] == [
        (i, j) for i, size in enumerate(sizes) for j in range(size)
    ]


def test_a_rejected_event_keeps_its_number_and_the_next_continues():
    records = list(request_records([webhook([{"id": "a"}, "oops", {"id": "b"}])]))
    assert [(type(record), record.record_no) for record in records] == [
        (ParsedRecord, 1),
        (RejectedRecord, 2),
        (ParsedRecord, 3),
    ]


def test_a_parsed_record_carries_the_event_and_its_json():
    record = as_record(7, {"id": "e1", "price": 1.5, "tags": ["a"]})
    assert record == ParsedRecord(7, {"id": "e1", "price": 1.5, "tags": ["a"]}, '{"id":"e1","price":1.5,"tags":["a"]}')


@pytest.mark.parametrize(
    ("value", "kind"), [([1, 2], "a list"), ("e1", "str"), (3, "int"), (1.5, "float"), (None, "NoneType")]
)
def test_an_event_that_is_not_an_object_is_rejected(value, kind):
    record = as_record(4, value)
    assert record == RejectedRecord(4, f"an event must be a JSON object, not {kind}", orjson.dumps(value))


@pytest.mark.parametrize("event", [{"id": "a\x00b"}, {"id": "e1", "properties": {"note": ["\x00"]}}, {"k\x00": 1}])
def test_an_event_holding_a_nul_character_is_rejected(event):
    record = as_record(2, event)
    assert isinstance(record, RejectedRecord)
    assert record.reason == NUL_REASON
    assert record.raw == orjson.dumps(event)


def test_a_nul_event_in_a_request_is_rejected_with_its_raw_json():
    (record,) = request_records([webhook('{"events": [{"id": "a\\u0000"}]}')])
    assert record == RejectedRecord(1, NUL_REASON, b'{"id":"a\\u0000"}')


def test_an_invalid_request_among_requests_raises():
    with pytest.raises(InvalidRequest):
        list(request_records([webhook([{"id": "a"}]), webhook('{"events": 1}')]))


def test_the_text_backslash_u0000_is_not_taken_for_a_nul_character():
    record = as_record(1, {"path": "C:\\u0000x"})
    assert isinstance(record, ParsedRecord)
    assert record.payload == {"path": "C:\\u0000x"}
