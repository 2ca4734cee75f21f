"""What a newcomer meets in the Dagster UI: everything says what it is, assets are grouped, owned and typed,
tables show their columns, and the daily tables show which events columns they are computed from."""

import re

import dagster as dg
import pytest
from sqlalchemy import Column, MetaData, Table, Text, func, select

from etl_assets.definitions import defs
from etl_assets.warehouse import schema
from etl_assets.warehouse.lineage import column_lineage

GROUPS = {"ingest", "warehouse", "enrichment", "quality"}
MIN_WORDS = 8


@pytest.fixture(scope="module")
def repository() -> dg.RepositoryDefinition:
    return defs().get_repository_def()


def explains(description: str | None, name: str) -> bool:
    """A sentence or more that says more than the name does."""
    words = re.findall(r"[A-Za-z]+", description or "")
    return len(words) >= MIN_WORDS and (description or "").strip().lower() != name.replace("_", " ")


def test_every_asset_says_what_it_is_and_is_grouped_owned_and_typed(repository):
    graph = repository.asset_graph
    keys = graph.get_all_asset_keys()
    assert {key.to_user_string() for key in keys} >= {"raw_payloads", "staging_events", "events", "quarantine"}
    for key in keys:
        node = graph.get(key)
        name = key.to_user_string()
        assert explains(node.description, name), f"{name}: {node.description!r}"
        assert node.group_name in GROUPS, f"{name} is in group {node.group_name!r}"
        assert node.owners, f"{name} has no owner"
        assert node.kinds, f"{name} has no kind"
    assert {graph.get(key).group_name for key in keys} == GROUPS


def test_every_table_asset_shows_its_columns(repository):
    graph = repository.asset_graph
    for key in graph.get_all_asset_keys():
        metadata = graph.get(key).metadata
        table = schema.metadata.tables[metadata["etl/table"]]
        columns = metadata["dagster/column_schema"].columns
        assert [column.name for column in columns] == [column.name for column in table.columns], key
        assert all(column.type for column in columns)


def test_every_check_sensor_schedule_and_job_says_what_it_does(repository):
    graph = repository.asset_graph
    checks = {key: graph.get_check_spec(key).description for key in graph.asset_check_keys}
    assert len(checks) >= 10
    for key, description in checks.items():
        assert explains(description, key.name), f"check {key.name}: {description!r}"
    for sensor in repository.sensor_defs:
        assert explains(sensor.description, sensor.name), f"sensor {sensor.name}: {sensor.description!r}"
    for schedule in repository.schedule_defs:
        assert explains(schedule.description, schedule.name), f"schedule {schedule.name}: {schedule.description!r}"
    jobs = [job for job in repository.get_all_jobs() if not job.name.startswith("__")]
    assert {"daily_events_job", "ingest_landing_file_job", "replay_job"} <= {job.name for job in jobs}
    for job in jobs:
        assert explains(job.description, job.name), f"job {job.name}: {job.description!r}"


def test_the_daily_tables_show_which_events_columns_they_come_from(repository):
    graph = repository.asset_graph
    for table in schema.DAILY_TABLES:
        lineage = graph.get(dg.AssetKey(table.name)).metadata["dagster/column_lineage"]
        assert set(lineage.deps_by_column) <= set(table.columns.keys())
        for deps in lineage.deps_by_column.values():
            assert deps
            assert all(
                dep.asset_key == dg.AssetKey("events")
                and (
                    dep.column_name in schema.events.c
                    or dep.column_name.removeprefix("order_lines.") in schema.order_lines.c
                )
                for dep in deps
            )
    sales = graph.get(dg.AssetKey("product_daily_sales")).metadata["dagster/column_lineage"].deps_by_column
    assert {"order_lines.price", "order_lines.quantity"} <= {dep.column_name for dep in sales["gross_revenue"]}
    assert {dep.column_name for dep in sales["units_sold"]} == {"event_type", "order_lines.quantity"}
    assert {dep.column_name for dep in sales["day"]} == {"occurred_at"}


def test_lineage_follows_subqueries_and_leaves_out_what_reads_no_column():
    source = Table("source", MetaData(), Column("a", Text), Column("b", Text), Column("c", Text))
    inner = select((source.c.a + source.c.b).label("ab"), source.c.c).subquery()
    query = select(inner.c.ab.label("joined"), func.upper(inner.c.c).label("upper_c"), func.count().label("rows"))
    assert column_lineage(query, source) == {"joined": ["a", "b"], "upper_c": ["c"]}
