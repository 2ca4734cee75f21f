"""quality_alerts_sensor on a real Dagster instance (PostgreSQL storage, as dagster.yaml configures) posting to a
real HTTP webhook on 127.0.0.1. The failures are made by executing assets and checks, not written by hand."""

import json
import threading
from collections.abc import Iterator

import dagster as dg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.asgi_server import serve

SENSOR = "quality_alerts_sensor"
UI_URL = "https://dagster.example.com"
DAYS = dg.DailyPartitionsDefinition(start_date="2025-08-01")


@dg.asset(partitions_def=DAYS)
def orders() -> None:
    pass


@dg.asset_check(asset=orders)
def positive_prices() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"negative price": 3, "rows checked": 120, "rule": "price > 0"},
        description="3 orders have a negative price",
    )


@dg.asset_check(asset=orders)
def currency_present() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"missing currency share": 0.02}
    )


@dg.asset_check(asset=orders)
def ids_unique() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={"duplicates": 0})


@dg.asset
def exploding() -> None:
    raise RuntimeError("the upstream API answered <html> instead of JSON")


class Webhook:
    """Records the JSON bodies POSTed to /hook; answers 500 to the attempts (1-based) listed in ``failing``."""

    def __init__(self, failing: set[int] | None = None) -> None:
        self.failing = failing or set()
        self.attempts = 0
        self.messages: list[dict] = []
        self._lock = threading.Lock()

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.json()
        with self._lock:
            self.attempts += 1
            if self.attempts in self.failing:
                return PlainTextResponse("server_error", status_code=500)
            self.messages.append(body)
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


@pytest.fixture
def instance(empty_database_url: str) -> Iterator[dg.DagsterInstance]:
    """An instance whose storage is PostgreSQL (a database of this test's own), like production's."""
    storage_url = empty_database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": storage_url}}}) as instance:
        yield instance


@pytest.fixture
def alerts_env(monkeypatch: pytest.MonkeyPatch, pipeline_env: dict) -> dg.Definitions:
    """The code location loaded with the UI's URL set (its settings are read as it loads)."""
    from etl_assets.definitions import defs

    monkeypatch.setenv("ETL_UI_URL", UI_URL + "/")
    monkeypatch.delenv("ETL_ALERT_WEBHOOK_URL", raising=False)
    return defs()


def tick(definitions: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = definitions.resolve_sensor_def(SENSOR)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=definitions,
        resources=definitions.resources,
        sensor_name=SENSOR,
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    return result


def fail_checks(instance: dg.DagsterInstance, day: str = "2025-08-02") -> None:
    result = dg.materialize(
        [orders, positive_prices, currency_present, ids_unique], instance=instance, partition_key=day
    )
    assert result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert len(failed) == 2


def fail_run(instance: dg.DagsterInstance) -> str:
    result = dg.materialize([exploding], instance=instance, raise_on_error=False)
    assert not result.success
    return result.run_id


def texts(message: dict) -> str:
    """Every text of a message's blocks, joined, to search in."""
    parts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(f["text"] for f in block.get("fields", []))
        parts.extend(e["text"] for e in block.get("elements", []))
    return "\n".join(parts)


def by_header(messages: list[dict], fragment: str) -> dict:
    [message] = [m for m in messages if fragment in m["blocks"][0]["text"]["text"]]
    return message


def test_failed_checks_and_runs_since_the_cursor_reach_the_webhook(alerts_env, instance, monkeypatch):
    webhook = Webhook()
    history_run = fail_run(instance)
    with serve(webhook.app()) as base_url:
        monkeypatch.setenv("ETL_ALERT_WEBHOOK_URL", f"{base_url}/hook")

        first = tick(alerts_env, instance, cursor=None)
        assert webhook.messages == []  # a new sensor starts from now: the older failure is history
        assert json.loads(first.cursor)["run_storage_id"] > 0

        fail_checks(instance)
        run_id = fail_run(instance)
        second = tick(alerts_env, instance, first.cursor)
        assert len(webhook.messages) == 3  # two failed checks (the passing one is not posted) and one run
        assert "posted 2 failed check(s) and 1 failed run(s)" in second.skip_reason.skip_message

        error = by_header(webhook.messages, "positive_prices")
        assert error["blocks"][0]["text"]["text"].startswith(":red_circle: ERROR: check positive_prices failed")
        error_text = texts(error)
        for expected in ("*Asset*\n`orders`", "*Partition*\n2025-08-02", "*Check*\n`positive_prices`"):
            assert expected in error_text
        assert "*Severity*\nERROR" in error_text
        assert "• negative price: 3" in error_text
        assert "• rows checked: 120" in error_text
        assert "rule" not in error_text  # text metadata is not a count
        assert "3 orders have a negative price" in error_text
        assert f"<{UI_URL}/assets/orders?view=checks|Open in Dagster>" in error_text

        warn_text = texts(by_header(webhook.messages, "currency_present"))
        assert "*Severity*\nWARN" in warn_text
        assert "• missing currency share: 0.02" in warn_text
        assert "ids_unique" not in "".join(texts(m) for m in webhook.messages)

        run_text = texts(by_header(webhook.messages, "Run of"))
        assert f"<{UI_URL}/runs/{run_id}|Open in Dagster>" in run_text
        assert f"*Run*\n`{run_id}`" in run_text
        assert "*Asset*\n`exploding`" in run_text
        assert "RuntimeError: the upstream API answered &lt;html&gt; instead of JSON" in run_text
        assert history_run not in "".join(texts(m) for m in webhook.messages)

        third = tick(alerts_env, instance, second.cursor)
        assert len(webhook.messages) == 3  # nothing new, nothing sent twice
        assert third.cursor == second.cursor


def test_without_a_webhook_url_nothing_is_sent_and_the_log_says_so_once(alerts_env, instance, monkeypatch, capsys):
    webhook = Webhook()
    first = tick(alerts_env, instance, cursor=None)
    fail_checks(instance)
    fail_run(instance)
    second = tick(alerts_env, instance, first.cursor)

    # The sensor's log (a console handler on stderr here; the tick's log in the UI under the daemon).
    logged = capsys.readouterr().err
    off_lines = [line for line in logged.splitlines() if "Alerts are off" in line]
    assert len(off_lines) == 1
    assert "set ETL_ALERT_WEBHOOK_URL" in off_lines[0]
    assert json.loads(first.cursor)["unconfigured_noted"] is True
    assert json.loads(second.cursor)["unconfigured_noted"] is True
    assert "alerts are off" in second.skip_reason.skip_message
    # The cursor moved past the failures that happened while alerts were off: they are not sent later.
    assert json.loads(second.cursor)["check_storage_id"] > json.loads(first.cursor)["check_storage_id"]
    assert json.loads(second.cursor)["run_storage_id"] > json.loads(first.cursor)["run_storage_id"]

    with serve(webhook.app()) as base_url:
        monkeypatch.setenv("ETL_ALERT_WEBHOOK_URL", f"{base_url}/hook")
        third = tick(alerts_env, instance, second.cursor)
        assert webhook.messages == []
        assert json.loads(third.cursor)["unconfigured_noted"] is False
        run_id = fail_run(instance)
        tick(alerts_env, instance, third.cursor)
        assert [m["blocks"][-1]["elements"][0]["text"] for m in webhook.messages] == [
            f"<{UI_URL}/runs/{run_id}|Open in Dagster>"
        ]
    assert "Alerts are off" not in capsys.readouterr().err


def test_an_undelivered_alert_is_sent_again_on_the_next_tick(alerts_env, instance, monkeypatch, capsys):
    # The first POST succeeds; the second item's first try and its three retries answer 500.
    webhook = Webhook(failing={2, 3, 4, 5})
    with serve(webhook.app()) as base_url:
        monkeypatch.setenv("ETL_ALERT_WEBHOOK_URL", f"{base_url}/hook")
        start = tick(alerts_env, instance, cursor=None)
        fail_checks(instance)

        failed = tick(alerts_env, instance, start.cursor)
        assert webhook.attempts == 5
        assert len(webhook.messages) == 1
        reason = failed.skip_reason.skip_message
        assert "HTTP 500 after 3 retries" in reason
        assert "server_error" in reason
        assert base_url not in reason and "/hook" not in reason
        logged = capsys.readouterr().err
        assert "alert not delivered, sent again on the next tick" in logged
        assert "/hook" not in logged

        retried = tick(alerts_env, instance, failed.cursor)
        assert webhook.attempts == 6
        assert len(webhook.messages) == 2
        headers = " ".join(m["blocks"][0]["text"]["text"] for m in webhook.messages)
        assert "check positive_prices failed" in headers and "check currency_present failed" in headers
        assert len({json.dumps(m, sort_keys=True) for m in webhook.messages}) == 2  # each alert once
        assert "posted 1 failed check(s)" in retried.skip_reason.skip_message


def test_a_run_sharded_sqlite_event_log_is_refused_with_a_reason(alerts_env):
    with dg.instance_for_test() as sqlite_instance:
        result = tick(alerts_env, sqlite_instance, cursor=None)
    assert "global storage ids" in result.skip_reason.skip_message
    assert result.cursor is None
