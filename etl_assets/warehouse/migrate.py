"""Alembic, driven from code: ``upgrade``/``downgrade`` the warehouse and compare it with the MetaData."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from sqlalchemy import Engine

from etl_assets.settings import PROJECT_ROOT
from etl_assets.warehouse.partitions import is_partition_table
from etl_assets.warehouse.schema import metadata


def alembic_config() -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the warehouse to ``revision``; return the revision it is at afterwards."""
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def include_name(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """Day partitions of ``events`` are created at run time, not by migrations: leave them out."""
    return not (type_ == "table" and name is not None and is_partition_table(name))


def schema_drift(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the MetaData (empty: no drift)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": include_name, "compare_type": True, "compare_server_default": True}
        )
        diffs: list[Any] = compare_metadata(context, metadata)
        return diffs
