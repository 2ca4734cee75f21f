"""The local S3 endpoint: moto's server on 127.0.0.1, a real HTTP S3 API kept in memory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from etl_assets.localstack import processes


class S3StartError(Exception):
    pass


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise S3StartError(processes.tail(self.log_path, 3) or "moto server exited at start")
            try:
                requests.get(f"{self.endpoint_url}/moto-api/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise S3StartError(f"not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 3.0) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=timeout)
            self.process = None

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
