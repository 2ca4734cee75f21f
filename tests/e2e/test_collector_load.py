"""The collector under sustained load from a second process on loopback, and beyond what it can take.

The collector runs as ``etl collector`` runs it (``etl_assets.collector.service`` in a process of its own), on a
database of the test's own and the session's S3 endpoint. The load comes from ``etl_assets.bench.collector_load``
in another process: Segment batch calls, open loop, every request's outcome written down. Afterwards the test counts
what staging holds, by event id: every event of a request answered 200 is staged exactly once, none of a request
answered 503 is, and every request sent was answered (200, or 503 with ``Retry-After``). Requests per second,
events per second and the latency percentiles are printed; no timing decides a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from etl_assets.collector.service import build_app
from etl_assets.localstack.http_service import HttpService
from etl_assets.localstack.processes import free_port
from etl_assets.settings import Settings
from tests.asgi_server import serve
from tests.conftest import S3_CREDENTIALS

WRITE_KEY = "wk_load"
EVENTS_PER_REQUEST = 10
ANSWERS = {"200", "503"}


@pytest.fixture
def collector_env(
    warehouse_url: str, s3_endpoint: str, buckets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The collector's settings in this process's environment: a database of the test's own, the session's S3."""
    values = {
        "DATABASE_URL": warehouse_url,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": S3_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
        "ETL_ARCHIVE_BUCKET": buckets["archive"],
        "ETL_SEGMENT_WRITE_KEYS": WRITE_KEY,
        "ETL_COLLECTOR_PORT": str(free_port()),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@contextmanager
def collector(log_dir: Path, *, own_process: bool) -> Iterator[str]:
    """The collector as ``etl collector`` builds it from the environment; yields its URL.

    ``own_process``: run the service module in a process of its own, as in production (its start costs the
    seconds of importing the platform); otherwise serve the same app from a thread of this process, which waits
    idle for the load generator meanwhile.
    """
    settings = Settings.from_env()
    if not own_process:
        with serve(build_app(settings), settings.collector_port) as url:
            yield url
        return
    service = HttpService(
        "etl_assets.collector.service", [], settings.collector_port, log_dir / "collector.log", env=dict(os.environ)
    )
    service.start(timeout=60)
    try:
        yield service.url
    finally:
        service.stop(timeout=30)  # SIGTERM: the collector writes what is queued, then exits


def generate_load(url: str, log: Path, project_root: Path, *arguments: str, limit: float) -> dict:
    """Run the load generator in a process of its own; its summary."""
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "etl_assets.bench.collector_load",
            f"--url={url}",
            f"--write-key={WRITE_KEY}",
            f"--events={EVENTS_PER_REQUEST}",
            f"--log={log}",
            *arguments,
        ],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=limit,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def attempts_by_request(log: Path) -> dict[tuple[str, int], list[dict]]:
    requests: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for line in log.read_text().splitlines():
        outcome = json.loads(line)
        requests[(outcome["phase"], outcome["number"])].append(outcome)
    return requests


def staged_counts(engine: Engine, run: str) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_id, count(*) FROM staging_events WHERE event_id LIKE :prefix GROUP BY event_id"),
            {"prefix": f"{run}-%"},
        ).all()
    return Counter({event_id: count for event_id, count in rows})


def check_nothing_lost(summary: dict, log: Path, engine: Engine) -> tuple[int, int, int]:
    """Every request sent was answered 200 or 503 + Retry-After, and staging holds exactly the events of the
    requests answered 200, each once. Returns (requests answered 200, events staged, answers 503)."""
    requests = attempts_by_request(log)
    assert sum(phase["sent"] for phase in summary["phases"]) >= len(requests)
    attempts = [attempt for outcomes in requests.values() for attempt in outcomes]
    assert {str(attempt["status"]) for attempt in attempts} <= ANSWERS, Counter(
        str(attempt["status"] or attempt["error"]) for attempt in attempts
    )
    refused = [attempt for attempt in attempts if attempt["status"] == 503]
    assert all((attempt["retry_after"] or "").isdigit() for attempt in refused), "a 503 without Retry-After"
    accepted = [key for key, outcomes in requests.items() if outcomes[-1]["status"] == 200]
    expected = Counter(
        f"{summary['run']}-{phase}-{number}-{k}" for phase, number in accepted for k in range(EVENTS_PER_REQUEST)
    )
    staged = staged_counts(engine, summary["run"])
    assert staged == expected, (
        f"{sum(staged.values())} staged rows for {len(expected)} accepted events: "
        f"{len(set(expected) - set(staged))} accepted events not staged, "
        f"{len(set(staged) - set(expected))} staged that were not accepted, "
        f"{sum(1 for count in staged.values() if count > 1)} staged more than once"
    )
    return len(accepted), sum(staged.values()), len(refused)


def report(title: str, summary: dict) -> None:
    print(f"\n{title} ({summary['events_per_request']} events a request)")
    for phase in summary["phases"]:
        print(
            f"  {phase['phase']:>6}: asked {phase['rate']:7.1f} req/s for {phase['seconds']:.0f} s -> "
            f"{phase['answered_per_second']:7.1f} req/s, {phase['events_per_second']:8.1f} events/s answered 200; "
            f"p50 {phase['p50']} ms, p95 {phase['p95']} ms, p99 {phase['p99']} ms, max {phase['max']} ms; "
            f"{phase['statuses']}{' (sustained)' if phase['sustained'] else ''}"
        )


def only_answers(summary: dict) -> None:
    """Every request the generator sent was answered within its timeout, and it sent every one on time."""
    for phase in summary["phases"]:
        assert set(phase["statuses"]) <= ANSWERS, phase


@pytest.mark.parametrize(
    ("ramp", "hold", "own_process"),
    [
        pytest.param(["--start=100", "--factor=2", "--step=1", "--max-steps=4"], 5, False, id="short"),
        pytest.param(
            ["--start=100", "--factor=1.3", "--step=3", "--max-steps=14"],
            60,
            True,
            id="a-minute",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_at_its_best_sustainable_rate_every_request_is_answered_and_every_accepted_event_staged_once(
    collector_env: dict,
    warehouse_engine: Engine,
    tmp_path: Path,
    project_root: Path,
    ramp: list[str],
    hold: int,
    own_process: bool,
):
    log = tmp_path / "load.jsonl"
    with collector(tmp_path, own_process=own_process) as url:
        summary = generate_load(url, log, project_root, *ramp, f"--hold={hold}", limit=hold + 200)
    report("collector, ramp then hold a step below the best sustained rate", summary)
    only_answers(summary)
    accepted, staged, refused = check_nothing_lost(summary, log, warehouse_engine)
    hold_phase = summary["phases"][-1]
    assert hold_phase["phase"] == "hold" and hold_phase["statuses"] == {"200": hold_phase["sent"]}
    print(f"  {accepted} requests answered 200, {staged} events staged once each, {refused} answered 503")


def test_past_its_capacity_it_sheds_with_503_and_retry_after_and_keeps_every_event_it_accepted(
    collector_env: dict, warehouse_engine: Engine, tmp_path: Path, project_root: Path, monkeypatch
):
    """Far more requests than the collector can write, held to a queue of 20: the rest are refused at once."""
    monkeypatch.setenv("ETL_COLLECTOR_MAX_PENDING", "20")
    log = tmp_path / "overload.jsonl"
    with collector(tmp_path, own_process=False) as url:
        summary = generate_load(
            url, log, project_root, "--warmup=0", "--rate=2000", "--hold=1", "--connections=400", limit=120
        )
    report("collector past its capacity, at most 20 requests waiting", summary)
    assert "no answer within the timeout" not in summary["phases"][0]["statuses"]
    accepted, staged, refused = check_nothing_lost(summary, log, warehouse_engine)
    assert accepted > 0 and refused > 0
    print(f"  {accepted} requests answered 200, {staged} events staged once each, {refused} answered 503")


@pytest.mark.slow
def test_past_its_capacity_every_event_arrives_once_when_senders_honour_retry_after(
    collector_env: dict, warehouse_engine: Engine, tmp_path: Path, project_root: Path, monkeypatch
):
    """As above, but every request answered 503 is sent again after its Retry-After, as Segment's libraries do:
    in the end every event is staged, once."""
    monkeypatch.setenv("ETL_COLLECTOR_MAX_PENDING", "20")
    log = tmp_path / "overload-resend.jsonl"
    with collector(tmp_path, own_process=True) as url:
        summary = generate_load(
            url,
            log,
            project_root,
            "--warmup=0",
            "--rate=1000",
            "--hold=3",
            "--connections=400",
            "--resend",
            "--timeout=120",
            limit=300,
        )
    report("collector past its capacity, senders resending after Retry-After", summary)
    only_answers(summary)
    accepted, _, refused = check_nothing_lost(summary, log, warehouse_engine)
    assert accepted == sum(phase["sent"] for phase in summary["phases"]) and refused > 0
    attempts = Counter(len(outcomes) for outcomes in attempts_by_request(log).values())
    print(f"  every request answered 200 in the end; attempts per request: {dict(sorted(attempts.items()))}")
