"""A reverse proxy on loopback that answers some requests with a fault instead of passing them on.

Put it in front of a real service (the S3 endpoint, the events API) and point the client at it: a request the
fault plan picks is answered by the proxy (a status with a body and headers, or nothing at all for a while),
every other one is forwarded unchanged, Host header included, and the upstream's answer is returned unchanged.
Every request is logged with what the proxy did, so a test can show which faults the client met.

Serve it with ``tests.asgi_server.serve``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import yarl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Answer:
    """Answer with this instead of forwarding."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stall:
    """Say nothing for ``seconds`` (longer than the client's read timeout), then close the connection."""

    seconds: float


Fault = Answer | Stall


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]

    def has_query(self, name: str) -> bool:
        return any(part.split("=", 1)[0] == name for part in self.query.split("&") if part)


@dataclass(frozen=True)
class Served:
    at: float
    request: ProxiedRequest
    fault: Fault | None
    status: int | None
    """What the client was answered; None for a stall."""


FaultPlan = Callable[[ProxiedRequest], Fault | None]


class FaultsInTurn:
    """A fault plan: requests that ``matches`` pass the first ``after`` times, then get ``faults`` one by one, then
    pass again."""

    def __init__(self, matches: Callable[[ProxiedRequest], bool], faults: list[Fault], *, after: int = 0) -> None:
        self.matches = matches
        self.faults = list(faults)
        self.after = after
        self.lock = threading.Lock()

    def __call__(self, request: ProxiedRequest) -> Fault | None:
        if not self.matches(request):
            return None
        with self.lock:
            if self.after > 0:
                self.after -= 1
                return None
            return self.faults.pop(0) if self.faults else None

    @property
    def left(self) -> int:
        return len(self.faults)


def all_of(*plans: FaultPlan) -> FaultPlan:
    """The first fault any of ``plans`` gives."""

    def plan(request: ProxiedRequest) -> Fault | None:
        for each in plans:
            fault = each(request)
            if fault is not None:
                return fault
        return None

    return plan


def create_proxy(upstream: str, plan: FaultPlan) -> Starlette:
    """The proxy app; ``app.state.served`` lists every request it got, in order."""
    served: list[Served] = []
    lock = threading.Lock()

    def log(request: ProxiedRequest, fault: Fault | None, status: int | None) -> None:
        with lock:
            served.append(Served(time.time(), request, fault, status))

    @asynccontextmanager
    async def lifespan(app: Starlette):
        # No decompression, no cookies: bytes and headers pass as they came.
        async with aiohttp.ClientSession(
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=120)
        ) as session:
            app.state.session = session
            yield

    async def proxy(request: Request) -> Response:
        proxied = ProxiedRequest(request.method, request.url.path, request.url.query, dict(request.headers))
        body = await request.body()
        fault = plan(proxied)
        if isinstance(fault, Stall):
            log(proxied, fault, None)
            await asyncio.sleep(fault.seconds)
            return Response(status_code=504)
        if isinstance(fault, Answer):
            log(proxied, fault, fault.status)
            return Response(fault.body, fault.status, headers=fault.headers)
        target = request.scope["raw_path"].decode("latin-1")  # as the client encoded it (S3 signs that)
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode("latin-1")
        url = yarl.URL(upstream + target, encoded=True)
        headers = [(name, value) for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP]
        async with request.app.state.session.request(
            request.method, url, data=body, headers=headers, allow_redirects=False
        ) as answer:
            content = await answer.read()
            passed = {name: value for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP}
        log(proxied, None, answer.status)
        return Response(content, answer.status, headers=passed)  # the upstream's Content-Length and type stay

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", proxy, methods=methods)], lifespan=lifespan)
    app.state.served = served
    return app
