"""The digest that recognizes a re-sent record, and the event id read without the rest of the transform (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from etl_assets.transform.normalize import AcceptedTimes, event_id_of, event_key
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.staged import DIGEST_BYTES, digest_prefix, payload_digest

ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
RECORD = '{"id": "e1", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z", "user": {"id": "u1"}}'


def test_the_same_record_under_the_same_transform_has_the_same_digest():
    prefix = digest_prefix("s3", PiiPolicy(key=b"k"))
    assert payload_digest(prefix, RECORD) == payload_digest(digest_prefix("s3", PiiPolicy(key=b"k")), RECORD)
    assert len(payload_digest(prefix, RECORD)) == DIGEST_BYTES


@pytest.mark.parametrize(
    ("source", "pii", "record"),
    [
        ("segment", PiiPolicy(key=b"k"), RECORD),
        ("s3", PiiPolicy(key=b"another key"), RECORD),
        ("s3", PiiPolicy(), RECORD),
        ("s3", PiiPolicy(fields=("email",), key=b"k"), RECORD),
        ("s3", PiiPolicy(key=b"k"), RECORD.replace("u1", "u2")),
    ],
)
def test_another_source_key_pii_field_or_record_makes_another_digest(source, pii, record):
    assert payload_digest(digest_prefix(source, pii), record) != payload_digest(
        digest_prefix("s3", PiiPolicy(key=b"k")), RECORD
    )


def test_the_key_is_never_in_the_prefix_in_clear():
    assert b"secret-key" not in digest_prefix("s3", PiiPolicy(key=b"secret-key"))


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "e1", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z"},
        {"messageId": "m-7", "type": "track", "event": "Product Viewed", "timestamp": "2025-08-01T10:00:00Z"},
        {"event_id": 42, "event_type": "page_view", "occurred_at": "2025-08-01T10:00:00Z"},
    ],
)
def test_event_id_of_reads_the_id_event_key_reads(payload):
    assert event_id_of(payload) == event_key(payload, ACCEPTED).event_id


@pytest.mark.parametrize("payload", [{"type": "page_view"}, {"id": ["a list"]}, {"id": Decimal(2**60)}, []])
def test_event_id_of_is_none_when_the_record_has_no_usable_id(payload):
    assert event_id_of(payload) is None
