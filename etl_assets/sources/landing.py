"""Landing files in S3: listing what is new, archiving the bytes with their checksum, reading them back.

Listing uses ``StartAfter`` from a cursor, so a sensor tick costs what is new rather than what exists.
Keys that sort before the cursor (a file re-uploaded with new content, a late key) are found by a
sweep: a slow pass over the whole prefix, one page per tick, that proposes only objects whose
``key#etag`` is not yet in the ``raw_batches`` ledger.
"""

from __future__ import annotations

import hashlib
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import orjson

SOURCE = "s3"
LIST_PAGE_SIZE = 1000
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class LandingObject:
    key: str
    etag: str
    size: int

    @property
    def batch_id(self) -> str:
        """Stable id of this content at this key: a re-upload with new bytes is a new batch, the same bytes never."""
        return f"{self.key}#{self.etag}"


def _landing_object(entry: dict[str, Any]) -> LandingObject:
    return LandingObject(key=entry["Key"], etag=entry["ETag"].strip('"'), size=entry["Size"])


def list_objects_after(
    client: Any, bucket: str, prefix: str, start_after: str | None, limit: int
) -> tuple[list[LandingObject], bool]:
    """Up to ``limit`` objects under ``prefix`` whose keys sort after ``start_after``, in key order, paging
    past 1,000 keys; and whether more remain."""
    found: list[LandingObject] = []
    arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        arguments["StartAfter"] = start_after
    while len(found) < limit:
        arguments["MaxKeys"] = min(LIST_PAGE_SIZE, limit - len(found))
        page = client.list_objects_v2(**arguments)
        found.extend(_landing_object(entry) for entry in page.get("Contents", []) if not entry["Key"].endswith("/"))
        if not page.get("IsTruncated"):
            return found, False
        arguments.pop("StartAfter", None)
        arguments["ContinuationToken"] = page["NextContinuationToken"]
    return found, True


def archive_key(source: str, ingest_date: date, obj: LandingObject) -> str:
    return f"raw/source={source}/ingest_date={ingest_date.isoformat()}/{obj.etag}/{obj.key}"


@dataclass(frozen=True)
class DownloadedObject:
    path: Path
    sha256: str
    byte_count: int


@contextmanager
def download(client: Any, bucket: str, key: str, etag: str | None = None) -> Iterator[DownloadedObject]:
    """Stream an object to a temporary file, hashing it on the way; the file is removed afterwards.

    With ``etag``, the read fails if the object changed since it was listed (``IfMatch``), so the bytes
    hashed are the bytes of the batch the sensor saw.
    """
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        arguments["IfMatch"] = f'"{etag}"'
    body = client.get_object(**arguments)["Body"]
    digest = hashlib.sha256()
    count = 0
    with tempfile.NamedTemporaryFile(prefix="landing-", suffix=Path(key).name[-40:]) as spool:
        while chunk := body.read(READ_CHUNK):
            digest.update(chunk)
            spool.write(chunk)
            count += len(chunk)
        spool.flush()
        yield DownloadedObject(Path(spool.name), digest.hexdigest(), count)


def metadata_value(text: str) -> str:
    """``text`` as S3 object metadata may hold it (ASCII only): percent-encoded UTF-8 (RFC 3986), every ``%`` too,
    so ``metadata_text`` gives back exactly ``text`` (``été/a%20b.jsonl`` ↔ ``%C3%A9t%C3%A9/a%2520b.jsonl``)."""
    return urllib.parse.quote(text, safe="/")


def metadata_text(value: str) -> str:
    """The text ``metadata_value`` encoded."""
    return urllib.parse.unquote(value, errors="strict")


def archive_object(
    client: Any, landing_bucket: str, obj: LandingObject, archive_bucket: str, key: str, sha256: str
) -> None:
    """Server-side copy of the landing object into the raw archive, with its checksum and its landing key
    (``source-key``, encoded by ``metadata_value``: metadata is ASCII, keys are UTF-8) as metadata, and
    server-side encryption where the store offers it."""
    client.copy_object(
        Bucket=archive_bucket,
        Key=key,
        CopySource={"Bucket": landing_bucket, "Key": obj.key},
        CopySourceIfMatch=f'"{obj.etag}"',
        Metadata={"sha256": sha256, "source-key": metadata_value(obj.key), "source-etag": obj.etag},
        MetadataDirective="REPLACE",
        ServerSideEncryption="AES256",
    )


@dataclass(frozen=True)
class LandingCursor:
    """Where the S3 sensor is: the last key it requested (new keys sort after it) and its sweep."""

    after: str | None = None
    sweep_after: str | None = None
    sweeping: bool = False
    last_sweep: float = 0.0

    def to_json(self) -> str:
        return orjson.dumps(self.__dict__).decode()

    @classmethod
    def from_json(cls, raw: str | None) -> LandingCursor:
        if not raw:
            return cls()
        try:
            return cls(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            return cls(after=raw)


def plan_landing_tick(
    client: Any,
    bucket: str,
    prefix: str,
    cursor: LandingCursor,
    *,
    cap: int,
    now: float,
    sweep_every_seconds: float,
    unknown_batches: Callable[[list[LandingObject]], list[LandingObject]],
) -> tuple[list[LandingObject], LandingCursor]:
    """The objects a tick should ingest (at most ``cap``) and the cursor after it.

    New keys come from one ``StartAfter`` listing; when a sweep is due (or under way), one more page of
    the whole prefix is checked against the ledger through ``unknown_batches``.
    """
    fresh, _ = list_objects_after(client, bucket, prefix, cursor.after, cap)
    after = fresh[-1].key if fresh else cursor.after
    if cursor.after is None:
        return fresh, LandingCursor(after=after, last_sweep=now)
    room = cap - len(fresh)
    due = cursor.sweeping or (sweep_every_seconds > 0 and now - cursor.last_sweep >= sweep_every_seconds)
    if not due or room == 0:
        return fresh, replace(cursor, after=after)
    page, more = list_objects_after(client, bucket, prefix, cursor.sweep_after, LIST_PAGE_SIZE)
    passed = [obj for obj in page if obj.key <= cursor.after]
    unknown = unknown_batches(passed)
    taken = unknown[:room]
    if len(taken) < len(unknown):
        return fresh + taken, LandingCursor(after, taken[-1].key, True, cursor.last_sweep)
    if more and passed and passed[-1].key < cursor.after:
        return fresh + taken, LandingCursor(after, passed[-1].key, True, cursor.last_sweep)
    return fresh + taken, LandingCursor(after, None, False, now)
