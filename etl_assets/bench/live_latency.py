"""Freshness of live events: from the collector's 200 to the event being queryable in ``events``.

Run it against a running ``etl dev`` (it turns ``staged_days_sensor`` on through the UI's GraphQL API)::

    uv run python -m etl_assets.bench.live_latency --events 240 --rate 2

It sends ``--events`` Segment ``track`` calls at ``--rate`` per second, notes when each was answered
200, polls ``events`` for them every half second, and prints p50 / p95 / max of the difference.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import requests

from etl_assets.settings import Settings

START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""


def start_sensor(ui: str, name: str) -> str:
    selector = {"repositoryLocationName": "etl_assets", "repositoryName": "__repository__", "sensorName": name}
    response = requests.post(
        f"{ui}/graphql", json={"query": START_SENSOR, "variables": {"selector": selector}}, timeout=30
    )
    response.raise_for_status()
    result = response.json()["data"]["startSensor"]
    return result.get("sensorState", {}).get("status") or result.get("message", result["__typename"])


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=240)
    parser.add_argument("--rate", type=float, default=2.0, help="events sent per second")
    parser.add_argument("--collector", default=f"http://127.0.0.1:{settings.collector_port}")
    parser.add_argument("--write-key", default="local-write-key")
    parser.add_argument("--ui", default=f"http://127.0.0.1:{settings.ui_port}")
    parser.add_argument("--database-url", default=settings.warehouse_url.render_as_string(hide_password=False))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait after the last send")
    arguments = parser.parse_args()

    print(f"staged_days_sensor: {start_sensor(arguments.ui, 'staged_days_sensor')}")
    run = uuid.uuid4().hex[:8]
    accepted: dict[str, float] = {}
    seen: dict[str, float] = {}
    done_sending = threading.Event()

    def send() -> None:
        session = requests.Session()
        session.auth = (arguments.write_key, "")
        interval = 1.0 / arguments.rate
        next_at = time.time()
        for number in range(arguments.events):
            message_id = f"latency-{run}-{number:05d}"
            body: dict[str, Any] = {
                "messageId": message_id,
                "userId": f"latency-user-{number % 20}",
                "event": ("Product Viewed", "Product Added", "Order Completed")[number % 3],
                "properties": {"product_id": f"p{number % 9}", "price": 12.5, "currency": "EUR"},
                "timestamp": datetime.now(UTC).isoformat(),
            }
            while True:
                response = session.post(f"{arguments.collector}/v1/track", json=body, timeout=30)
                if response.status_code == 200:
                    accepted[message_id] = time.time()
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
            next_at += interval
            time.sleep(max(0.0, next_at - time.time()))
        done_sending.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = None
    with psycopg.connect(arguments.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.autocommit = True
        while len(seen) < arguments.events:
            waiting = [event_id for event_id in accepted if event_id not in seen]
            if waiting:
                rows = conn.execute("SELECT event_id FROM events WHERE event_id = ANY(%s)", (waiting,)).fetchall()
                now = time.time()
                for (event_id,) in rows:
                    seen[event_id] = now
            if done_sending.is_set() and deadline is None:
                deadline = time.time() + arguments.timeout
            if deadline is not None and time.time() > deadline:
                break
            time.sleep(0.5)
    latencies = [seen[event_id] - accepted[event_id] for event_id in seen]
    missing = arguments.events - len(seen)
    print(f"events sent {arguments.events} at {arguments.rate}/s; queryable in events: {len(seen)}; missing: {missing}")
    if latencies:
        print(
            f"accepted -> in events, seconds: p50 {statistics.median(latencies):.1f}  "
            f"p95 {statistics.quantiles(latencies, n=20, method='inclusive')[18]:.1f}  max {max(latencies):.1f}  min {min(latencies):.1f}"
        )


if __name__ == "__main__":
    main()
