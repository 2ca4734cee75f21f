"""The events API source as the platform runs it: the real code location's sensor and poll job against the
demo API on loopback (with a 429 and a 500 on purpose), then the staged-days sensor merges into events."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import func, select

from etl_assets.demo.events_api_server import FeedSettings, create_app
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.schema import events, source_cursors
from tests.asgi_server import serve
from tests.harness import pipeline


@pytest.fixture
def demo_api(pipeline_env: dict, monkeypatch: pytest.MonkeyPatch):
    app = create_app(
        FeedSettings(
            token="poll-token",
            backlog=1_100,
            events_per_second=0.0001,
            rate_limit_share=0.0,
            error_share=0.0,
            retry_after_seconds=0,
            scripted_statuses=[429, 500],
        )
    )
    with serve(app) as url:
        monkeypatch.setenv("ETL_EVENTS_API_URL", f"{url}/events")
        monkeypatch.setenv("ETL_EVENTS_API_TOKEN", "poll-token")
        yield app


def staging_materializations(result: dg.ExecuteInProcessResult) -> list[dict]:
    return [
        {key: value.value for key, value in event.event_specific_data.materialization.metadata.items()}
        for event in result.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
        and event.event_specific_data.materialization.asset_key == dg.AssetKey("staging_events")
    ]


def test_the_poll_sensor_and_job_stage_the_api_and_the_merge_loads_it(pipeline_env: dict, demo_api):
    from etl_assets.definitions import defs

    definitions = defs()
    engine = create_warehouse_engine(pipeline_env["DATABASE_URL"], pool_size=1, max_overflow=1)
    with pipeline(definitions) as platform:
        [first] = platform.tick_and_run("events_api_sensor")
        [metadata] = staging_materializations(first)
        assert metadata["pages"] == 4  # 500 + 500 + 100 events, then an empty page: the API is drained
        assert metadata["records"] == metadata["rows written"] == 1_100
        assert metadata["retries"] == 2
        assert metadata["retried statuses"] == "429, 500"

        [second] = platform.tick_and_run("events_api_sensor")
        assert second.success and staging_materializations(second) == []

        platform.tick_and_run("staged_days_sensor")
    with engine.connect() as conn:
        loaded = conn.scalar(select(func.count()).select_from(events).where(events.c.source == "api:demo"))
        cursor = conn.scalar(select(source_cursors.c.cursor).where(source_cursors.c.source == "api:demo"))
    engine.dispose()
    assert loaded == 1_100
    assert cursor is not None


def test_the_poll_sensor_waits_while_a_poll_of_the_source_is_running(pipeline_env: dict, demo_api):
    from etl_assets.definitions import defs

    definitions = defs()
    job = definitions.resolve_job_def("events_api_poll_job")
    with pipeline(definitions) as platform:
        platform.instance.create_run_for_job(
            job_def=job,
            run_config={"ops": {"poll_events_api": {"config": {"source": "demo"}}}},
            tags={"etl/api_source": "demo"},
            status=dg.DagsterRunStatus.STARTED,
        )
        assert platform.tick("events_api_sensor") == []
    assert demo_api.state.served == []
