"""The events API resource: which cursor-paginated APIs to poll and how to read each."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from etl_assets.settings import ConfigError
from etl_assets.sources.events_api import ApiSource, EventsApiClient, load_api_sources


class EventsApiResource(ConfigurableResource):
    """One API source from these fields, or several from the JSON file ``sources_file`` names."""

    base_url: str = Field(description="URL of the first page.")
    name: str = Field(default="demo", description="Source name (staging and source_cursors know it as api:<name>).")
    token_env: str | None = Field(
        default="ETL_EVENTS_API_TOKEN", description="Environment variable holding the bearer token."
    )
    page_size: int = Field(default=500)
    sources_file: str | None = Field(default=None, description="JSON list of sources; replaces the single one.")

    def sources(self) -> list[ApiSource]:
        if self.sources_file:
            return load_api_sources(Path(self.sources_file))
        return [ApiSource(self.name, self.base_url, token_env=self.token_env, page_size=self.page_size)]

    def source(self, name: str) -> ApiSource:
        sources = {source.name: source for source in self.sources()}
        if name not in sources:
            raise ConfigError(f"no events API source named {name!r}: the configured ones are {', '.join(sources)}")
        return sources[name]

    def client(self, name: str) -> EventsApiClient:
        return EventsApiClient(self.source(name))
