"""Pulling events from a cursor-paginated HTTP API into staging, one page at a time, resumable.

Retries are urllib3's ``Retry`` mounted on a requests session: exponential backoff with jitter on 408, 429
and 5xx (and on connection errors), ``Retry-After`` honoured, only for GET. Each page is archived, then
staged in one transaction together with the source's new cursor in ``source_cursors``: a crash before
that commit leaves the old cursor and the next run fetches the same page again (same bytes, same batch
id, nothing staged twice); after it, the run resumes at the next page. A transient database error (a
serialization failure, a deadlock, a lost connection) runs that transaction again from the start
(``stage_batch`` retries it: the page's records are a list and the cursor's upsert is idempotent).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import Connection, Engine
from urllib3.util.retry import Retry

from etl_assets.settings import ConfigError
from etl_assets.sources.archive import archive_body, body_key
from etl_assets.transform.api_pages import Page, parse_page
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.source_cursors import load_cursor, save_cursor
from etl_assets.warehouse.staging import BatchEntry, StagingCounts, stage_batch

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
"""Answers a later request may get past; any other 4xx (a bad request, a wrong token, a missing path) is permanent."""


@dataclass(frozen=True)
class ApiSource:
    """How to read one API. Every field but ``name`` and ``base_url`` has the common default."""

    name: str
    base_url: str
    token_env: str | None = None
    """Environment variable holding the bearer token (never the token itself)."""
    page_size: int = 500
    page_size_param: str = "limit"
    cursor_param: str = "cursor"
    records_field: str = "data"
    next_cursor_field: str | None = "next_cursor"
    """Dotted path of the next cursor in the page."""
    next_link_field: str | None = None
    """Dotted path of the next page's full URL; ``"Link"`` reads the ``Link: <…>; rel="next"`` header.
    When set, it is used instead of ``next_cursor_field`` and the stored cursor is that URL."""
    max_pages_per_run: int = 200
    max_retries: int = 8
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: int = 300
    """Longest wait a ``Retry-After`` may ask for; a longer one is cut to this, so one header cannot hold a poll
    for hours (urllib3 alone allows six)."""

    @property
    def source(self) -> str:
        """The name staging, the ledger and ``source_cursors`` know this API by."""
        return f"api:{self.name}"

    def token(self) -> str | None:
        if self.token_env is None:
            return None
        token = os.environ.get(self.token_env)
        if not token:
            raise ConfigError(f"{self.token_env} is not set: put the events API token for source {self.name!r} in it")
        return token


class ApiError(Exception):
    """The API answered with an error that retries did not cure; the message says which and what to do.

    ``transient``: a later poll may succeed (the API kept failing or could not be reached); a permanent error (a 4xx
    other than 408 and 429: a bad request, a wrong token) fails the same way until someone changes something."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class FetchedPage:
    url: str
    body: bytes
    link_next: str | None
    retries: int
    retried_statuses: tuple[int, ...]


def retry_policy(source: ApiSource) -> Retry:
    return Retry(
        total=source.max_retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=source.backoff_factor,
        backoff_max=source.backoff_max,
        backoff_jitter=source.backoff_factor,
        respect_retry_after_header=True,
        retry_after_max=source.retry_after_max,
        raise_on_status=True,
    )


class EventsApiClient:
    def __init__(self, source: ApiSource, *, timeout: tuple[float, float] = (5.0, 30.0)) -> None:
        self.source = source
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry_policy(source))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        token = source.token()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def fetch(self, cursor: str | None) -> FetchedPage:
        """The page at ``cursor`` (``None``: the first page)."""
        source = self.source
        params: dict[str, str | int] | None
        if source.next_link_field and cursor is not None:
            url, params = cursor, None
        else:
            url = source.base_url
            params = {source.page_size_param: source.page_size}
            if cursor is not None:
                params[source.cursor_param] = cursor
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.exceptions.RetryError as error:
            raise ApiError(
                f"{source.name}: {url} kept failing after {source.max_retries} retries ({_last_status(error)}); "
                "the cursor stays where it was and the next poll tries again",
                transient=True,
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
            raise ApiError(
                f"{source.name}: cannot reach {url} ({type(error).__name__}); is the API up?", transient=True
            ) from None
        if response.status_code >= 400:
            hint = " (check the token in " + (source.token_env or "the source's token_env") + ")"
            raise ApiError(
                f"{source.name}: {response.url} answered {response.status_code}: {response.text[:200]!r}"
                + (hint if response.status_code in (401, 403) else ""),
                transient=response.status_code in RETRY_STATUSES or response.status_code >= 500,
            )
        history = response.raw.retries.history if response.raw.retries else ()
        return FetchedPage(
            url=response.url,
            body=response.content,
            link_next=response.links.get("next", {}).get("url"),
            retries=len(history),
            retried_statuses=tuple(entry.status for entry in history if entry.status is not None),
        )


def _last_status(error: requests.exceptions.RetryError) -> str:
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return str(reason) if reason else "retries exhausted"


@dataclass
class PollReport:
    """What a poll did: the figures its run shows."""

    source: str
    pages: int = 0
    records: int = 0
    staged: int = 0
    quarantined: int = 0
    already_staged: int = 0
    retries: int = 0
    retried_statuses: list[int] = field(default_factory=list)
    start_cursor: str | None = None
    end_cursor: str | None = None
    caught_up: bool = False
    seconds: float = 0.0


def _cursor_saver(source: str, cursor: str | None) -> Callable[[Connection], None]:
    """Saves ``cursor`` as ``source``'s, inside the caller's transaction."""
    return lambda conn: save_cursor(conn, source, cursor)


def page_batch_id(source: ApiSource, cursor: str | None, body: bytes) -> str:
    """Same request cursor and same bytes → same batch: a page fetched again after a crash is not staged twice."""
    at = hashlib.sha256((cursor or "").encode()).hexdigest()[:16]
    return f"{source.source}:{at}:{hashlib.sha256(body).hexdigest()[:16]}"


def _next_cursor(source: ApiSource, fetched: FetchedPage) -> Page:
    if source.next_link_field == "Link":
        return parse_page(fetched.body, source.records_field, None, fetched.link_next)
    return parse_page(fetched.body, source.records_field, source.next_link_field or source.next_cursor_field)


def poll_source(
    client: EventsApiClient,
    engine: Engine,
    s3: Any,
    archive_bucket: str,
    accepted: AcceptedTimes,
    *,
    max_pages: int | None = None,
    on_page: Callable[[PollReport, StagingCounts], None] | None = None,
) -> PollReport:
    """Read pages from the stored cursor until the API has no more (or ``max_pages``), staging each."""
    source = client.source
    started = time.perf_counter()
    cursor = load_cursor(engine, source.source)
    report = PollReport(source.source, start_cursor=cursor, end_cursor=cursor)
    for _ in range(max_pages or source.max_pages_per_run):
        fetched = client.fetch(cursor)
        page = _next_cursor(source, fetched)
        report.pages += 1
        report.retries += fetched.retries
        report.retried_statuses.extend(fetched.retried_statuses)
        following = page.next_cursor or cursor
        if not page.records:
            if following != cursor:
                in_transaction(
                    engine,
                    _cursor_saver(source.source, following),
                    what=f"saving the cursor of {source.source}",
                )
                cursor = report.end_cursor = following
                continue
            report.caught_up = True
            break
        batch_id = page_batch_id(source, cursor, fetched.body)
        archived = archive_body(
            s3,
            archive_bucket,
            body_key(source.source, datetime.now(UTC).date(), batch_id.replace(":", "_") + ".json"),
            fetched.body,
            "application/json",
        )
        counts = stage_batch(
            engine,
            BatchEntry(batch_id, source.source, fetched.url, archived.key, archived.sha256, archived.byte_count),
            page.records,
            accepted,
            before_commit=_cursor_saver(source.source, following),
        )
        report.records += counts.records
        report.staged += counts.staged
        report.quarantined += counts.quarantined
        report.already_staged += counts.already_staged
        cursor = report.end_cursor = following
        if on_page is not None:
            on_page(report, counts)
        if page.next_cursor is None:
            report.caught_up = True
            break
    report.seconds = time.perf_counter() - started
    return report


def load_api_sources(path: Path) -> list[ApiSource]:
    """The sources listed in a JSON file: ``[{"name": …, "base_url": …, …}, …]`` (fields of ``ApiSource``)."""
    try:
        entries = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"ETL_EVENTS_API_SOURCES names {path}, which does not exist: fix the path") from None
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"{path} is not JSON ({error}): write a list of sources") from None
    known = {item.name for item in fields(ApiSource)}
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError(f"{path} must hold a JSON list of source objects")
    sources = []
    for position, entry in enumerate(entries, start=1):
        unknown = sorted(set(entry) - known)
        missing = [name for name in ("name", "base_url") if not entry.get(name)]
        if unknown or missing:
            problem = f"unknown fields {unknown}" if unknown else f"no {' or '.join(missing)}"
            raise ConfigError(f"{path}: source {position} has {problem}; fields are {', '.join(sorted(known))}")
        sources.append(ApiSource(**entry))
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: source names must be unique, got {names}")
    return sources
