"""A Python HTTP service (the collector, the demo events API, the local S3 endpoint) as a supervised child."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import requests

from etl_assets.localstack import processes


class HttpService:
    """``python -m <module> <args>`` on 127.0.0.1:<port>, ready when ``GET <health_path>`` answers."""

    def __init__(
        self,
        module: str,
        args: Sequence[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        health_path: str = "/healthz",
    ) -> None:
        self.module = module
        self.args = list(args)
        self.port = port
        self.host = host
        self.log_path = log_path
        self.env = env
        self.health_path = health_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = processes.start([sys.executable, "-m", self.module, *self.args], log=log, env=self.env)
        try:
            processes.wait_ready(self.process, self._answers, timeout=timeout, log_path=self.log_path, interval=0.1)
        except processes.NotReady:
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            requests.get(f"{self.url}{self.health_path}", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=timeout)
            self.process = None
