"""Replay: re-stage the batches received in a date range (files, API pages, collector requests) from the
raw archive.

After a change to how records are read or normalized, a replay runs the archived bytes through today's
code: their staging rows take the new payload and go back to pending, and
``staged_days_sensor`` then merges every day they touch again. Nothing is read from the landing
bucket or the sources, and a replay can be run any number of times.
"""

from collections import Counter
from datetime import date

import dagster as dg

from etl_assets.defs.retry_policies import OUTSIDE_RETRY_POLICY
from etl_assets.orchestration.partition_days import accepted_times
from etl_assets.orchestration.step_failures import retried_only_if_transient
from etl_assets.resources import WAREHOUSE_POOL, EventsApiResource, ObjectStoreResource, WarehouseResource
from etl_assets.sources.replay import CannotReplay, pruned_message, replay_batch
from etl_assets.warehouse.staging import archived_batches


class ReplayConfig(dg.Config):
    first_day: str
    """First day (UTC, YYYY-MM-DD) the batches were received."""
    last_day: str
    """Last day (UTC, YYYY-MM-DD, inclusive)."""


@dg.op(
    pool=WAREHOUSE_POOL,
    retry_policy=OUTSIDE_RETRY_POLICY,
    description="Re-stage every archived batch received in the date range; its rows go back to pending.",
)
def replay_archived_batches(
    context: dg.OpExecutionContext,
    config: ReplayConfig,
    object_store: ObjectStoreResource,
    ingest_warehouse: WarehouseResource,
    events_api: EventsApiResource,
) -> None:
    first, last = date.fromisoformat(config.first_day), date.fromisoformat(config.last_day)
    if last < first:
        raise dg.Failure(f"last_day {last} is before first_day {first}: give the range in order")
    engine = ingest_warehouse.get_engine()
    client = object_store.client()
    accepted = accepted_times()
    batches = archived_batches(engine, first, last)
    pruned = [batch for batch in batches if batch["archive_pruned_at"] is not None]
    if pruned:
        raise dg.Failure(
            f"{len(pruned)} of the {len(batches)} batches received {first}..{last} cannot be replayed, nothing was: "
            f"{pruned_message(pruned[0])}; replay a range of days the retention job has not pruned",
            allow_retries=False,
        )
    api_sources = {source.source: source for source in events_api.sources()} if batches else {}
    days: Counter = Counter()
    records = 0
    for number, batch in enumerate(batches, start=1):
        with retried_only_if_transient():
            try:
                counts = replay_batch(client, engine, batch, object_store.archive_bucket, accepted, api_sources)
            except CannotReplay as error:
                raise dg.Failure(str(error), allow_retries=False) from None
        records += counts.records
        days.update(counts.days)
        context.log.info(f"replayed {number}/{len(batches)} {batch['batch_id']}: {counts.records} records")
    context.add_output_metadata(
        {
            "batches": len(batches),
            "records re-staged": records,
            "days touched": ", ".join(day.isoformat() for day in sorted(days)) or "none",
        }
    )


@dg.job(
    description="Re-stage the batches (S3 files, API pages, collector requests) received in a date range from "
    "the raw archive, so the next merges "
    "run them through the current transform (after a fix or a change to parsing or normalizing)."
)
def replay_job() -> None:
    replay_archived_batches()
