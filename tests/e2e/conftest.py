"""One `etl dev` per test session, shared by the tests that drive the platform as its users do (the browser,
the GraphQL API, `etl status`, `etl dev`'s own services): starting it costs half a minute, a test's own data costs a
second. Its teardown is a Ctrl-C that must leave no process behind. The tests that use it run on one xdist worker
(tests/conftest.py groups them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.dev_platform import DevPlatform, FailedCheck, ctrl_c, shop_events, start_dev_platform

STARTUP_LIMIT = 180


@pytest.fixture(scope="session")
def dev_platform(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, request: pytest.FixtureRequest
) -> Iterator[DevPlatform]:
    """`etl dev` with its own PostgreSQL, Dagster and collector, on the session's S3 endpoint with buckets of its
    own (so no demo files are seeded: each test drops the files it means to)."""
    started = time.monotonic()
    platform = start_dev_platform(
        s3_endpoint, tmp_path_factory.mktemp("etl-dev") / "etl-home", request.config.rootpath / "test-artifacts", "e2e"
    )
    run = platform.run
    try:
        run.wait_for("ready", STARTUP_LIMIT)
        platform.ready_after = time.monotonic() - started
        yield platform
    finally:
        if "engine" in platform.__dict__:
            platform.engine.dispose()
        if run.process.poll() is None:
            _, survivors = ctrl_c(run)
            assert survivors == [], survivors
            assert run.process.returncode == 0, "\n".join(run.lines[-20:])


@pytest.fixture(scope="session")
def failed_check(dev_platform: DevPlatform) -> FailedCheck:
    """A day whose one source staged half its events with a price that is not a number, and the daily_events_job
    run whose staging gate failed on it (WARN) and held the source back (its rows stay pending)."""
    day = datetime.now(UTC).date() - timedelta(days=50)
    payloads = [
        {**event, "type": "product_view", "product_id": "sku-1", "price": "€12.50"} if number % 2 else event
        for number, event in enumerate(shop_events("badday", day, 160))
    ]
    dev_platform.stage("e2e-bad-day", payloads)
    run_id = dev_platform.client.submit_job_execution("daily_events_job", tags={"dagster/partition": day.isoformat()})
    status = dev_platform.wait_for_run(run_id)
    bad = [payload["id"] for payload in payloads if payload.get("price") == "€12.50"]
    return FailedCheck(day, run_id, status, bad)
