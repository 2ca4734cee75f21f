"""How accepted requests become durable: their bodies into the raw archive, their events into staging.

Called from the collector's group commit with every request that arrived since the last flush. Requests
are grouped by source (``segment``, ``webhook:<partner>``); each group becomes one batch: one archive
object (the requests as JSON lines, gzipped, bodies unchanged) and then, in one transaction, its ledger
row, its staging rows and the quarantine of records that cannot be staged. A request is acknowledged
only when its group's transaction has committed.
"""

from __future__ import annotations

import contextlib
import gzip
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from etl_assets.sources.archive import archive_body, body_key
from etl_assets.transform.inbound import ParsedRequest, request_records
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.staging import BatchEntry, StagingCounts, find_batch, stage_batch

FLUSH_RETRY_SECONDS = 3.0
"""How long a flush retries a database that went away before its requests are answered 503. Short, unlike a
pipeline run's retries: the senders are waiting for an answer and retry after ``Retry-After`` themselves, and
every request that arrives meanwhile queues behind the flush."""


@dataclass(frozen=True)
class GroupResult:
    source: str
    batch_id: str | None
    counts: StagingCounts | None
    error: BaseException | None


class StagingWriter:
    def __init__(
        self,
        engine: Engine,
        s3: Any,
        archive_bucket: str,
        accepted_times: Callable[[], AcceptedTimes],
        on_group: Callable[[GroupResult], None] | None = None,
        retry_seconds: float = FLUSH_RETRY_SECONDS,
    ) -> None:
        self.engine = engine
        self.s3 = s3
        self.archive_bucket = archive_bucket
        self.accepted_times = accepted_times
        self.on_group = on_group
        self.retry_seconds = retry_seconds

    def write(self, requests: list[ParsedRequest]) -> list[BaseException | None]:
        """Write ``requests``; return, per request, ``None`` when it is durable or the error that stopped it."""
        groups: dict[str, list[int]] = {}
        for position, parsed in enumerate(requests):
            groups.setdefault(parsed.request.source, []).append(position)
        outcome: list[BaseException | None] = [None] * len(requests)
        for source, positions in groups.items():
            result = self._write_group(source, [requests[position] for position in positions])
            if self.on_group is not None:
                self.on_group(result)
            for position in positions:
                outcome[position] = result.error
        return outcome

    def _write_group(self, source: str, requests: list[ParsedRequest]) -> GroupResult:
        now = datetime.now(UTC)
        batch_id = f"{source}:{now:%Y%m%dT%H%M%S.%fZ}:{uuid.uuid4().hex[:8]}"
        body = gzip.compress(b"".join(parsed.request.to_json_line() + b"\n" for parsed in requests), compresslevel=1)
        key = body_key(source, now.date(), batch_id.replace(":", "_") + ".jsonl.gz")
        try:
            archived = archive_body(self.s3, self.archive_bucket, key, body, "application/gzip")
        except Exception as error:
            return GroupResult(source, None, None, error)
        commit_sent = False

        def note_commit(_conn: object) -> None:
            nonlocal commit_sent
            commit_sent = True

        try:
            counts = stage_batch(
                self.engine,
                BatchEntry(
                    batch_id,
                    source,
                    f"collector:{requests[0].request.endpoint}",
                    archived.key,
                    archived.sha256,
                    archived.byte_count,
                ),
                request_records(requests),
                self.accepted_times(),
                before_commit=note_commit,
                retry_seconds=self.retry_seconds,
            )
        except Exception as error:
            staged = self._staged_after_all(batch_id) if commit_sent else False
            if staged:
                return GroupResult(source, batch_id, None, None)
            if staged is False:
                self._forget(key)
            return GroupResult(source, None, None, error)
        return GroupResult(source, batch_id, counts, None)

    def _staged_after_all(self, batch_id: str) -> bool | None:
        """Whether a batch whose COMMIT was sent but not acknowledged is in the ledger (``None``: cannot tell).

        A connection lost after the server committed looks, to the client, like any other failure. The ledger
        says which it was: a committed batch is durable, so its requests are answered 200 and its archive kept.
        """
        try:
            entry = find_batch(self.engine, batch_id)
        except Exception:
            return None
        return entry is not None and entry["staged_at"] is not None

    def _forget(self, key: str) -> None:
        """Remove the archived body of a batch that surely was not staged: its senders were told to send it again.

        When it cannot be told whether the batch committed, the body stays: an archive object no ledger row names
        costs only its bytes until retention removes it, while a deleted body of a committed batch is lost.
        """
        with contextlib.suppress(Exception):
            self.s3.delete_object(Bucket=self.archive_bucket, Key=key)
