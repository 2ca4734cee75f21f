"""`etl dev` as the end-to-end tests run it: started on ports and an ETL_HOME of their own, stopped as Ctrl-C
would, and driven as users drive it, through the Dagster webserver's GraphQL API (dagster-graphql's client, and
raw GraphQL for what the client has no call for: backfills, sensors, materializations, check results)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import psutil
import requests
from dagster_graphql import DagsterGraphQLClient
from sqlalchemy import Engine, text

from etl_assets.localstack.processes import free_port
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.engine import create_warehouse_engine
from tests.conftest import S3_CREDENTIALS
from tests.harness import stage_payloads

ETL = str(Path(sys.executable).parent / "etl")
DAILY_ASSETS = ("events", "user_daily_activity", "sessions", "daily_funnel", "product_daily_sales")
LOCATION = "etl_assets"
REPOSITORY = "__repository__"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class DevRun:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line starting {prefix!r} within {timeout}s; output so far:\n" + "\n".join(self.lines))


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any platform setting, plus free ports and ``home`` as ETL_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_URL", "DAGSTER_", "ETL_"))}
    env.update(
        ETL_HOME=str(home),
        ETL_PG_PORT=str(free_port()),
        ETL_UI_PORT=str(free_port()),
        ETL_S3_PORT=str(free_port()),
        ETL_COLLECTOR_PORT=str(free_port()),
        ETL_EVENTS_API_PORT=str(free_port()),
    )
    env.update(extra)
    return env


def start_etl_dev(env: dict[str, str], *options: str) -> DevRun:
    process = subprocess.Popen(
        [ETL, "dev", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = DevRun(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return run


def ctrl_c(run: DevRun, timeout: float = 15) -> tuple[float, list[psutil.Process]]:
    """Send SIGINT to the process group as a terminal's Ctrl-C would; return the seconds until exit and what
    survived (killed, so nothing outlives the test)."""
    tree = psutil.Process(run.process.pid).children(recursive=True)
    assert tree, "etl dev started no child processes"
    started = time.monotonic()
    os.killpg(run.process.pid, signal.SIGINT)
    run.process.wait(timeout=timeout)
    elapsed = time.monotonic() - started
    survivors = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in survivors:
        p.kill()
    return elapsed, survivors


def shop_events(tag: str, day: date, count: int, **changes: Any) -> list[dict]:
    """``count`` valid events of one day in the shapes landing files carry: visitors who view, add to cart, buy."""
    noon = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    kinds = ("page_view", "product_view", "add_to_cart", "purchase")
    events = []
    for number in range(count):
        kind = kinds[number % len(kinds)]
        event = {
            "id": f"{tag}-{number}",
            "type": kind,
            "timestamp": (noon + timedelta(seconds=number)).isoformat(),
            "user_id": f"{tag}-user-{number // len(kinds)}",
            "session_id": f"{tag}-session-{number // len(kinds)}",
            "page_url": f"https://shop.example/p/{number % 7}",
        }
        if kind != "page_view":
            event.update(product_id=f"sku-{number % 5}", price=12.5, currency="EUR", quantity=1)
        event.update(changes)
        events.append(event)
    return events


SENSOR_STATE = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { jobOriginId sensorState { id selectorId status } }
  }
}
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""
STOP_SENSOR = """
mutation Stop($id: String, $origin: String, $selectorId: String) {
  stopSensor(id: $id, jobOriginId: $origin, jobSelectorId: $selectorId) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
  }
}
"""
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}
"""
MATERIALIZATIONS = """
query Materializations($asset: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode {
      assetMaterializations(partitions: $partitions, limit: 5) {
        runId partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""
CHECK_EXECUTIONS = """
query Checks($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 1000) {
    runId status partition
    evaluation {
      success severity description partition
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on MarkdownMetadataEntry { mdStr }
        ... on TextMetadataEntry { text }
      }
    }
  }
}
"""


class GraphQLError(AssertionError):
    pass


@dataclass
class DevPlatform:
    """A running `etl dev` whose S3 is the test session's endpoint (so its landing bucket starts empty)."""

    run: DevRun
    env: dict[str, str]
    s3: Any
    landing_bucket: str
    artifacts: Path
    ready_after: float | None = None
    """Seconds from the start of `etl dev` to its ``ready`` line, once it came."""

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.env['ETL_UI_PORT']}"

    @property
    def warehouse_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.env['ETL_PG_PORT']}/warehouse"

    @cached_property
    def engine(self) -> Engine:
        return create_warehouse_engine(self.warehouse_url, pool_size=1, max_overflow=1)

    @cached_property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=int(self.env["ETL_UI_PORT"]))

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.ui_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        return body["data"]

    # -- data ---------------------------------------------------------------------------------------

    def stage(self, batch_id: str, payloads: list[dict]) -> None:
        """Stage records as an ingest run would (a batch in the ledger, its records pending in staging)."""
        accepted = AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))
        stage_payloads(self.engine, batch_id, payloads, accepted=accepted)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def drop_landing_file(self, name: str, payloads: list[dict]) -> str:
        """A JSONL file in the landing bucket; keys grow with time, as the sensor's StartAfter cursor expects."""
        import orjson

        key = f"landing/e2e/{time.time_ns()}-{name}.jsonl"
        body = b"\n".join(orjson.dumps(payload) for payload in payloads) + b"\n"
        self.s3.put_object(Bucket=self.landing_bucket, Key=key, Body=body)
        return key

    # -- Dagster --------------------------------------------------------------------------------------

    def wait_for_run(self, run_id: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.get_run_status(run_id).value
            if status in FINISHED:
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not finish within {timeout}s")

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        return self.graphql(RUNS, {"filter": filters})["runsOrError"]["results"]

    def tags_once_failed(self, run_id: str, timeout: float = 60) -> dict[str, str]:
        """A failed run's tags, once Dagster has decided whether to retry it (it tags ``dagster/will_retry`` just
        after the failure is stored)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [run] = self.runs(runIds=[run_id])
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            if "dagster/will_retry" in tags:
                return tags
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} was not tagged dagster/will_retry within {timeout}s")

    def wait_for_tagged_run(self, key: str, value: str, timeout: float = 240) -> dict[str, Any]:
        """The first run tagged ``key=value`` once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(tags=[{"key": key, "value": value}])
            if runs and runs[-1]["status"] in FINISHED:
                return runs[-1]
            time.sleep(1)
        raise AssertionError(f"no finished run tagged {key}={value} within {timeout}s")

    def sensor_selector(self, name: str) -> dict[str, str]:
        return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}

    def sensor_status(self, name: str) -> str:
        sensor = self.graphql(SENSOR_STATE, {"selector": self.sensor_selector(name)})["sensorOrError"]
        return sensor["sensorState"]["status"]

    def wait_for_sensor_status(self, name: str, status: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (found := self.sensor_status(name)) != status:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {found}, not {status}, {timeout}s on")
            time.sleep(0.5)

    def start_sensor(self, name: str) -> str:
        """Switch a sensor on, as the UI's toggle does (the tests that click it use the browser instead)."""
        result = self.graphql(START_SENSOR, {"selector": self.sensor_selector(name)})["startSensor"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(result)
        return result["sensorState"]["status"]

    def stop_sensor(self, name: str) -> str:
        sensor = self.graphql(SENSOR_STATE, {"selector": self.sensor_selector(name)})["sensorOrError"]
        state = sensor["sensorState"]
        variables = {"id": state["id"], "origin": sensor["jobOriginId"], "selectorId": state["selectorId"]}
        result = self.graphql(STOP_SENSOR, variables)["stopSensor"]
        if result["__typename"] != "StopSensorMutationResult":
            raise GraphQLError(result)
        return result["instigationState"]["status"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backfill = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}:
                return backfill["status"]
            time.sleep(1)
        raise AssertionError(f"backfill {backfill_id} did not finish within {timeout}s")

    def materializations(self, asset: str, day: date) -> list[dict[str, Any]]:
        """The asset's materializations of ``day``'s partition, newest first: run id and numeric ``figures``."""
        variables = {"asset": {"path": [asset]}, "partitions": [day.isoformat()]}
        found = self.graphql(MATERIALIZATIONS, variables)["assetNodeOrError"]["assetMaterializations"]
        return [
            {
                "runId": materialization["runId"],
                "figures": {
                    entry["label"]: entry.get("intValue", entry.get("floatValue"))
                    for entry in materialization["metadataEntries"]
                    if "intValue" in entry or "floatValue" in entry
                },
            }
            for materialization in found
        ]

    def check_executions(self, asset: str, check: str) -> list[dict[str, Any]]:
        """The check's executions on the shared platform, newest first: every one the test session made (the
        write-key test alone makes a dozen), so a test finds its own run's whatever ran before it."""
        variables = {"asset": {"path": [asset]}, "check": check}
        return self.graphql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"]


@dataclass(frozen=True)
class FailedCheck:
    """A day whose one source staged mostly bad data, and the run of daily_events_job whose staging gate held that
    source back."""

    day: date
    run_id: str
    run_status: str
    bad_event_ids: list[str]


SHOP_WRITE_KEY, APP_WRITE_KEY = "e2e-shop-write-key", "e2e-app-write-key"
"""Write keys of the two applications the shared platform's collector knows (sources segment:shop, segment:app)."""


def start_dev_platform(s3_endpoint: str, home: Path, artifacts: Path, bucket_prefix: str) -> DevPlatform:
    """`etl dev` starting (wait for its ``ready`` line) on ``s3_endpoint``, with a landing and an archive bucket of
    its own, created here and empty: no demo files are seeded, each test drops the files it means to. Its sensors
    are stopped (``--paused``): a test starts the ones it means to."""
    s3 = s3_client(s3_endpoint, "us-east-1", **S3_CREDENTIALS)
    suffix = uuid.uuid4().hex[:10]
    landing, archive = f"{bucket_prefix}-landing-{suffix}", f"{bucket_prefix}-archive-{suffix}"
    for bucket in (landing, archive):
        s3.create_bucket(Bucket=bucket)
    env = isolated_env(
        home,
        AWS_ENDPOINT_URL_S3=s3_endpoint,
        AWS_ACCESS_KEY_ID=S3_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=S3_CREDENTIALS["aws_secret_access_key"],
        AWS_REGION="us-east-1",
        ETL_LANDING_BUCKET=landing,
        ETL_ARCHIVE_BUCKET=archive,
        ETL_SEGMENT_WRITE_KEYS=f"local-write-key,{SHOP_WRITE_KEY}=shop,{APP_WRITE_KEY}=app",
    )
    return DevPlatform(start_etl_dev(env, "--paused"), env, s3, landing, artifacts)
