"""Sustained load on the collector from a process of its own: find the best rate it sustains, hold a step below it,
report.

Against a running ``etl dev`` (or any collector)::

    uv run python -m etl_assets.bench.collector_load --hold 60

It sends Segment ``/v1/batch`` calls of ``--events`` track events each, open loop: request *n* is due at
``n / rate`` seconds whether or not earlier ones were answered, and its latency counts from then, so a collector
that falls behind shows as latency (not as a politely slower client). First a ramp: steps of ``--step`` seconds
at rates growing by ``--factor`` from ``--start`` (after ``--warmup`` seconds at that rate: connections opened,
the collector's first flushes done), until a step is not sustained (an answer other than 200, a request not
answered, a p99 latency over ``--max-p99``, latencies growing through the step, or a median latency more than twice
the first step's: requests queue); then the rate one step below the best sustained one (a few seconds can pass at
the very edge of what a minute cannot) is held for ``--hold`` seconds (``--rate`` skips the ramp). With ``--resend``, a request answered 503 is sent again
after its ``Retry-After``, as Segment's libraries do. Nothing runs longer than the ramp, the hold and ``--timeout``.

Every request is written to ``--log`` as a JSON line (phase, number, attempt, status, seconds, Retry-After); its
events' ids are ``<run>-<phase>-<number>-<k>`` for k < ``--events``. The last line printed is the summary, JSON:
per phase the rate asked, requests and events per second answered, statuses and p50 / p95 / p99 / max latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import aiohttp

MAX_IN_FLIGHT = 2_000
"""Requests waiting for an answer at most (not counting those waiting out a Retry-After); a request due while
this many wait is not sent, and counted as such."""


@dataclass
class Outcome:
    phase: str
    number: int
    attempt: int
    status: int | None
    seconds: float
    retry_after: str | None = None
    error: str | None = None


@dataclass
class PhaseSummary:
    phase: str
    rate: float
    seconds: float
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    answered_per_second: float = 0.0
    events_per_second: float = 0.0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    sustained: bool = False


def percentile(sorted_values: list[float], share: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(share * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_grew(outcomes: list[Outcome]) -> bool:
    """Whether the requests sent last in a step waited clearly longer than those sent first: a queue building up,
    the sign of a rate the collector does not keep up with (however short the step)."""
    ordered = sorted(outcomes, key=lambda outcome: outcome.number)
    quarter = len(ordered) // 4
    if quarter < 5:
        return False
    early = percentile(sorted(outcome.seconds for outcome in ordered[:quarter]), 0.5)
    late = percentile(sorted(outcome.seconds for outcome in ordered[-quarter:]), 0.5)
    assert early is not None and late is not None  # a quarter of at least 5 outcomes
    return late > 2 * early + 0.05


def event_ids(run: str, phase: str, number: int, events: int) -> list[str]:
    return [f"{run}-{phase}-{number}-{k}" for k in range(events)]


QUEUE_FACTOR = 2.0
"""A step whose median latency is more than this many times the first step's is not sustained: a collector that
keeps up answers in about the same time at any rate, so a median that grows means requests queue, and a queue that
grows for a few seconds grows for a minute."""
MIN_BASELINE_SECONDS = 0.005


class LoadGenerator:
    def __init__(self, arguments: argparse.Namespace, log: IO[str]) -> None:
        self.url = arguments.url.rstrip("/") + "/v1/batch"
        self.events = arguments.events
        self.resend = arguments.resend
        self.timeout = arguments.timeout
        self.max_p99 = arguments.max_p99
        self.baseline_p50: float | None = None
        """The median latency of the first phase, at the lowest rate: what answering costs with no queue."""
        self.run = arguments.run or uuid.uuid4().hex[:8]
        self.log = log
        self.in_flight = 0
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": aiohttp.encode_basic_auth(arguments.write_key, ""),
        }

    def body(self, phase: str, number: int) -> bytes:
        now = datetime.now(UTC).isoformat()
        batch = [
            {
                "type": "track",
                "messageId": event_id,
                "event": "Product Viewed",
                "userId": f"load-user-{number % 997}",
                "timestamp": now,
                "properties": {"product_id": f"p{number % 50}", "price": 19.99, "currency": "EUR"},
            }
            for event_id in event_ids(self.run, phase, number, self.events)
        ]
        return json.dumps({"batch": batch, "sentAt": now}).encode()

    async def send(self, session: aiohttp.ClientSession, phase: str, number: int, due: float) -> list[Outcome]:
        """Send request ``number`` (again after each 503 with ``--resend``); its outcome per attempt."""
        body = self.body(phase, number)
        outcomes: list[Outcome] = []
        attempt = 1
        while True:
            self.in_flight += 1
            try:
                outcome = await self._attempt(session, phase, number, attempt, due, body)
            finally:
                self.in_flight -= 1
            outcomes.append(outcome)
            self.log.write(json.dumps(asdict(outcome)) + "\n")
            if not (self.resend and outcome.status == 503):
                return outcomes
            await asyncio.sleep(float(outcome.retry_after or 1))
            attempt += 1
            due = time.monotonic()

    async def _attempt(
        self, session: aiohttp.ClientSession, phase: str, number: int, attempt: int, due: float, body: bytes
    ) -> Outcome:
        try:
            async with session.post(self.url, data=body, headers=self.headers) as response:
                await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as error:
            return Outcome(phase, number, attempt, None, time.monotonic() - due, error=type(error).__name__)
        return Outcome(phase, number, attempt, status, time.monotonic() - due, retry_after)

    async def phase(self, session: aiohttp.ClientSession, name: str, rate: float, seconds: float) -> PhaseSummary:
        """Send at ``rate`` requests per second for ``seconds``; wait for every answer (at most ``--timeout``)."""
        count = max(1, round(rate * seconds))
        started = time.monotonic()
        tasks: list[asyncio.Task[list[Outcome]]] = []
        late = 0
        for number in range(count):
            due = started + number / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.in_flight >= MAX_IN_FLIGHT:
                late += 1
                continue
            tasks.append(asyncio.create_task(self.send(session, name, number, due)))
        done, pending = await asyncio.wait(tasks, timeout=self.timeout) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        outcomes = [outcome for task in done for outcome in task.result()]
        finished = time.monotonic()
        return self.summarize(name, rate, seconds, count, late, len(pending), outcomes, finished - started)

    def summarize(
        self,
        name: str,
        rate: float,
        seconds: float,
        count: int,
        late: int,
        unanswered: int,
        outcomes: list[Outcome],
        elapsed: float,
    ) -> PhaseSummary:
        statuses = Counter(str(outcome.status or outcome.error) for outcome in outcomes)
        if late:
            statuses["not sent: too many in flight"] = late
        if unanswered:
            statuses["no answer within the timeout"] = unanswered
        accepted = sorted(outcome.seconds for outcome in outcomes if outcome.status == 200)
        summary = PhaseSummary(
            name,
            rate,
            seconds,
            sent=count,
            statuses=dict(statuses),
            answered_per_second=round(len(accepted) / elapsed, 1),
            events_per_second=round(len(accepted) * self.events / elapsed, 1),
            p50=percentile(accepted, 0.50),
            p95=percentile(accepted, 0.95),
            p99=percentile(accepted, 0.99),
            max=accepted[-1] if accepted else None,
        )
        if self.baseline_p50 is None and summary.p50 is not None:
            self.baseline_p50 = summary.p50
        summary.sustained = (
            statuses == Counter({"200": count})
            and summary.p99 is not None
            and summary.p50 is not None
            and summary.p99 <= self.max_p99
            and not latency_grew([outcome for outcome in outcomes if outcome.status == 200])
            and summary.p50 <= QUEUE_FACTOR * max(self.baseline_p50 or 0.0, MIN_BASELINE_SECONDS)
        )
        return summary


async def main_async(arguments: argparse.Namespace) -> dict:
    log_path = Path(arguments.log)
    with log_path.open("w") as log:
        generator = LoadGenerator(arguments, log)
        # Idle connections are closed before uvicorn's 5 s keep-alive ends, so none is reused as the server closes it.
        connector = aiohttp.TCPConnector(limit=arguments.connections, keepalive_timeout=4.0)
        timeout = aiohttp.ClientTimeout(total=arguments.timeout)
        phases: list[PhaseSummary] = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            rate = arguments.rate
            if arguments.warmup > 0:
                phases.append(await generator.phase(session, "warmup", rate or arguments.start, arguments.warmup))
            if rate is None:
                best = None
                step_rate = arguments.start
                below_best = None
                for step in range(arguments.max_steps):
                    summary = await generator.phase(session, f"ramp{step}", step_rate, arguments.step)
                    phases.append(summary)
                    if not summary.sustained:
                        break
                    below_best, best = best, step_rate
                    step_rate *= arguments.factor
                rate = below_best or best or arguments.start
            if arguments.hold > 0:
                phases.append(await generator.phase(session, "hold", rate, arguments.hold))
    for summary in phases:
        for name in ("p50", "p95", "p99", "max"):
            value = getattr(summary, name)
            setattr(summary, name, None if value is None else round(value * 1000, 1))
    return {"run": generator.run, "events_per_request": arguments.events, "phases": [asdict(p) for p in phases]}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:9200", help="the collector's base URL")
    parser.add_argument("--write-key", default="local-write-key")
    parser.add_argument("--events", type=int, default=10, help="events per request")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections at most")
    parser.add_argument("--rate", type=float, default=None, help="hold this rate (requests/s); no ramp")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at the first rate before measuring")
    parser.add_argument("--start", type=float, default=100.0, help="the ramp's first rate (requests/s)")
    parser.add_argument("--factor", type=float, default=1.5, help="each ramp step's rate over the last")
    parser.add_argument("--step", type=float, default=3.0, help="seconds per ramp step")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--max-p99", type=float, default=0.5, help="a sustained step's p99 latency at most (s)")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds at the best rate (0: ramp only)")
    parser.add_argument("--resend", action="store_true", help="send a request answered 503 again after Retry-After")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take at most")
    parser.add_argument("--run", default=None, help="prefix of the event ids (default: random)")
    parser.add_argument("--log", default="collector-load.jsonl", help="where every request's outcome is written")
    return parser.parse_args(argv)


def main() -> None:
    summary = asyncio.run(main_async(parse_arguments()))
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
