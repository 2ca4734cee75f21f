"""The local S3 endpoint: moto's server on 127.0.0.1, a real HTTP S3 API kept in memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from etl_assets.localstack import processes


class LocalS3:
    def __init__(self, port: int, log_path: Path, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = processes.start(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)], log=log
            )
        try:
            processes.wait_ready(self.process, self._answers, timeout=timeout, log_path=self.log_path, interval=0.1)
        except processes.NotReady:
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            requests.get(f"{self.endpoint_url}/moto-api/", timeout=1)
            return True
        except requests.ConnectionError:
            return False

    def stop(self, timeout: float = 3.0) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=timeout)
            self.process = None

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
