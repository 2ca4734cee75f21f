"""The daily tables count persons, through the real sensor and its runs (in-process, real PostgreSQL).

A late identify re-attributing a merged day through the sensor is tested once, through the Segment SDK
(tests/e2e/test_segment_sdk.py); at the merge, in tests/integration/test_identity_graph.py."""

from datetime import date

from sqlalchemy import text

from tests.harness import pipeline, stage_payloads

DAY = date(2025, 8, 1)


def message(event_id: str, at: str, kind: str, *, anonymous: str | None = None, user: str | None = None) -> dict:
    ids = {**({"anonymousId": anonymous} if anonymous else {}), **({"userId": user} if user else {})}
    payload = {"messageId": event_id, "type": kind, "timestamp": at, **ids}
    if kind in ("product_view", "add_to_cart", "purchase"):
        payload["properties"] = {"product_id": "p1", "price": "10.00", "currency": "EUR"}
    return payload


def funnel(engine, day: date = DAY) -> tuple:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT viewers, carters, purchasers FROM daily_funnel WHERE day = :day"), {"day": day}
        ).one_or_none()


def sessions(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT day, user_id, events, converted FROM sessions ORDER BY day, started_at")).all()


def activity(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT day, user_id, events, sessions FROM user_daily_activity ORDER BY 1, 2")).all()


def settle(run) -> list[str]:
    """Tick staged_days_sensor and run what it asks until it asks nothing; the ranges it asked for."""
    asked = []
    while requests := [r for r in run.tick("staged_days_sensor") if r.run_key not in run.run_keys]:
        asked += [r.tags["dagster/asset_partition_range_start"] for r in requests]
        run.execute("staged_days_sensor", requests)
    return asked


def test_browsing_a_login_mid_visit_and_a_purchase_are_one_viewer_carter_purchaser_and_session(
    definitions, warehouse_engine
):
    stage_payloads(
        warehouse_engine,
        "visit",
        [
            message("m1", "2025-08-01T10:00:00Z", "product_view", anonymous="anon-1"),
            message("m2", "2025-08-01T10:02:00Z", "identify", anonymous="anon-1", user="ann"),
            message("m3", "2025-08-01T10:03:00Z", "add_to_cart", anonymous="anon-1", user="ann"),
            message("m4", "2025-08-01T10:05:00Z", "purchase", user="ann"),
        ],
    )
    with pipeline(definitions) as run:
        settle(run)
    assert funnel(warehouse_engine) == (1, 1, 1)
    assert sessions(warehouse_engine) == [(DAY, "ann", 3, True)]
    assert activity(warehouse_engine) == [(DAY, "ann", 3, 1)]


def test_a_session_past_midnight_is_one_session_of_its_first_day_and_a_late_event_joins_two(
    definitions, warehouse_engine
):
    stage_payloads(
        warehouse_engine,
        "night",
        [
            message("n1", "2025-08-01T23:30:00Z", "page_view", user="ann"),
            message("n2", "2025-08-02T00:20:00Z", "page_view", user="ann"),
            message("n3", "2025-08-02T00:40:00Z", "page_view", user="ann"),
        ],
    )
    with pipeline(definitions) as run:
        settle(run)
        assert sessions(warehouse_engine) == [(DAY, "ann", 1, False), (date(2025, 8, 2), "ann", 2, False)]

        stage_payloads(warehouse_engine, "late", [message("n0", "2025-08-01T23:55:00Z", "page_view", user="ann")])
        asked = settle(run)
    # The late event is on August 1; the session it joins ran into August 2, whose rows the sensor rebuilt too.
    assert asked == ["2025-08-01", "2025-08-02"]
    assert sessions(warehouse_engine) == [(DAY, "ann", 4, False)]
    assert activity(warehouse_engine) == [(DAY, "ann", 2, 1), (date(2025, 8, 2), "ann", 2, 0)]
