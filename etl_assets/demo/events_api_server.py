"""The demo events API: a live feed of generated shop events behind cursor pages, with faults.

``etl dev`` runs it next to the rest so the API source has something real to poll. Events appear at a
steady rate (``events_per_second``) after a backlog, each at a fixed position in the feed, so a page is
the same bytes however often it is asked for. Now and then it answers 429 with ``Retry-After`` or 500,
so the client's retries show in the runs.

``GET /events?limit=<n>&cursor=<token>`` answers::

    {"data": [...events after the cursor...], "next_cursor": "<token>", "has_more": false,
     "links": {"next": "http://…/events?limit=<n>&cursor=<token>"}}

and the same next URL in a ``Link: <…>; rel="next"`` header. A bearer token is required when ``token``
is set.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl_assets.demo.landing_files import generate_events

CHUNK = 1_000
MAX_LIMIT = 1_000


@dataclass
class FeedSettings:
    seed: int = 7
    events_per_second: float = 2.0
    backlog: int = 2_000
    """Events already in the feed when it starts (spread over the hour before)."""
    token: str | None = None
    rate_limit_share: float = 0.05
    """Share of requests answered 429 with ``Retry-After``."""
    error_share: float = 0.03
    """Share of requests answered 500."""
    retry_after_seconds: int = 1
    scripted_statuses: Sequence[int] = ()
    """Statuses for the first requests, in order, before the random faults apply (for tests)."""
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ServedRequest:
    at: float
    status: int
    cursor: str | None
    events: int


class EventFeed:
    """Event ``n`` of the feed (0-based) is always the same event, at ``origin + n / rate`` seconds."""

    def __init__(self, settings: FeedSettings) -> None:
        self.settings = settings
        self.origin = settings.started_at - settings.backlog / settings.events_per_second

    def available(self, now: float) -> int:
        return max(0, int((now - self.origin) * self.settings.events_per_second))

    def events(self, first: int, count: int) -> list[dict[str, Any]]:
        return [self._event(number) for number in range(first, first + count)]

    def _event(self, number: int) -> dict[str, Any]:
        event = dict(_chunk(self.settings.seed, number // CHUNK)[number % CHUNK])
        event["id"] = f"api_{self.settings.seed}_{number:010d}"
        moment = self.origin + number / self.settings.events_per_second
        event["timestamp"] = (
            datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        return event


@lru_cache(maxsize=16)
def _chunk(seed: int, index: int) -> tuple[dict[str, Any], ...]:
    return tuple(generate_events(seed * 100_003 + index, date(2025, 1, 1), 1, CHUNK))


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    padded = token + "=" * (-len(token) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    if not text.startswith("after:"):
        raise ValueError(token)
    return int(text.removeprefix("after:"))


def create_app(settings: FeedSettings | None = None) -> Starlette:
    settings = settings or FeedSettings()
    feed = EventFeed(settings)
    faults = random.Random(settings.seed)
    scripted = list(settings.scripted_statuses)
    served: list[ServedRequest] = []
    lock = threading.Lock()

    def answer(
        status: int, body: dict[str, Any], cursor: str | None, events: int = 0, headers: dict[str, str] | None = None
    ) -> Response:
        with lock:
            served.append(ServedRequest(time.time(), status, cursor, events))
        return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")

    async def events(request: Request) -> Response:
        cursor = request.query_params.get("cursor")
        if settings.token and request.headers.get("authorization") != f"Bearer {settings.token}":
            return answer(401, {"error": "missing or wrong bearer token"}, cursor)
        with lock:
            status = scripted.pop(0) if scripted else _random_fault(faults, settings)
        if status == 429:
            return answer(
                429, {"error": "rate limited"}, cursor, headers={"Retry-After": str(settings.retry_after_seconds)}
            )
        if status >= 500:
            return answer(status, {"error": "internal error"}, cursor)
        try:
            limit = min(MAX_LIMIT, max(1, int(request.query_params.get("limit", "100"))))
            after = decode_cursor(cursor) if cursor else 0
        except ValueError:
            return answer(400, {"error": "limit must be a number and cursor a token from next_cursor"}, cursor)
        available = feed.available(time.time())
        count = max(0, min(limit, available - after))
        position = after + count
        next_token = encode_cursor(position)
        next_url = str(request.url.include_query_params(limit=limit, cursor=next_token))
        body = {
            "data": feed.events(after, count),
            "next_cursor": next_token,
            "has_more": position < available,
            "links": {"next": next_url},
        }
        return answer(200, body, cursor, count, headers={"Link": f'<{next_url}>; rel="next"'})

    app = Starlette(routes=[Route("/events", events), Route("/healthz", lambda request: Response("ok"))])
    app.state.served = served
    app.state.feed = feed
    return app


def _random_fault(faults: random.Random, settings: FeedSettings) -> int:
    roll = faults.random()
    if roll < settings.rate_limit_share:
        return 429
    if roll < settings.rate_limit_share + settings.error_share:
        return 500
    return 200


def main() -> None:
    """``python -m etl_assets.demo.events_api_server --port 9100 [--token T]``: serve the feed on 127.0.0.1."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--token", default=None)
    parser.add_argument("--events-per-second", type=float, default=2.0)
    arguments = parser.parse_args()
    app = create_app(FeedSettings(token=arguments.token, events_per_second=arguments.events_per_second))
    uvicorn.run(app, host=arguments.host, port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()
