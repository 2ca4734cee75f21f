"""The code location loads, its resources reach the real services, and dagster.yaml is valid."""

import dagster as dg
import pytest
from sqlalchemy import text

from etl_assets.definitions import defs
from etl_assets.resources import ObjectStoreResource, WarehouseResource


def test_definitions_load_and_bind_the_resources():
    definitions = defs()
    assert {"warehouse", "object_store"} <= set(definitions.resources)
    definitions.get_repository_def().load_all_definitions()


def test_warehouse_resource_connects(warehouse_url):
    warehouse = WarehouseResource(database_url=warehouse_url)
    with warehouse.get_engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM staging_events")).scalar_one() == 0
    assert warehouse.get_engine() is warehouse.get_engine()


def test_object_store_resource_reaches_its_buckets(s3_endpoint, buckets, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = ObjectStoreResource(
        endpoint_url=s3_endpoint, landing_bucket=buckets["landing"], archive_bucket=buckets["archive"]
    )
    store.client().put_object(Bucket=store.archive_bucket, Key="raw/x", Body=b"x")
    assert store.client().head_object(Bucket=store.archive_bucket, Key="raw/x")["ContentLength"] == 1


def test_database_url_is_read_from_the_environment_not_written_into_config():
    resource = defs().resources["warehouse"]
    assert isinstance(resource.database_url, dg.EnvVar)


def test_dagster_yaml_is_valid(project_root, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://u@127.0.0.1:1/dagster")
    config, _ = dagster_instance_config(str(project_root))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_retries"]["enabled"] is True
    assert config["telemetry"]["enabled"] is False
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}


@pytest.mark.parametrize("broken", ["run_retries: {enabled: maybe}", "storage: {sqlite: 1, postgres: 2}"])
def test_an_invalid_dagster_yaml_is_refused(tmp_path, broken):
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text(broken + "\n")
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))
