"""What ``etl dev`` runs on this machine: where it keeps its state and the ports of its services."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from etl_assets.settings.declare import Section, setting
from etl_assets.settings.parsers import folder, port

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class LocalSettings(Section):
    etl_home: Path = setting(
        "ETL_HOME",
        folder,
        default=str(PROJECT_ROOT / ".etl"),
        shown_default="<project>/.etl",
        help="Folder for local state: embedded PostgreSQL data, Dagster home, logs.",
    )
    pg_port: int = setting(
        "ETL_PG_PORT",
        port,
        default="5433",
        help="Port of the embedded PostgreSQL on 127.0.0.1 (only when `DATABASE_URL` is unset).",
    )
    ui_port: int = setting("ETL_UI_PORT", port, default="3000", help="Port of the Dagster UI on 127.0.0.1.")
    s3_port: int = setting(
        "ETL_S3_PORT", port, default="9000", help="Port of the local S3 endpoint (moto) on 127.0.0.1."
    )
