"""What ``etl status`` reports: which parts of the platform answer, and what the pipeline holds.

Every probe has a short timeout and turns a failure into "down, because …" instead of raising, so one part
that is down never hides the state of the others. The warehouse says what waits in staging, what quarantine
holds and when each source last sent; Dagster's GraphQL API (the UI's own) says the last run of each asset and
how fresh each table is against its freshness policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import requests
import sqlalchemy.exc
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from etl_assets.localstack.dagster import location_statuses
from etl_assets.quality.reconciliation import BatchReconciliation, reconcile_batches
from etl_assets.settings import S3ClientCredentials, Settings, redact
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.holds import Hold, current_holds, describe_hold
from etl_assets.warehouse.identity import IdentitySummary, summarize_identity
from etl_assets.warehouse.migrate import current_revision
from etl_assets.warehouse.quarantine import QuarantineSummary, summarize_quarantine
from etl_assets.warehouse.source_activity import freshness_state, recent_source_activity
from etl_assets.warehouse.staging import WaitingDay, waiting_days

PROBE_TIMEOUT_SECONDS = 3
SOURCE_LOOKBACK = timedelta(days=7)

ASSETS_QUERY = """
query PlatformAssets {
  assetNodes { assetKey { path } groupName freshnessStatusInfo { freshnessStatus } }
}
"""
LATEST_QUERY = """
query LatestRuns($keys: [AssetKeyInput!]!) {
  assetsLatestInfo(assetKeys: $keys) {
    assetKey { path }
    latestRun { id status startTime endTime }
    latestMaterialization { timestamp partition runId }
  }
}
"""
DAEMONS_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


@dataclass(frozen=True)
class ServiceState:
    name: str
    address: str
    up: bool
    detail: str
    """What it answered when up; why it is down otherwise."""
    advice: str = ""
    """What to do when it is down."""


@dataclass(frozen=True)
class SourceState:
    source: str
    last_received_at: datetime
    batches: int
    state: str
    """ok, WARN or FAIL against ETL_FRESHNESS_WARN_MINUTES / ETL_FRESHNESS_FAIL_MINUTES."""


@dataclass(frozen=True)
class WarehouseState:
    revision: str | None
    pending: list[WaitingDay]
    quarantine: QuarantineSummary
    sources: list[SourceState]
    batches: list[BatchReconciliation] | None = None
    """The batches of the last 7 days as reconciliation sees them (None: not counted)."""
    identity: IdentitySummary | None = None
    held: list[Hold] = field(default_factory=list)
    """Sources the staging gate holds back, by day."""


@dataclass(frozen=True)
class AssetState:
    asset: str
    group: str | None
    run_id: str | None
    run_status: str | None
    run_at: datetime | None
    """When the last run ended (or started, while it runs)."""
    materialized_at: datetime | None
    partition: str | None
    freshness: str | None
    """Dagster's freshness status of the asset (HEALTHY, WARNING, DEGRADED, UNKNOWN), if it has a policy."""


@dataclass(frozen=True)
class PlatformStatus:
    checked_at: datetime
    services: list[ServiceState]
    warehouse: WarehouseState | None
    assets: list[AssetState] | None
    freshness_minutes: tuple[int, int]

    @property
    def down(self) -> list[ServiceState]:
        return [service for service in self.services if not service.up]


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _timestamp(seconds: float | str | None, scale: float = 1.0) -> datetime | None:
    return None if seconds in (None, "") else datetime.fromtimestamp(float(seconds) / scale, UTC)


# -- the warehouse ----------------------------------------------------------------------------------


def warehouse_state(engine: Engine, now: datetime, warn_minutes: int, fail_minutes: int) -> WarehouseState:
    warn_after, fail_after = timedelta(minutes=warn_minutes), timedelta(minutes=fail_minutes)
    sources = [
        SourceState(
            activity.source,
            activity.last_received_at,
            activity.batches,
            freshness_state(now - activity.last_received_at, warn_after, fail_after),
        )
        for activity in recent_source_activity(engine, now, SOURCE_LOOKBACK)
    ]
    return WarehouseState(
        current_revision(engine),
        waiting_days(engine),
        summarize_quarantine(engine),
        sources,
        batches=reconcile_batches(engine, SOURCE_LOOKBACK.days),
        identity=summarize_identity(engine),
        held=current_holds(engine),
    )


def probe_warehouse(settings: Settings, now: datetime) -> tuple[ServiceState, WarehouseState | None]:
    url = settings.role_urls.get("ETL_TRANSFORM_DATABASE_URL") or settings.warehouse_url
    address = redact(url)
    engine = create_warehouse_engine(
        url,
        pool_size=1,
        max_overflow=0,
        connect_timeout=PROBE_TIMEOUT_SECONDS,
        ssl=settings.db_ssl_params,
        pgbouncer=settings.db_pgbouncer,
    )
    try:
        state = warehouse_state(engine, now, settings.freshness_warn_minutes, settings.freshness_fail_minutes)
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = _first_line(error.orig if isinstance(error, sqlalchemy.exc.DBAPIError) and error.orig else error)
        service = ServiceState(
            "warehouse", address, False, reason, "start it with `uv run etl dev`, or set DATABASE_URL to yours"
        )
        return service, None
    finally:
        engine.dispose()
    return ServiceState("warehouse", address, True, f"schema revision {state.revision or 'none'}"), state


# -- S3, the collector, Dagster ----------------------------------------------------------------------


def probe_s3(settings: Settings) -> ServiceState:
    credentials: S3ClientCredentials
    if settings.s3_is_external:
        endpoint, credentials = settings.s3_endpoint_url, {}
    else:
        endpoint = f"http://127.0.0.1:{settings.s3_port}"
        credentials = Settings.local_s3_client_credentials()
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.aws_region,
        config=Config(
            connect_timeout=PROBE_TIMEOUT_SECONDS,
            read_timeout=PROBE_TIMEOUT_SECONDS,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"} if endpoint else {},
        ),
        **credentials,
    )
    address = endpoint or "AWS S3"
    buckets = (settings.landing_bucket, settings.archive_bucket)
    try:
        for bucket in buckets:
            client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        return ServiceState(
            "s3",
            address,
            False,
            f"bucket {bucket} answered {code}",
            "create the bucket, or set ETL_LANDING_BUCKET / ETL_ARCHIVE_BUCKET and the AWS credentials",
        )
    except BotoCoreError as error:
        return ServiceState(
            "s3", address, False, _first_line(error), "start `uv run etl dev`, or set AWS_ENDPOINT_URL_S3 to yours"
        )
    return ServiceState("s3", address, True, f"buckets {', '.join(buckets)}")


def probe_collector(settings: Settings) -> ServiceState:
    address = f"http://127.0.0.1:{settings.collector_port}"
    advice = "start `uv run etl dev` (or `etl collector`)"
    try:
        response = requests.get(f"{address}/healthz", timeout=PROBE_TIMEOUT_SECONDS)
    except requests.RequestException as error:
        return ServiceState("collector", address, False, f"no answer ({type(error).__name__})", advice)
    if response.status_code != 200:
        return ServiceState(
            "collector",
            address,
            False,
            f"/healthz answered {response.status_code}: it cannot reach the warehouse",
            "check that the warehouse is up",
        )
    return ServiceState("collector", address, True, "/healthz ok")


def _graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(
        f"{base_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=PROBE_TIMEOUT_SECONDS * 3
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise ValueError(body["errors"][0].get("message", "GraphQL error"))
    return body["data"]


def asset_states(base_url: str) -> list[AssetState]:
    nodes = _graphql(base_url, ASSETS_QUERY)["assetNodes"]
    keys = [{"path": node["assetKey"]["path"]} for node in nodes]
    latest = {
        "/".join(info["assetKey"]["path"]): info
        for info in _graphql(base_url, LATEST_QUERY, {"keys": keys})["assetsLatestInfo"]
    }
    states = []
    for node in nodes:
        name = "/".join(node["assetKey"]["path"])
        info = latest.get(name) or {}
        run = info.get("latestRun") or {}
        materialization = info.get("latestMaterialization") or {}
        states.append(
            AssetState(
                asset=name,
                group=node.get("groupName"),
                run_id=run.get("id"),
                run_status=run.get("status"),
                run_at=_timestamp(run.get("endTime") or run.get("startTime")),
                materialized_at=_timestamp(materialization.get("timestamp"), scale=1000),
                partition=materialization.get("partition"),
                freshness=(node.get("freshnessStatusInfo") or {}).get("freshnessStatus"),
            )
        )
    return sorted(states, key=lambda state: state.asset)


def probe_dagster(settings: Settings) -> tuple[ServiceState, list[AssetState] | None]:
    address = settings.ui_base_url
    advice = "start `uv run etl dev`, or set ETL_UI_URL to where the Dagster UI runs"
    try:
        locations = location_statuses(address, timeout=PROBE_TIMEOUT_SECONDS)
        if locations is None:
            return ServiceState("dagster", address, False, "the code location is still loading", "wait a moment"), None
        daemons = _graphql(address, DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        assets = asset_states(address)
    except (requests.RequestException, ValueError, KeyError) as error:
        return ServiceState("dagster", address, False, f"no answer ({_first_line(error)})", advice), None
    broken = [location for location in locations if location.error]
    if broken:
        reason = f"code location {broken[0].name} failed to load: {_first_line(broken[0].error or '')}"
        return ServiceState("dagster", address, False, reason, "fix the code and reload it in the UI"), assets
    unhealthy = sorted(d["daemonType"] for d in daemons if d["required"] and not d["healthy"])
    if unhealthy:
        reason = f"daemon not running ({', '.join(unhealthy)}): sensors and schedules start nothing"
        return ServiceState("dagster", address, False, reason, "restart `uv run etl dev`"), assets
    names = ", ".join(location.name for location in locations)
    return ServiceState("dagster", address, True, f"webserver and daemon, code location {names} loaded"), assets


def collect_status(settings: Settings, now: datetime | None = None) -> PlatformStatus:
    now = now or datetime.now(UTC)
    warehouse_service, warehouse = probe_warehouse(settings, now)
    dagster_service, assets = probe_dagster(settings)
    return PlatformStatus(
        checked_at=now,
        services=[warehouse_service, probe_s3(settings), dagster_service, probe_collector(settings)],
        warehouse=warehouse,
        assets=assets,
        freshness_minutes=(settings.freshness_warn_minutes, settings.freshness_fail_minutes),
    )


# -- the report --------------------------------------------------------------------------------------


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        amount = f"{seconds} s"
    elif seconds < 2 * 3600:
        amount = f"{seconds // 60} min"
    elif seconds < 2 * 86400:
        amount = f"{seconds // 3600} h"
    else:
        amount = f"{seconds // 86400} days"
    return f"{when:%Y-%m-%d %H:%M} UTC ({amount} ago)"


def _days(pending: list[WaitingDay]) -> str:
    days = [item.day.isoformat() for item in pending]
    return ", ".join(days) if len(days) <= 3 else f"{days[0]} … {days[-1]}"


def render_status(status: PlatformStatus) -> list[str]:
    """The report, line by line: services, staging, quarantine, sources, then each asset's last run."""
    now = status.checked_at
    lines = ["services"]
    for service in status.services:
        state = "up" if service.up else "DOWN"
        lines.append(f"  {service.name:<10} {state:<5} {service.address}  {service.detail}")
    warehouse = status.warehouse
    if warehouse is not None:
        waiting = sum(item.rows for item in warehouse.pending)
        lines.append(
            f"staging     {waiting:,} rows waiting to merge"
            + (f" over {len(warehouse.pending)} days ({_days(warehouse.pending)})" if warehouse.pending else "")
        )
        quarantine = warehouse.quarantine
        reasons = "; ".join(f"{reason} ({rows:,})" for _, reason, rows in quarantine.by_reason[:3])
        lines.append(
            f"quarantine  {quarantine.unresolved:,} unresolved rows ({quarantine.resolved:,} resolved by re-drives)"
            + (f"; most: {reasons}" if reasons else "")
        )
        if warehouse.batches is not None:
            lines.append(_batches_line(warehouse.batches))
        if warehouse.identity is not None:
            identity = warehouse.identity
            lines.append(
                f"identity    {identity.users:,} users, {identity.linked:,} ids linked to them, "
                f"{identity.refused:,} links refused (they would merge two known users: see identity_links)"
            )
        warn, fail = status.freshness_minutes
        lines.append(f"sources     last batch per source (7 days; warn after {warn} min, fail after {fail} min silent)")
        if not warehouse.sources:
            lines.append("  none has sent anything in the last 7 days")
        held_days: dict[str, list[str]] = {}
        for hold in warehouse.held:
            held_days.setdefault(hold.source, []).append(hold.day.isoformat())
        for source in warehouse.sources:
            held = held_days.get(source.source)
            lines.append(
                f"  {source.source:<20} {source.state:<4}  last batch {_ago(source.last_received_at, now)}, "
                f"{source.batches:,} batches" + (f"; HELD BACK on {', '.join(held)}" if held else "")
            )
        if warehouse.held:
            lines.append(
                f"held back   {len(warehouse.held)} source-day(s) the staging gate keeps from merging (their rows "
                "wait; fix the cause, then re-drive the day with redrive_quarantine_job)"
            )
            lines.extend(
                f"  {describe_hold(hold)} (held since {_ago(hold.held_since, now)})" for hold in warehouse.held
            )
    if status.assets is not None:
        lines.append("assets      last run, last materialization, freshness")
        name_width = max((len(asset.asset) for asset in status.assets), default=0)
        for asset in status.assets:
            run = (
                f"{asset.run_status} {_ago(asset.run_at, now)} run {asset.run_id[:8]}"
                if asset.run_id and asset.run_status
                else "never run"
            )
            materialized = (
                f"materialized {_ago(asset.materialized_at, now)}"
                + (f" partition {asset.partition}" if asset.partition else "")
                if asset.materialized_at
                else "never materialized"
            )
            freshness = f"; freshness {asset.freshness}" if asset.freshness else ""
            lines.append(f"  {asset.asset:<{name_width}}  {run}; {materialized}{freshness}")
    return lines


def _batches_line(batches: list[BatchReconciliation]) -> str:
    """Whether every batch of the last 7 days is accounted for (staged, or quarantined with a reason)."""
    unaccounted = [batch for batch in batches if batch.problem]
    line = f"batches     {len(batches):,} in the last 7 days"
    if not unaccounted:
        return line + ", every one accounted for (its records staged or quarantined with a reason)"
    first = unaccounted[0]
    return line + f", {len(unaccounted):,} NOT accounted for; first {first.batch_id}: {first.problem}"


def problems_line(status: PlatformStatus) -> str:
    """One line: what is down and what to do about it."""
    return "; ".join(
        f"{service.name} is down at {service.address} ({service.detail}): {service.advice}" for service in status.down
    )
