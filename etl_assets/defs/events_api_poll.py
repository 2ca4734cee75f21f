"""The HTTP events API source: a sensor that starts a poll run per source, and the poll job.

A poll reads pages from the source's stored cursor until the API has nothing newer; each page is archived
and staged together with the cursor that follows it, so a failed or killed run resumes at the first page
it did not commit. The run reports pages, rows and retries on ``raw_payloads`` and ``staging_events``.
"""

import dagster as dg

from etl_assets.defs.pipeline_sensors import PIPELINE_SENSOR_STATUS
from etl_assets.defs.retry_policies import OUTSIDE_RETRY_POLICY
from etl_assets.orchestration.materialization import write_figures
from etl_assets.orchestration.partition_days import accepted_times
from etl_assets.orchestration.run_status import IN_FLIGHT
from etl_assets.orchestration.step_failures import retried_only_if_transient
from etl_assets.resources import WAREHOUSE_POOL, EventsApiResource, ObjectStoreResource, WarehouseResource
from etl_assets.sources.events_api import PollReport, poll_source
from etl_assets.warehouse.staging import StagingCounts

SOURCE_TAG = "etl/api_source"


class ApiPollConfig(dg.Config):
    source: str = "demo"
    """Name of the API source to poll."""
    max_pages: int | None = None
    """Stop after this many pages (default: the source's max_pages_per_run)."""


@dg.op(
    pool=WAREHOUSE_POOL,
    retry_policy=OUTSIDE_RETRY_POLICY,
    description="Pull new pages from one events API source into the raw archive and staging_events, "
    "moving its cursor in source_cursors with each page.",
)
def poll_events_api(
    context: dg.OpExecutionContext,
    config: ApiPollConfig,
    events_api: EventsApiResource,
    ingest_warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> None:
    client = events_api.client(config.source)

    def log_page(report: PollReport, counts: StagingCounts) -> None:
        context.log.info(
            f"page {report.pages}: {counts.records} records, {counts.staged} staged, "
            f"{counts.quarantined} quarantined; {report.retries} retries so far",
            extra={"source": report.source, "rows": counts.staged},
        )

    try:
        with retried_only_if_transient():
            report = poll_source(
                client,
                ingest_warehouse.get_engine(),
                object_store.client(),
                object_store.archive_bucket,
                accepted_times(),
                max_pages=config.max_pages,
                on_page=log_page,
            )
    finally:
        client.close()
    metadata = {
        "source": dg.MetadataValue.text(report.source),
        "pages": dg.MetadataValue.int(report.pages),
        "batches": dg.MetadataValue.int(report.pages),
        "records": dg.MetadataValue.int(report.records),
        "rows written": dg.MetadataValue.int(report.staged),
        "rows already staged": dg.MetadataValue.int(report.already_staged),
        "rows quarantined": dg.MetadataValue.int(report.quarantined),
        "retries": dg.MetadataValue.int(report.retries),
        "retried statuses": dg.MetadataValue.text(", ".join(map(str, report.retried_statuses)) or "none"),
        "caught up": dg.MetadataValue.bool(report.caught_up),
        **write_figures(report.records, report.seconds, errors=report.quarantined),
    }
    context.log.info(
        f"{report.source}: {report.pages} pages, {report.records} records, {report.staged} staged, "
        f"{report.retries} retries ({metadata['retried statuses'].value}), caught up: {report.caught_up}"
    )
    if report.records:
        context.log_event(dg.AssetMaterialization("raw_payloads", metadata={"source": metadata["source"]}))
        context.log_event(dg.AssetMaterialization("staging_events", metadata=metadata))


@dg.job(
    tags={"etl/kind": "api_poll"},
    description="Pull one events API source's new pages, from its stored cursor, into the raw archive and "
    "staging_events (started by events_api_sensor; the source is the op's config).",
)
def events_api_poll_job():
    poll_events_api()


@dg.sensor(
    job=events_api_poll_job,
    minimum_interval_seconds=30,
    default_status=PIPELINE_SENSOR_STATUS,
    description="Every 30 seconds, starts an events_api_poll_job run for each events API source that has none in "
    "flight (one source by default: the demo API of etl dev, or ETL_EVENTS_API_URL / ETL_EVENTS_API_SOURCES).",
)
def events_api_sensor(context: dg.SensorEvaluationContext, events_api: EventsApiResource) -> dg.SensorResult:
    requests = []
    skipped = []
    for source in events_api.sources():
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(
                job_name=events_api_poll_job.name, statuses=IN_FLIGHT, tags={SOURCE_TAG: source.name}
            ),
            limit=1,
        )
        if busy:
            skipped.append(source.name)
            continue
        requests.append(
            dg.RunRequest(
                run_config={"ops": {"poll_events_api": {"config": {"source": source.name}}}},
                tags={SOURCE_TAG: source.name},
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        skip_reason=f"polls still running for {', '.join(skipped)}" if skipped and not requests else None,
    )
