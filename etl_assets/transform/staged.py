"""The whole transform of one record, as ingest runs it before staging: PII pseudonyms, normalize, order lines,
identity facts.

It runs once, where the record is first read, so a staging row carries the record as received and the columns
``events`` needs; the merge into ``events`` is then SQL alone. A record the transform rejects is staged with the
reason (and quarantined); a record that holds PII while no key is set is staged untransformed, and the day's
merge, which transforms it again, stops with the missing key's message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etl_assets.transform import TRANSFORM_VERSION
from etl_assets.transform.identity import NO_FACTS, IdentityFacts, identity_facts
from etl_assets.transform.normalize import AcceptedTimes, NormalizedEvent, RecordRejected, normalize
from etl_assets.transform.orders import OrderLine, order_lines
from etl_assets.transform.pii import PiiPolicy, pseudonymize_payload


@dataclass(frozen=True, slots=True)
class Transformed:
    """A record after the transform: its event with lines and identity facts, or why it was rejected."""

    event: NormalizedEvent | None
    lines: tuple[OrderLine, ...] = ()
    identity: IdentityFacts = NO_FACTS
    rejection: str | None = None
    rejected_rule: str | None = None


def transform_record(payload: Mapping[str, Any], accepted: AcceptedTimes, pii: PiiPolicy) -> Transformed:
    """The record's event, lines and identity facts; a ``RecordRejected`` becomes a rejection with its rule.

    Raises ``PiiKeyMissing`` when the record holds PII and ``pii`` has no key: nothing is made of it in clear.
    """
    try:
        event = normalize(pseudonymize_payload(payload, pii), accepted)
        return Transformed(event, order_lines(event), identity_facts(event))
    except RecordRejected as error:
        return Transformed(None, rejection=str(error), rejected_rule=error.rule)


DIGEST_BYTES = 16


def digest_prefix(source: str, pii: PiiPolicy) -> bytes:
    """What a record's digest binds besides the record: its source, the transform version, the PII fields and key.

    Two records with one digest make the same staging row, so a record re-sent with the digest of the version in
    ``events`` is already there. The key enters as its own digest, never in clear."""
    key = hashlib.blake2b(pii.key, digest_size=DIGEST_BYTES).hexdigest() if pii.key is not None else "-"
    return "\x1f".join((TRANSFORM_VERSION, source, ",".join(pii.fields), key, "")).encode()


def payload_digest(prefix: bytes, json_text: str) -> bytes:
    """The digest of a record as received (``json_text``) under ``prefix`` (``digest_prefix``)."""
    return hashlib.blake2b(prefix + json_text.encode(), digest_size=DIGEST_BYTES).digest()
