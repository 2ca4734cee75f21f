"""The collector's HTTP surface (Starlette): what each endpoint accepts, refuses, and answers.

- ``POST /webhooks/{partner}``: a partner's signed delivery (see ``signatures``). 401 for a bad or stale
  signature or an unknown partner, 413 over the size limit, 400 for malformed JSON, with the reason.
- ``POST /v1/batch|track|page|screen|identify|group|alias``: Segment's HTTP Tracking API, Basic auth with
  the write key as user name (or ``writeKey`` in the body), gzip bodies accepted, Segment's size limits. The
  write key decides the source its events are staged under (``segment:<name>``, ``CollectorConfig.write_keys``).
- ``GET /healthz``: 200 when the warehouse answers, 503 when it does not.
- ``GET /metrics``: Prometheus metrics.

A request is answered 200 only after its events are in staging and its body in the archive. A refused
request stores nothing. When the warehouse or the archive cannot be written the answer is 503 with
``Retry-After``: the sender keeps the events and sends them again.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
import zlib
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl_assets.collector.committer import GroupCommitter, Overloaded, Write
from etl_assets.collector.metrics import CollectorMetrics
from etl_assets.collector.signatures import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    verify,
)
from etl_assets.transform.inbound import WEBHOOK_SOURCE_PREFIX, InboundRequest, ParsedRequest
from etl_assets.transform.segment import ENDPOINTS, InvalidRequest, size_limit


@dataclass(frozen=True)
class CollectorConfig:
    write_keys: Mapping[str, str] = field(default_factory=dict)
    """Write key → the source its events come from (``segment`` or ``segment:<name>``)."""
    webhook_secrets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_webhook_bytes: int = 1_048_576
    signature_tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    retry_after_seconds: int = 5
    """A 503's ``Retry-After`` is a random whole number of seconds from this to twice this, so that senders refused
    together (an overload, the database away) do not all come back in the same second."""
    linger_seconds: float = 0.005
    max_pending_requests: int = 20_000
    """Requests waiting for their write at most; one more is answered 503 with Retry-After (load shedding)."""


class Refused(Exception):
    """Answer ``status`` with ``detail``; ``reason`` is the metric label."""

    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def create_app(
    config: CollectorConfig, write: Write, ping: Callable[[], None], metrics: CollectorMetrics | None = None
) -> Starlette:
    """The collector app. ``write`` makes a list of requests durable (see ``writer.StagingWriter.write``);
    ``ping`` raises when the warehouse is unreachable."""
    metrics = metrics or CollectorMetrics()
    committer = GroupCommitter(
        write,
        linger_seconds=config.linger_seconds,
        max_pending=config.max_pending_requests,
        size_of=lambda parsed: len(parsed.request.body),
        on_flush=lambda size: metrics.flush_requests.observe(size),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette):
        committer.start()
        yield
        await committer.stop()

    async def accept(endpoint_label: str, request: InboundRequest) -> Response:
        if committer.full:  # shed before parsing: under overload the CPU goes to requests that will be kept
            raise _unavailable(config, "overloaded", f"{committer.pending} requests are waiting to be written")
        parsed = ParsedRequest.parse(request)
        metrics.pending.set(committer.pending + 1)
        try:
            await committer.submit(parsed)
        except Overloaded as error:
            raise _unavailable(config, "overloaded", str(error)) from None
        except Exception as error:
            raise _unavailable(
                config, "storage_unavailable", f"the events could not be stored ({type(error).__name__})"
            ) from None
        finally:
            metrics.pending.set(committer.pending)
        metrics.accepted_events.labels(request.source).inc(len(parsed.messages))
        if endpoint_label == "segment":
            return _json(200, {"success": True})
        return _json(200, {"accepted": len(parsed.messages)})

    def route_endpoint(endpoint_label: str, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """The route's endpoint: ``handler`` with refusals answered as responses, every request counted and timed
        under ``endpoint_label``."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except InvalidRequest as error:
                reason = "too_large" if error.too_large else "invalid_body"
                response = _refusal(metrics, 413 if error.too_large else 400, reason, str(error), {})
            except Refused as error:
                response = _refusal(metrics, error.status, error.reason, str(error), error.headers)
            metrics.requests.labels(endpoint_label, str(response.status_code)).inc()
            metrics.latency.labels(endpoint_label).observe(time.perf_counter() - started)
            return response

        return endpoint

    async def webhook(request: Request) -> Response:
        partner = request.path_params["partner"]
        secrets = config.webhook_secrets.get(partner)
        if not secrets:
            raise Refused(401, "unknown_partner", f"no webhook secret is configured for partner {partner!r}")
        body = await _read_body(request, config.max_webhook_bytes)
        try:
            verify(
                secrets,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                time.time(),
                config.signature_tolerance_seconds,
            )
        except SignatureRejected as error:
            raise Refused(401, error.reason, str(error)) from None
        inbound = InboundRequest(WEBHOOK_SOURCE_PREFIX + partner, partner, datetime.now(UTC), _text(body))
        return await accept("webhook", inbound)

    async def segment(request: Request) -> Response:
        call = request.path_params["call"]
        if call not in ENDPOINTS:
            raise Refused(404, "unknown_endpoint", f"/v1/{call} is not a Tracking API endpoint")
        header_key = _basic_auth_user(request.headers.get("authorization"))
        source = config.write_keys.get(header_key) if header_key is not None else None
        if header_key is not None and source is None:
            raise Refused(401, "bad_write_key", "the write key is not one this collector accepts")
        body = await _read_body(request, size_limit(call))
        if request.headers.get("content-encoding", "").lower() == "gzip":
            body = _gunzip(body, size_limit(call))
        if source is None:
            body_key = _write_key_in_body(body)
            source = config.write_keys.get(body_key) if isinstance(body_key, str) else None
            if source is None:
                raise Refused(
                    401, "bad_write_key", "send the write key as the Basic auth user name (or writeKey in the body)"
                )
        inbound = InboundRequest(source, call, datetime.now(UTC), _text(body))
        return await accept("segment", inbound)

    async def healthz(request: Request) -> Response:
        try:
            await to_thread.run_sync(ping)
        except Exception as error:
            return _json(
                503, {"status": "unavailable", "warehouse": type(error).__name__, "pending": committer.pending}
            )
        return _json(200, {"status": "ok", "warehouse": "ok", "pending": committer.pending})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/webhooks/{partner}", route_endpoint("webhook", webhook), methods=["POST"]),
            Route("/v1/{call}", route_endpoint("segment", segment), methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.committer = committer
    return app


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _refusal(metrics: CollectorMetrics, status: int, reason: str, detail: str, headers: dict[str, str]) -> Response:
    metrics.rejected.labels(reason).inc()
    return _json(status, {"success": False, "error": reason, "message": detail}, headers)


def _unavailable(config: CollectorConfig, reason: str, detail: str) -> Refused:
    wait = random.randint(config.retry_after_seconds, 2 * config.retry_after_seconds)
    return Refused(503, reason, f"{detail}; nothing was kept, send again later", {"Retry-After": str(wait)})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "too_large", f"the body is {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise Refused(400, "invalid_body", f"Content-Encoding is gzip but the body is not: {error}") from None
    if len(plain) > limit or decompressor.unconsumed_tail:
        raise Refused(413, "too_large", f"the decompressed body is over the limit of {limit} bytes")
    return plain


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest(f"malformed JSON: the body is not UTF-8 ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise InvalidRequest("malformed JSON: the body is empty")
    return text


def _basic_auth_user(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0]


def _write_key_in_body(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document.get("writeKey") if isinstance(document, dict) else None
