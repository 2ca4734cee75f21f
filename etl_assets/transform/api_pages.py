"""A page of a cursor-paginated JSON API, as pure data: its records and where the next page starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from etl_assets.transform.inbound import as_record
from etl_assets.transform.records import ParsedRecord, RejectedRecord


class MalformedPage(ValueError):
    """The page is not the JSON the source's configuration describes; the message says what is wrong."""


@dataclass(frozen=True)
class Page:
    records: list[ParsedRecord | RejectedRecord]
    next_cursor: str | None
    """The next page's cursor token or URL; ``None`` when the API says there is no next page."""


def dig(value: Any, dotted: str) -> Any:
    """``value["a"]["b"]`` for ``"a.b"``; ``None`` when a step is missing."""
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def parse_page(body: bytes, records_field: str, next_field: str | None, link_header_next: str | None = None) -> Page:
    """Parse one page. ``records_field`` (dotted) holds the list of records; ``next_field`` (dotted) the next
    cursor or next-page URL; with ``next_field`` unset, the ``Link: <…>; rel="next"`` header's URL is used."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedPage(f"the page is not JSON: {error}") from None
    items = dig(document, records_field) if records_field else document
    if not isinstance(items, list):
        raise MalformedPage(f"the page has no list of records at {records_field!r}")
    nxt = dig(document, next_field) if next_field else link_header_next
    if nxt is not None and (isinstance(nxt, bool) or not isinstance(nxt, str | int)):
        raise MalformedPage(f"the next cursor at {next_field!r} is not a string")
    return Page([as_record(number, item) for number, item in enumerate(items, start=1)], _text(nxt))


def _text(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
