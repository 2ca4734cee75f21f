"""``dagster dev`` (webserver + daemon) as a supervised child, on the platform's own instance."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from etl_assets.localstack import processes
from etl_assets.settings import PROJECT_ROOT

LOCATION_STATUS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@dataclass(frozen=True)
class LocationStatus:
    name: str
    error: str | None


def dagster_home(etl_home: Path) -> Path:
    """The instance folder: the project's ``dagster.yaml`` copied in on every start, local artifacts."""
    home = etl_home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def location_statuses(base_url: str, timeout: float = 5.0) -> list[LocationStatus] | None:
    """The code locations and their load errors, or None while any is still loading."""
    response = requests.post(f"{base_url}/graphql", json={"query": LOCATION_STATUS_QUERY}, timeout=timeout)
    response.raise_for_status()
    workspace = response.json()["data"]["workspaceOrError"]
    entries = workspace.get("locationEntries", [])
    if not entries or any(entry["loadStatus"] != "LOADED" for entry in entries):
        return None
    return [LocationStatus(entry["name"], (entry["locationOrLoadError"] or {}).get("message")) for entry in entries]


class DagsterDev:
    def __init__(self, port: int, log_path: Path, env: dict[str, str], host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> list[LocationStatus]:
        executable = Path(sys.executable).parent / "dagster"
        with open(self.log_path, "ab") as log:
            self.process = processes.start(
                [
                    str(executable),
                    "dev",
                    "-w",
                    str(PROJECT_ROOT / "workspace.yaml"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                ],
                log=log,
                env=self.env,
                cwd=self.env["DAGSTER_HOME"],
            )
        statuses: list[LocationStatus] = []

        def loaded() -> bool:
            try:
                requests.get(f"{self.url}/server_info", timeout=2).raise_for_status()
                statuses[:] = location_statuses(self.url) or []
            except (requests.RequestException, KeyError, ValueError):
                return False
            return bool(statuses)

        processes.wait_ready(self.process, loaded, timeout=timeout, log_path=self.log_path, interval=0.5)
        return statuses

    def stop(self, timeout: float = 6.0) -> None:
        """SIGINT to the whole group, as a terminal's Ctrl-C would; then kill what is left."""
        if self.process is not None:
            import signal

            processes.stop(self.process, sig=signal.SIGINT, timeout=timeout)
            self.process = None
