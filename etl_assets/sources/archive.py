"""The raw archive: every byte that entered, unchanged, under ``raw/source=<s>/ingest_date=<day>/``.

Landing files are copied server-side (``sources/landing.py``); bodies that arrive over HTTP (API pages,
collector requests) are written here from memory, with their SHA-256 as metadata and server-side
encryption (SSE-S3, AES256), before anything of them is staged. Every write into the archive asks for that
encryption, so the audit copy (which holds PII as received) is encrypted at rest.

The retention job deletes what was archived more than ETL_RETENTION_DAYS ago (``prune_archive``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from etl_assets.transform.days import day_start


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


# -- retention --------------------------------------------------------------------------------------

RAW_PREFIX = "raw/"
DELETE_PAGE = 1000  # the most keys one DeleteObjects call takes
_INGEST_DATE = re.compile(r"(?:^|/)ingest_date=(\d{4}-\d{2}-\d{2})/")


class ArchivePruneFailed(RuntimeError):
    """The store refused to delete some archived objects; the message names the first and why."""


@dataclass(frozen=True)
class ExpiredObject:
    key: str
    size: int


@dataclass
class ArchivePrune:
    """What pruning the archive did (or, in a dry run, would do)."""

    objects: int = 0
    bytes: int = 0
    days: set[date] = field(default_factory=set)


def ingest_date_of(key: str) -> date | None:
    """The ``ingest_date=`` a key was archived under, if it has a valid one."""
    match = _INGEST_DATE.search(key)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def expired_objects(
    client: Any, bucket: str, cutoff_day: date, prefix: str = RAW_PREFIX
) -> Iterator[list[ExpiredObject]]:
    """Pages (at most ``DELETE_PAGE`` each) of the objects under ``prefix`` archived before ``cutoff_day``.

    An object's age is the ``ingest_date=`` in its key or, for a key without one, its LastModified. The listing
    walks the ``source=…/ingest_date=…/`` folders with a delimiter and opens only the expired days, so a run
    costs what it deletes and the number of days kept, not every object kept.
    """
    cutoff = day_start(cutoff_day)
    pending: list[ExpiredObject] = []
    for obj in _walk_expired(client, bucket, prefix, cutoff_day, cutoff):
        pending.append(obj)
        if len(pending) == DELETE_PAGE:
            yield pending
            pending = []
    if pending:
        yield pending


def _pages(client: Any, **arguments: Any) -> Iterator[dict[str, Any]]:
    yield from client.get_paginator("list_objects_v2").paginate(**arguments)


def _walk_expired(client: Any, bucket: str, prefix: str, cutoff_day: date, cutoff: datetime) -> Iterator[ExpiredObject]:
    for page in _pages(client, Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for entry in page.get("Contents", []):
            day = ingest_date_of(entry["Key"])
            if (day < cutoff_day) if day is not None else entry["LastModified"] < cutoff:
                yield ExpiredObject(entry["Key"], entry["Size"])
        for common in page.get("CommonPrefixes", []):
            folder = common["Prefix"]
            day = ingest_date_of(folder)
            if day is None:
                yield from _walk_expired(client, bucket, folder, cutoff_day, cutoff)
            elif day < cutoff_day:
                for inner in _pages(client, Bucket=bucket, Prefix=folder):
                    yield from (ExpiredObject(entry["Key"], entry["Size"]) for entry in inner.get("Contents", []))


def prune_archive(
    client: Any,
    bucket: str,
    cutoff_day: date,
    *,
    dry_run: bool,
    before_delete: Callable[[list[str]], None] | None = None,
    prefix: str = RAW_PREFIX,
) -> ArchivePrune:
    """Delete (or, in a dry run, count) the archived objects older than ``cutoff_day``, a page at a time.

    ``before_delete`` gets each page's keys before they are deleted (the ledger marks its batches pruned first,
    so a crash between the two leaves a batch marked pruned whose bytes are still there, never the reverse).
    """
    pruned = ArchivePrune()
    for page in expired_objects(client, bucket, cutoff_day, prefix):
        pruned.objects += len(page)
        pruned.bytes += sum(obj.size for obj in page)
        pruned.days.update(day for obj in page if (day := ingest_date_of(obj.key)) is not None)
        if dry_run:
            continue
        keys = [obj.key for obj in page]
        if before_delete is not None:
            before_delete(keys)
        response = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise ArchivePruneFailed(
                f"s3://{bucket} refused to delete {len(errors)} archived objects, first {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
    return pruned
