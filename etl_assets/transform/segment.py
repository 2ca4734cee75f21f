"""Segment's HTTP Tracking API, as pure functions: a request body in, the messages it carries out.

An application instrumented with a Segment-compatible SDK sends its events here by changing the host.
This module checks a body the way Segment's API does (size limits, a ``batch`` list of objects, a known
call type) and turns it into one message per event, completed the way Segment completes them on receipt:
the batch's ``context`` and ``integrations`` merged in, ``receivedAt`` stamped, ``timestamp`` corrected for
the sender's clock when only ``originalTimestamp`` is given, and a ``messageId`` derived from the content
when the sender gave none (so a retried request keeps its ids). The write key is dropped from what is kept.

Event names follow Segment's Ecommerce V2 spec (``Product Viewed``, ``Product Added``, ``Order Completed``,
…) or are the sender's own; ``normalize`` keeps each name and maps it onto the platform's event types
(``transform.vocabulary``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from etl_assets.transform import exact_json

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment rejects a single call (or a message inside a batch) larger than 32 KB."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment rejects a batch request larger than 500 KB."""

CALL_TYPES = ("track", "page", "screen", "identify", "group", "alias")
ENDPOINTS = {"batch": None, **{call: call for call in CALL_TYPES}}
"""Path under ``/v1/`` → the call type it implies (``None``: each message of the batch names its own)."""

_ENVELOPE_FIELDS = ("context", "integrations")
_DROPPED_FIELDS = ("writeKey",)


class InvalidRequest(ValueError):
    """The request cannot be accepted as a whole; ``str(error)`` is the reason sent back with the 400/413."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


def size_limit(endpoint: str) -> int:
    return MAX_BATCH_BYTES if endpoint == "batch" else MAX_MESSAGE_BYTES


def segment_messages(endpoint: str, body: Any, received_at: datetime) -> list[dict[str, Any]]:
    """The messages of a Tracking API call to ``/v1/<endpoint>``, completed and ready to stage.

    ``body`` is the parsed JSON. A body that is not an object, a batch that is not a list of objects, a
    message larger than 32 KB or of an unknown type raise ``InvalidRequest`` (the whole request is refused,
    nothing is kept). A message that is well formed but incomplete (no ``event`` name, no user) is kept:
    the transform quarantines it with the reason, so the rest of its batch is not lost with it.
    """
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(
            f"unknown endpoint /v1/{endpoint}: use /v1/batch or one of /v1/{', /v1/'.join(CALL_TYPES)}"
        )
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"the body must be a JSON object, not {_kind(body)}")
    call = ENDPOINTS[endpoint]
    if call is not None:
        _check_message_size(body, None)
        return [_complete({**body, "type": call}, {}, received_at)]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise InvalidRequest(f'"batch" must be a list of messages, not {_kind(batch)}')
    envelope = {name: body[name] for name in _ENVELOPE_FIELDS if isinstance(body.get(name), Mapping)}
    sent_at = body.get("sentAt")
    messages = []
    for position, message in enumerate(batch, start=1):
        if not isinstance(message, Mapping):
            raise InvalidRequest(f"batch message {position} must be a JSON object, not {_kind(message)}")
        _check_message_size(message, position)
        call_type = message.get("type")
        if call_type not in CALL_TYPES:
            raise InvalidRequest(
                f"batch message {position} has type {call_type!r}: expected one of {', '.join(CALL_TYPES)}"
            )
        if sent_at is not None and "sentAt" not in message:
            message = {**message, "sentAt": sent_at}
        messages.append(_complete(message, envelope, received_at))
    return messages


def _check_message_size(message: Mapping[str, Any], position: int | None) -> None:
    size = len(exact_json.dumps(message))
    if size > MAX_MESSAGE_BYTES:
        where = "the message" if position is None else f"batch message {position}"
        raise InvalidRequest(
            f"{where} is {size} bytes, over Segment's limit of {MAX_MESSAGE_BYTES} bytes per message", too_large=True
        )


def _complete(message: Mapping[str, Any], envelope: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    completed = {key: value for key, value in message.items() if key not in _DROPPED_FIELDS}
    for name, value in envelope.items():
        own = completed.get(name)
        completed[name] = {**value, **own} if isinstance(own, Mapping) else value
    received = _iso(received_at)
    completed["receivedAt"] = received
    if not completed.get("timestamp"):
        completed["timestamp"] = _corrected_timestamp(completed, received_at) or received
    if not completed.get("messageId"):
        completed["messageId"] = derived_message_id(message)
    return completed


def derived_message_id(message: Mapping[str, Any]) -> str:
    """An id for a message sent without one, from its content: a retry of the same message gets the same id."""
    content = {key: value for key, value in message.items() if key not in ("sentAt", *_DROPPED_FIELDS)}
    return "derived-" + hashlib.sha256(exact_json.dumps(content, sort_keys=True)).hexdigest()[:32]


def _corrected_timestamp(message: Mapping[str, Any], received_at: datetime) -> str | None:
    """Segment's clock-skew correction: ``receivedAt - (sentAt - originalTimestamp)``."""
    original, sent = _parse(message.get("originalTimestamp")), _parse(message.get("sentAt"))
    if original is None:
        return None
    if sent is None:
        return _iso(original)
    return _iso(received_at - (sent - original))


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
