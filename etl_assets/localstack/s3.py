"""The local S3 endpoint: moto's server on 127.0.0.1, a real HTTP S3 API kept in memory."""

from __future__ import annotations

from pathlib import Path

from etl_assets.localstack.http_service import HttpService


class LocalS3(HttpService):
    def __init__(self, port: int, log_path: Path, host: str = "127.0.0.1") -> None:
        super().__init__(
            "moto.server", ["-H", host, "-p", str(port)], port, log_path, host=host, health_path="/moto-api/"
        )

    @property
    def endpoint_url(self) -> str:
        return self.url

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
