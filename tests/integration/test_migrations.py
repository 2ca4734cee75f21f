"""The migrations and the MetaData are one schema: autogenerate finds nothing to do, and the chain
upgrades, downgrades and upgrades again cleanly."""

from datetime import date

from sqlalchemy import inspect, text

from etl_assets.warehouse import migrate
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.partitions import ensure_event_partitions
from etl_assets.warehouse.schema import metadata
from tests.harness import head_revision


def test_migrations_match_the_metadata(empty_database_url):
    engine = create_warehouse_engine(empty_database_url)
    migrate.upgrade(engine)
    assert migrate.schema_drift(engine) == []
    engine.dispose()


def test_drift_is_found_when_the_database_differs(warehouse_engine):
    with warehouse_engine.begin() as conn:
        conn.execute(text("ALTER TABLE staging_events ADD COLUMN stray text"))
        conn.execute(text("DROP INDEX ix_events_product_id"))
    diffs = migrate.schema_drift(warehouse_engine)
    kinds = {diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in diffs}
    assert "remove_column" in kinds
    assert "add_index" in kinds


def test_upgrade_downgrade_upgrade(empty_database_url):
    engine = create_warehouse_engine(empty_database_url)
    assert migrate.upgrade(engine) == head_revision()
    with engine.begin() as conn:
        ensure_event_partitions(conn, [date(2025, 8, 1)])
    migrate.downgrade(engine, "base")
    leftover = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert leftover == set()
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)
    assert migrate.schema_drift(engine) == []
    engine.dispose()


def test_the_migration_chain_has_one_head():
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(migrate.alembic_config()).get_heads()) == 1
