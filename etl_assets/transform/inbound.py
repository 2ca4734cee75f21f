"""Requests the collector accepted, as pure data: what is archived, and the records each one carries.

The collector archives every accepted request body unchanged inside an ``InboundRequest`` (one JSON line
each); staging and any later replay get their records from the same function, ``request_records``, so a
replay of the archive stages exactly what the collector staged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from etl_assets.transform import exact_json
from etl_assets.transform.records import NUL_REASON, ParsedRecord, RejectedRecord, has_nul_escape
from etl_assets.transform.segment import InvalidRequest, segment_messages

SEGMENT_SOURCE = "segment"
"""The source of Segment calls made with a write key that names no source; ``segment:<name>`` for one that does."""
WEBHOOK_SOURCE_PREFIX = "webhook:"


def is_segment_source(source: str) -> bool:
    return source == SEGMENT_SOURCE or source.startswith(SEGMENT_SOURCE + ":")


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """One accepted request: where it came in, when, and its body exactly as sent (it parsed as JSON)."""

    source: str
    """``segment``, ``segment:<name>`` (the write key's source) or ``webhook:<partner>``."""
    endpoint: str
    """For Segment the call (``batch``, ``track``, …); for a webhook the partner."""
    received_at: datetime
    body: str

    def to_json_line(self) -> bytes:
        return orjson.dumps(
            {"source": self.source, "endpoint": self.endpoint, "received_at": self.received_at, "body": self.body}
        )

    @classmethod
    def from_json_line(cls, line: bytes) -> InboundRequest:
        value = orjson.loads(line)
        return cls(value["source"], value["endpoint"], datetime.fromisoformat(value["received_at"]), value["body"])


def webhook_events(body: Any) -> list[Any]:
    """The events of a partner webhook: ``{"events": [...]}``, a bare list, or one event object."""
    if isinstance(body, list):
        return body
    if isinstance(body, Mapping):
        events = body.get("events")
        if events is None:
            return [body]
        if isinstance(events, list):
            return events
        raise InvalidRequest('"events" must be a list of event objects')
    raise InvalidRequest("the body must be a JSON object or a list of events")


def request_messages(request: InboundRequest) -> list[Any]:
    """The events a request carries (raises ``InvalidRequest`` when the body cannot be accepted)."""
    try:
        body = exact_json.loads(request.body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"malformed JSON: {error}") from None
    if is_segment_source(request.source):
        return segment_messages(request.endpoint, body, request.received_at)
    return webhook_events(body)


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A request that passed its checks, with the events it carries (parsed once, when it was checked)."""

    request: InboundRequest
    messages: list[Any]

    @classmethod
    def parse(cls, request: InboundRequest) -> ParsedRequest:
        return cls(request, request_messages(request))


def request_records(
    requests: Iterable[InboundRequest | ParsedRequest], first_record_no: int = 1
) -> Iterator[ParsedRecord | RejectedRecord]:
    """The records of accepted requests in order, numbered from ``first_record_no`` across the requests.

    An event that is not a JSON object, or that holds a NUL character (PostgreSQL cannot store it), becomes a
    ``RejectedRecord`` with the reason, so it is quarantined rather than lost.
    """
    record_no = first_record_no
    for request in requests:
        messages = request.messages if isinstance(request, ParsedRequest) else request_messages(request)
        for message in messages:
            yield as_record(record_no, message)
            record_no += 1


def as_record(record_no: int, value: Any) -> ParsedRecord | RejectedRecord:
    text = exact_json.dumps(value)
    if not isinstance(value, Mapping):
        kind = "a list" if isinstance(value, list) else type(value).__name__
        return RejectedRecord(record_no, f"an event must be a JSON object, not {kind}", text)
    if has_nul_escape(text):
        return RejectedRecord(record_no, NUL_REASON, text)
    return ParsedRecord(record_no, dict(value), text.decode())
