"""Where events come from besides landing files: the collector (webhooks, Segment-compatible API) and the events
API poller."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from etl_assets.settings.declare import Section, Setting, secret, setting
from etl_assets.settings.parsers import http_url, integer, path, port


@dataclass(frozen=True)
class CollectorSettings(Section):
    collector_port: int = setting(
        "ETL_COLLECTOR_PORT",
        port,
        default="9200",
        help="Port of the collector (signed webhooks, Segment-compatible tracking API).",
    )
    SEGMENT_WRITE_KEYS: ClassVar[Setting[str]] = secret(
        "ETL_SEGMENT_WRITE_KEYS",
        help="Write keys the collector's Segment-compatible API accepts, each naming its source: comma-separated "
        "`key=name` entries (its events come from source `segment:name`), a bare `key` (source `segment`), or a "
        'JSON object `{"key": "name"}`. Freshness, drift, reconciliation, metrics, alerts, the staging gate and '
        "`etl status` treat each source on its own. Unset: `etl dev` uses `local-write-key`; elsewhere every "
        "Segment call is refused.",
    )
    WEBHOOK_SECRETS: ClassVar[Setting[str]] = secret(
        "ETL_WEBHOOK_SECRETS",
        help="Partner webhook secrets, `partner=secret` comma-separated (a partner may appear twice while its secret "
        "rotates). Unset: `etl dev` uses `demo-partner=local-webhook-secret`; elsewhere every webhook is refused.",
    )
    collector_max_body_bytes: int = setting(
        "ETL_COLLECTOR_MAX_BODY_BYTES",
        integer(minimum=1024, maximum=64 * 1024 * 1024, kind="a size"),
        default="1048576",
        help="Largest partner webhook body the collector accepts (413 above).",
    )
    collector_max_pending: int = setting(
        "ETL_COLLECTOR_MAX_PENDING",
        integer(minimum=1, maximum=1_000_000, kind="a whole number"),
        default="20000",
        help="Requests the collector holds waiting for their write; beyond it, it sheds load: 503 with Retry-After, "
        "nothing kept.",
    )


@dataclass(frozen=True)
class EventsApiSettings(Section):
    events_api_port: int = setting(
        "ETL_EVENTS_API_PORT",
        port,
        default="9100",
        help="Port of the demo events API that `etl dev` starts on 127.0.0.1.",
    )
    events_api_url: str | None = setting(
        "ETL_EVENTS_API_URL",
        http_url,
        help="URL of the events API's first page. Unset: the demo events API on ETL_EVENTS_API_PORT.",
    )
    TOKEN: ClassVar[Setting[str]] = secret(
        "ETL_EVENTS_API_TOKEN",
        help="Bearer token of the events API (a secret, read when a poll runs). Unset: `etl dev` uses the demo API's "
        "token.",
    )
    events_api_sources_file: Path | None = setting(
        "ETL_EVENTS_API_SOURCES",
        path,
        help="Path of a JSON file listing several API sources (name, base_url, token_env, page_size, cursor_param, "
        "records_field, next_cursor_field or next_link_field, …); replaces the single source above.",
    )

    @property
    def demo_events_api_url(self) -> str:
        return f"http://127.0.0.1:{self.events_api_port}/events"
