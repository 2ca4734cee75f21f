"""``Settings``: every area of the platform's configuration in one frozen value, read once by ``from_env``."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy.engine import URL

from etl_assets.settings.checks import ChecksSettings
from etl_assets.settings.database import DatabaseSettings
from etl_assets.settings.local import LocalSettings
from etl_assets.settings.pipeline import PipelineSettings
from etl_assets.settings.privacy import PrivacySettings
from etl_assets.settings.sources import CollectorSettings, EventsApiSettings
from etl_assets.settings.storage import StorageSettings


@dataclass(frozen=True)
class Settings(
    LocalSettings,
    DatabaseSettings,
    StorageSettings,
    PipelineSettings,
    PrivacySettings,
    CollectorSettings,
    EventsApiSettings,
    ChecksSettings,
):
    """All areas at once (the README's configuration table lists them in this order); a part that needs one area
    can take that area's type, which ``Settings`` is."""

    @property
    def ui_base_url(self) -> str:
        """Where links in alerts point: ETL_UI_URL, or the local UI."""
        return (self.ui_url or f"http://127.0.0.1:{self.ui_port}").rstrip("/")

    @property
    def warehouse_url(self) -> URL:
        """DATABASE_URL, or the ``warehouse`` database of the embedded PostgreSQL that ``etl dev`` runs."""
        if self.database_url is not None:
            return self.database_url
        return URL.create("postgresql", username="postgres", host="127.0.0.1", port=self.pg_port, database="warehouse")

    @property
    def ingest_url(self) -> URL:
        """Where ingestion writes: ETL_INGEST_DATABASE_URL, or the warehouse URL."""
        return self.ingest_database_url or self.warehouse_url


@functools.cache
def definition_settings() -> Settings:
    """The settings that shape the definitions themselves, read once a process, when the code location is first
    loaded: the partitions' first day, whether the pipeline sensors start running, the freshness policies' windows
    (Dagster fixes these as the modules under ``defs/`` are imported). What assets, checks, sensors and ops read
    when they run comes from the ``settings`` resource, bound with the Definitions."""
    return Settings.from_env()
