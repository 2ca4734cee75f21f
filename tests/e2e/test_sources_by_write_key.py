"""Two applications send to the collector of a running `etl dev` through Segment's own Python SDK, each with its
own write key; one of them sends every other event with a price that is not a number. The staging gate holds that
source back, with its reason in the check and in `etl status`, while the other source's events of the same day
reach ``events`` through the real ``staged_days_sensor`` runs within 60 s at p95.

The figure printed is the platform's freshness under this mixed traffic: from the moment the SDK's ``flush()``
returned (the collector had answered 200) to the first poll that finds the event queryable in ``events``.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid

from segment.analytics import Client
from sqlalchemy import text

from tests.e2e.dev_platform import APP_WRITE_KEY, ETL, SHOP_WRITE_KEY, DevPlatform

ROUNDS = 60
"""One round a second: each application sends four events, then flushes."""
PER_ROUND = 4
P95_BOUND_SECONDS = 60
SETTLE_LIMIT_SECONDS = 240
"""How long the shop's events may take to appear after the last send before the test gives up (a hang)."""


def _client(dev_platform: DevPlatform, write_key: str, errors: list) -> Client:
    return Client(
        write_key,
        host=f"http://127.0.0.1:{dev_platform.env['ETL_COLLECTOR_PORT']}",
        upload_interval=0.05,
        max_retries=6,
        on_error=lambda error, batch: errors.append(error),
    )


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def test_a_source_sending_half_malformed_events_is_held_and_the_other_reaches_events_within_60s_at_p95(
    dev_platform: DevPlatform,
):
    run = uuid.uuid4().hex[:8]
    errors: list = []
    shop, app = _client(dev_platform, SHOP_WRITE_KEY, errors), _client(dev_platform, APP_WRITE_KEY, errors)
    accepted: dict[str, float] = {}
    app_ids: list[str] = []
    seen: dict[str, float] = {}
    days: set[str] = set()

    def poll() -> None:
        waiting = [event_id for event_id in accepted if event_id not in seen]
        if waiting:
            with dev_platform.engine.connect() as conn:
                found = conn.execute(text("SELECT event_id FROM events WHERE event_id = ANY(:ids)"), {"ids": waiting})
                now = time.time()
                for (event_id,) in found:
                    seen[event_id] = now

    assert dev_platform.start_sensor("staged_days_sensor") == "RUNNING"
    try:
        started = time.time()
        for round_number in range(ROUNDS):
            sent_now = []
            for number in range(round_number * PER_ROUND, (round_number + 1) * PER_ROUND):
                properties = {"product_id": f"p{number % 9}", "price": 12.5, "currency": "EUR"}
                _, message = shop.track(f"{run}-shopper-{number % 20}", "Product Viewed", properties)
                sent_now.append(message["messageId"])
                days.add(str(message["timestamp"])[:10])
                bad = {**properties, "price": "€12.50"} if number % 2 else properties
                _, message = app.track(f"{run}-app-user-{number % 20}", "Product Viewed", bad)
                app_ids.append(message["messageId"])
                days.add(str(message["timestamp"])[:10])
            shop.flush()
            app.flush()
            now = time.time()
            accepted.update(dict.fromkeys(sent_now, now))
            poll()
            time.sleep(max(0.0, started + round_number + 1 - time.time()))
        deadline = time.time() + SETTLE_LIMIT_SECONDS
        while len(seen) < len(accepted) and time.time() < deadline:
            poll()
            time.sleep(0.5)
    finally:
        dev_platform.stop_sensor("staged_days_sensor")
        shop.shutdown()
        app.shutdown()

    assert errors == []
    assert len(seen) == len(accepted) == ROUNDS * PER_ROUND, f"{len(accepted) - len(seen)} shop events never loaded"
    latencies = sorted(seen[event_id] - accepted[event_id] for event_id in accepted)
    p50, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
    print(
        f"\nfreshness under mixed traffic ({len(latencies)} shop events beside {len(app_ids)} app events, half "
        f"malformed): accepted -> queryable in events p50 {p50:.1f} s, p95 {p95:.1f} s, max {latencies[-1]:.1f} s"
    )
    assert p95 <= P95_BOUND_SECONDS

    with dev_platform.engine.connect() as conn:
        holds = dict(
            conn.execute(text("SELECT day::text, reason FROM held_sources WHERE source = 'segment:app'")).all()
        )
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM staging_status WHERE source = 'segment:app' AND status = 'pending' "
                "AND event_id = ANY(:ids)"
            ),
            {"ids": app_ids},
        ).scalar_one()
        shop_sources = conn.execute(
            text("SELECT DISTINCT source FROM events WHERE event_id = ANY(:ids)"), {"ids": list(accepted)}
        ).all()
    assert holds and set(holds) <= days
    assert all(reason.startswith("valid_values: ") and "over the tolerance 5.0%" in reason for reason in holds.values())
    assert waiting > 0  # the held source's rows wait: nothing of them is lost
    assert shop_sources == [("segment:shop",)]

    evaluations = [
        execution["evaluation"]
        for execution in dev_platform.check_executions("staging_events", "staged_day_valid")
        if execution["evaluation"] is not None
    ]
    assert any(
        evaluation["severity"] == "WARN"
        and "held back: " in (evaluation["description"] or "")
        and "segment:app on " in evaluation["description"]
        for evaluation in evaluations
    )
    status = subprocess.run([ETL, "status"], env=dev_platform.env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert any(line.startswith("  segment:app ") and "HELD BACK on " in line for line in lines)
    assert any(line.startswith("  segment:shop ") and "HELD" not in line for line in lines)
    assert any(line.startswith("  segment:app on ") and "valid_values: " in line for line in lines)
