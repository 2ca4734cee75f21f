"""Steps that talk to the outside carry a retry policy; every step that opens warehouse connections takes a slot
of the ``warehouse`` pool, and dagster.yaml sizes that pool for the server's connection limit."""

from __future__ import annotations

import dagster as dg

from etl_assets.io_managers.postgres import WarehouseIOManager
from etl_assets.resources import WarehouseResource
from etl_assets.settings import Settings

WAREHOUSE_POOL = "warehouse"
SERVER_MAX_CONNECTIONS = 100
"""PostgreSQL's default max_connections: what dagster.yaml's comment sizes the warehouse pool for."""
RESERVED_CONNECTIONS = 20
"""Left for the sensors, the daemon, Dagster's own storage and a psql session (see dagster.yaml)."""

OUTSIDE_STEPS = ("ingest_landing_file", "poll_events_api", "replay_archived_batches")
WAREHOUSE_STEPS = {
    "events",
    "user_daily_activity",
    "sessions",
    "daily_funnel",
    "product_daily_sales",
    "ingest_landing_file",
    "quarantine",
    "poll_events_api",
    "replay_archived_batches",
    "staging_events_staged_day_valid",
    "staging_events_schema_drift",
    "events_events_valid",
    "events_events_reconciled",
    "events_order_lines_valid",
    "raw_payloads_batches_reconciled",
    "raw_payloads_sources_fresh",
    "user_daily_activity_user_daily_activity_valid",
    "sessions_sessions_valid",
    "daily_funnel_daily_funnel_valid",
    "product_daily_sales_product_daily_sales_valid",
}


def op_defs(definitions: dg.Definitions) -> dict[str, dg.OpDefinition]:
    """Every op of the code location (assets and asset checks are ops too), by name."""
    return {
        op.name: op for job in definitions.get_repository_def().get_all_jobs() for op in job.graph.iterate_op_defs()
    }


def touches_warehouse(op: dg.OpDefinition, definitions: dg.Definitions) -> bool:
    """Whether the op uses a warehouse resource, or writes an output through the warehouse IO manager."""
    resources = definitions.resources or {}
    warehouses = {key for key, resource in resources.items() if isinstance(resource, WarehouseResource)}
    io_managers = {key for key, resource in resources.items() if isinstance(resource, WarehouseIOManager)}
    writes = any(
        output.io_manager_key in io_managers and not output.dagster_type.is_nothing for output in op.output_defs
    )
    return bool(warehouses & set(op.required_resource_keys)) or writes


def test_steps_that_talk_to_the_outside_retry_with_exponential_backoff_and_jitter(definitions):
    ops = op_defs(definitions)
    for name in OUTSIDE_STEPS:
        policy = ops[name].retry_policy
        assert policy is not None, f"{name} has no retry policy"
        assert policy.max_retries == 3
        assert policy.delay and policy.delay > 0
        assert policy.backoff == dg.Backoff.EXPONENTIAL
        assert policy.jitter == dg.Jitter.PLUS_MINUS


def test_every_step_that_opens_warehouse_connections_is_in_the_warehouse_pool(definitions):
    ops = op_defs(definitions)
    touching = {name for name, op in ops.items() if touches_warehouse(op, definitions)}
    assert touching >= WAREHOUSE_STEPS, f"not recognized: {sorted(WAREHOUSE_STEPS - touching)}"
    outside_pool = sorted(name for name in touching if ops[name].pool != WAREHOUSE_POOL)
    assert outside_pool == [], f'these open warehouse connections without pool="{WAREHOUSE_POOL}": {outside_pool}'


def test_the_warehouse_pool_fits_the_servers_connection_limit(project_root, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://u@127.0.0.1:1/dagster")
    config, _ = dagster_instance_config(str(project_root))
    pools = config["concurrency"]["pools"]
    assert pools.get("granularity", "op") == "op"  # a slot per running step, across runs
    settings = Settings.from_env({})
    per_step = settings.db_pool_size + settings.db_max_overflow
    assert pools["default_limit"] * per_step + RESERVED_CONNECTIONS <= SERVER_MAX_CONNECTIONS


def test_a_runs_warehouse_steps_claim_slots_of_the_pool(definitions):
    """A step of the pool claims a slot when it starts: the pool comes into being with the default limit."""
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 3}}}) as instance:
        assert WAREHOUSE_POOL not in instance.event_log_storage.get_concurrency_keys()
        result = definitions.resolve_job_def("data_quality_job").execute_in_process(instance=instance)
        assert result.success
        info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert (info.slot_count, info.active_slot_count) == (3, 0)  # claimed by the steps, freed when they ended
