"""The raw archive: every byte that entered, unchanged, under ``raw/source=<s>/ingest_date=<day>/``.

Landing files are copied server-side (``sources/landing.py``); bodies that arrive over HTTP (API pages,
collector requests) are written here from memory, with their SHA-256 as metadata and server-side
encryption, before anything of them is staged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class ArchivedBody:
    key: str
    sha256: str
    byte_count: int


def body_key(source: str, ingest_date: date, name: str) -> str:
    return f"raw/source={source}/ingest_date={ingest_date.isoformat()}/{name}"


def archive_body(client: Any, bucket: str, key: str, body: bytes, content_type: str) -> ArchivedBody:
    """Put ``body`` into the archive; putting the same key again (a retried page) writes the same bytes."""
    sha256 = hashlib.sha256(body).hexdigest()
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        Metadata={"sha256": sha256},
        ServerSideEncryption="AES256",
    )
    return ArchivedBody(key, sha256, len(body))
