"""Signed partner webhooks: HMAC-SHA256 over the timestamp and the body, with a per-partner secret.

A partner sends two headers::

    X-Webhook-Timestamp: 1763721600                       (Unix seconds when it signed)
    X-Webhook-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">

Several ``v1=`` values may be given, comma-separated, and a partner may have several secrets, so a secret
can be rotated without a window where good requests fail. A timestamp further than the tolerance from now
is refused: a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureRejected(Exception):
    """The request is not proven to come from the partner now; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Webhook-Signature`` value a partner sends for ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def verify(
    secrets: Sequence[str],
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Return if one of the signatures matches one of ``secrets`` and the timestamp is fresh; raise otherwise."""
    if not timestamp_header or not signature_header:
        raise SignatureRejected("missing_signature", f"send both {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        raise SignatureRejected("bad_signature", f"{TIMESTAMP_HEADER} must be Unix seconds") from None
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureRejected(
            "stale_timestamp",
            f"{TIMESTAMP_HEADER} is {abs(now - timestamp):.0f}s from now (tolerance {tolerance_seconds}s): "
            "sign each delivery when it is sent",
        )
    offered = [
        value.strip()[len(SCHEME) + 1 :]
        for value in signature_header.split(",")
        if value.strip().startswith(f"{SCHEME}=")
    ]
    expected = [sign(secret, timestamp, body)[len(SCHEME) + 1 :] for secret in secrets]
    offered_bytes = [value.encode("utf-8", "replace") for value in offered]
    if not any(hmac.compare_digest(mine.encode(), theirs) for mine in expected for theirs in offered_bytes):
        raise SignatureRejected("bad_signature", "the signature does not match the body and timestamp")
