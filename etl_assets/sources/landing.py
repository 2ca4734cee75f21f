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
from collections.abc import Callable, Iterator, Sequence
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


@dataclass(frozen=True)
class RunLimits:
    """How the S3 sensor fills a tick: at most ``max_runs`` runs, each of at most ``max_files`` files and
    ``max_bytes`` bytes; a file of more than half ``max_bytes`` runs alone."""

    max_runs: int
    max_files: int
    max_bytes: int

    @property
    def max_objects(self) -> int:
        return self.max_runs * self.max_files

    def runs_alone(self, obj: LandingObject) -> bool:
        return obj.size > self.max_bytes // 2


def group_into_runs(objects: Sequence[LandingObject], limits: RunLimits) -> list[list[LandingObject]]:
    """``objects``, in their order, packed into runs within ``limits``: a large file in a run of its own, the others
    filling one run after another. Stops at the first object with no room left, so the objects placed are always a
    leading part of ``objects`` (the cursor can move past exactly them) and the same objects always pack the same."""
    runs: list[list[LandingObject]] = []
    filling: list[LandingObject] | None = None
    filling_bytes = 0
    for obj in objects:
        if limits.runs_alone(obj):
            if len(runs) == limits.max_runs:
                break
            runs.append([obj])
        elif filling is not None and len(filling) < limits.max_files and filling_bytes + obj.size <= limits.max_bytes:
            filling.append(obj)
            filling_bytes += obj.size
        elif len(runs) == limits.max_runs:
            break
        else:
            filling, filling_bytes = [obj], obj.size
            runs.append(filling)
    return runs


def _placed(objects: Sequence[LandingObject], limits: RunLimits) -> int:
    return sum(len(run) for run in group_into_runs(objects, limits))


def run_key(objects: Sequence[LandingObject]) -> str:
    """The run key of an ingest run of ``objects``: a single file's batch id (``key#etag``), or for several a digest
    of their sorted batch ids; the same objects always get the same key, so a tick evaluated again is not run twice."""
    if len(objects) == 1:
        return objects[0].batch_id
    digest = hashlib.sha256("\n".join(sorted(obj.batch_id for obj in objects)).encode()).hexdigest()
    return f"landing-files:{len(objects)}:{digest}"


def plan_landing_tick(
    client: Any,
    bucket: str,
    prefix: str,
    cursor: LandingCursor,
    *,
    limits: RunLimits,
    now: float,
    sweep_every_seconds: float,
    unknown_batches: Callable[[list[LandingObject]], list[LandingObject]],
) -> tuple[list[list[LandingObject]], LandingCursor]:
    """The runs a tick should request (objects grouped by ``group_into_runs``) and the cursor after it.

    New keys come from one ``StartAfter`` listing, as many as the runs can hold; the cursor moves past the last one
    placed. When a sweep is due (or under way), and the new keys left room, one more page of the whole prefix is
    checked through ``unknown_batches`` (not in the ledger, not asked for yet) and what fits joins the runs.
    """
    listed, _ = list_objects_after(client, bucket, prefix, cursor.after, limits.max_objects)
    fresh = listed[: _placed(listed, limits)]
    after = fresh[-1].key if fresh else cursor.after
    if cursor.after is None:
        return group_into_runs(fresh, limits), LandingCursor(after=after, last_sweep=now)
    full = len(fresh) < len(listed) or len(fresh) == limits.max_objects
    due = cursor.sweeping or (sweep_every_seconds > 0 and now - cursor.last_sweep >= sweep_every_seconds)
    if not due or full:
        return group_into_runs(fresh, limits), replace(cursor, after=after)
    page, more = list_objects_after(client, bucket, prefix, cursor.sweep_after, LIST_PAGE_SIZE)
    passed = [obj for obj in page if obj.key <= cursor.after]
    unknown = unknown_batches(passed)
    taken = unknown[: _placed(fresh + unknown, limits) - len(fresh)]
    runs = group_into_runs(fresh + taken, limits)
    if len(taken) < len(unknown):
        sweep_after = taken[-1].key if taken else cursor.sweep_after
        return runs, LandingCursor(after, sweep_after, True, cursor.last_sweep)
    if more and passed and passed[-1].key < cursor.after:
        return runs, LandingCursor(after, passed[-1].key, True, cursor.last_sweep)
    return runs, LandingCursor(after, None, False, now)
