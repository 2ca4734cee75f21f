"""Crash trials: the pipeline's run processes killed with SIGKILL at chosen points, recovered as in production.

Each trial sends a known input through real run processes (forked per run by ``tests.run_processes``): a
landing file's ingest run, a range of days' merge run (``daily_events_job``), two merge runs of overlapping
ranges at once, an events API poll run against the demo API over loopback HTTP, or the collector serving
webhooks under uvicorn. The run is held at its kill point by a gate (``tests.kill_points``: a test-only trigger
waiting on the test's advisory lock, a day's merge lock, or the API server holding a request), killed with
SIGKILL there, and the platform then recovers the way it does in production: the same run again (what
Dagster's run retry does), the sensors' next ticks, or, for the collector, a restart and the client sending
again what was not answered 200. ``tests.reliability`` then accounts for every input record: in ``events``
once with its last version's content, or in quarantine with its reason, nothing else, nothing pending, and the
platform's own reconciliation balancing.

Kill points are drawn from a seed (``ETL_CRASH_TRIALS_SEED``, printed in the summary): the phase is fixed
by the trial, the row, page, request or flush within it is drawn. The default suite runs one trial per
family (and the collector's unanswered commit); the slow suite three per phase, and one trial where Dagster
itself (``etl dev``'s code server and daemon) notices the killed runs and retries them.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from etl_assets.collector.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from etl_assets.demo.events_api_server import FeedSettings, create_app, decode_cursor
from etl_assets.localstack.processes import free_port
from etl_assets.orchestration.partition_days import accepted_times
from etl_assets.settings import pii_policy
from etl_assets.warehouse.merge import DAY_LOCK_CLASS, MergeOptions, merge_days
from etl_assets.warehouse.schema import DAILY_TABLES
from etl_assets.warehouse.staging import DEFAULT_CHUNK_SIZE
from tests.asgi_server import serve
from tests.e2e.dev_platform import FINISHED, DevPlatform, ctrl_c, start_dev_platform
from tests.harness import Pipeline, pipeline, table_rows
from tests.kill_points import Gate, Gates, HeldRequest, LockGate, RowGate
from tests.reliability import (
    MISSING_TYPE_REASON,
    KnownInput,
    Reconciliation,
    feed_input,
    reconcile,
    resent_on_other_days,
    shop_input,
)
from tests.run_processes import RunProcess, RunWorker

MASTER_SEED = int(os.environ.get("ETL_CRASH_TRIALS_SEED", "20260108"))
PHASES = {
    "ingest": ("ledger entry", "COPY into staging", "parse quarantine", "rejection quarantine", "batch close"),
    "merge": (
        "day lock",
        "batch days advance",
        "ledger claim",
        "identity links",
        "events upsert",
        "order lines",
        "enrichment rebuild",
    ),
    "merges": ("ledger claim", "events upsert"),
    "api": ("page request", "page ledger", "page staging", "cursor move"),
    "collector": ("flush ledger", "flush COPY", "acknowledgement"),
}
RUN_RETRY = ("run retry", "ingest COPY, then merge upsert")
"""The trial where Dagster itself recovers: ``etl dev``'s code server and daemon, not the test."""
SLOW_ROUNDS = 3
LARGE_FILE_EVENTS = 30_000
"""More than one of staging's 20,000-record chunks: a large trial kills the second, after the first committed."""
API_TOKEN_ENV = "CRASH_TRIALS_API_TOKEN"
API_PAGE_SIZE = 50
PARTNERS = {"acme": "acme-secret", "globex": "globex-secret"}
EVENTS_PER_REQUEST = 5
RUN_SECONDS = 300


@dataclass(frozen=True)
class Trial:
    number: int
    family: str
    phase: str
    large: bool = False

    @property
    def seed(self) -> int:
        return MASTER_SEED * 1_000 + self.number

    def __str__(self) -> str:
        size = "-large" if self.large else ""
        return f"{self.number:02d}-{self.family}-{self.phase.replace(' ', '-')}{size}"


def fast_trials() -> list[Trial]:
    """One trial per family of kill points, the merge's order lines, and the collector's acknowledgement (its most
    delicate point)."""
    chosen = [
        ("ingest", "COPY into staging"),
        ("merge", "events upsert"),
        ("merge", "order lines"),
        ("merges", "events upsert"),
        ("api", "cursor move"),
        ("collector", "flush COPY"),
        ("collector", "acknowledgement"),
    ]
    return [Trial(900 + number, family, phase) for number, (family, phase) in enumerate(chosen, 1)]


def slow_trials() -> list[Trial]:
    trials = []
    for round_ in range(SLOW_ROUNDS):
        for family, phases in PHASES.items():
            for phase in phases:
                large = phase in ("COPY into staging", "parse quarantine") and round_ >= 1
                trials.append(Trial(len(trials) + 1, family, phase, large))
    return trials


@dataclass
class Outcome:
    trial: Trial
    kill_point: str
    statement: str
    recovery: str
    reconciliation: Reconciliation
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lab:
    """One trial's database, buckets, run processes, gates and in-process platform (sensors and recovery runs)."""

    trial: Trial
    env: dict[str, str]
    engine: Engine
    s3: Any
    buckets: dict[str, str]
    worker: RunWorker
    gates: Gates
    logs: Path
    monkeypatch: pytest.MonkeyPatch
    rng: random.Random
    stack: ExitStack = field(default_factory=ExitStack)
    _platform: Pipeline | None = None

    def setenv(self, name: str, value: str) -> None:
        """Set a variable for the run processes and the in-process platform (before the platform is built)."""
        assert self._platform is None, "set the environment before the platform is built"
        self.env[name] = value
        self.monkeypatch.setenv(name, value)

    @property
    def platform(self) -> Pipeline:
        if self._platform is None:
            from etl_assets.definitions import defs

            self._platform = self.stack.enter_context(pipeline(defs()))
        return self._platform

    def app_name(self, label: str) -> str:
        return f"crash-{self.trial.number}-{label}"

    def start(self, run: dict[str, Any], label: str) -> RunProcess:
        env = {**self.env, "PGAPPNAME": self.app_name(label)}
        return self.worker.start(run, env, self.logs / f"{self.trial.number:03d}-{label}.log")

    def run_to_end(self, run: dict[str, Any], label: str) -> None:
        process = self.start(run, label)
        code = process.wait(RUN_SECONDS)
        assert code == 0, f"{label} run ended with {code}:\n{process.tail()}"

    def kill_at(self, gate: Gate, process: RunProcess) -> str:
        """Wait until ``process`` is held at ``gate``, SIGKILL it there, open the gate; what it was running."""
        waiter = self.gates.wait_for(gate, process.running, timeout=RUN_SECONDS)
        assert process.kill() == -signal.SIGKILL, process.tail()
        self.gates.release(gate)
        return _statement(waiter.query)

    def assert_no_backends_left(self, label: str) -> None:
        """Nothing of the killed run is left in the server: its backends ended with their transactions."""
        deadline = time.monotonic() + 30
        while self.gates.backends_of(self.app_name(label)):
            assert time.monotonic() < deadline, f"backends of the killed {label} run are still open"
            time.sleep(0.02)


def _statement(query: str) -> str:
    words = re.sub(r"\s+", " ", query).strip().split(" ")
    return " ".join(words[:3])


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunWorker]:
    worker = RunWorker(Path(__file__).resolve().parents[2], tmp_path_factory.mktemp("run-worker") / "worker.log")
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def trial_log(request: pytest.FixtureRequest) -> Iterator[list[Outcome]]:
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    yield outcomes
    if outcomes:
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print("\n" + crash_summary(outcomes, time.perf_counter() - started))


@pytest.fixture
def lab(
    request: pytest.FixtureRequest,
    pipeline_env: dict,
    warehouse_url: str,
    warehouse_engine: Engine,
    s3,
    buckets: dict[str, str],
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Lab]:
    trial: Trial = request.node.callspec.params["trial"]
    gates = Gates(warehouse_url)
    lab = Lab(
        trial,
        dict(pipeline_env),
        warehouse_engine,
        s3,
        buckets,
        run_worker,
        gates,
        tmp_path,
        monkeypatch,
        random.Random(trial.seed),
    )
    with lab.stack:
        lab.stack.callback(gates.close)
        lab.stack.callback(run_worker.stop_runs)
        yield lab


# --- the trials -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", fast_trials(), ids=str)
def test_crash_trial(trial: Trial, lab: Lab, trial_log: list[Outcome]) -> None:
    run_trial(lab, trial_log)


@pytest.mark.slow
@pytest.mark.parametrize("trial", slow_trials(), ids=str)
def test_crash_trial_slow(trial: Trial, lab: Lab, trial_log: list[Outcome]) -> None:
    run_trial(lab, trial_log)


def run_trial(lab: Lab, trial_log: list[Outcome]) -> None:
    started = time.perf_counter()
    outcome = FAMILIES[lab.trial.family](lab)
    outcome.seconds = time.perf_counter() - started
    print(
        f"trial {lab.trial} (seed {lab.trial.seed}, {outcome.seconds:.1f} s): "
        f"killed at {outcome.kill_point} [{outcome.statement}]"
    )
    print(f"  recovered by {outcome.recovery}; {outcome.facts}")
    outcome.reconciliation.check()
    trial_log.append(outcome)


def ingest_trial(lab: Lab) -> Outcome:
    """A landing file's ingest run killed while it archives, enters, stages or closes its batch."""
    trial, rng = lab.trial, lab.rng
    known = shop_input(trial.seed, LARGE_FILE_EVENTS if trial.large else 400)
    key = f"landing/{date(2025, 8, 1)}/trial-{trial.number}.jsonl"
    lab.s3.put_object(Bucket=lab.buckets["landing"], Key=key, Body=known.jsonl())
    [request] = lab.platform.tick("landing_files_sensor")
    lab.platform.run_keys.add(request.run_key)
    staged = [isinstance(record.body, dict) and "id" in record.body for record in known.records]
    # a large trial's kill point lies in the second chunk: the first one has committed
    first_chunk = staged[:DEFAULT_CHUNK_SIZE] if trial.large else []
    rows = (sum(first_chunk) + 1, sum(staged))
    rejected = (len(first_chunk) - sum(first_chunk) + 1, len(staged) - sum(staged))
    refused = sum(1 for record in known.quarantined() if record.reason == MISSING_TYPE_REASON)
    assert refused, "the input holds no record the transform rejects"
    gate = {
        "ledger entry": lambda: RowGate("raw_batches"),
        "COPY into staging": lambda: RowGate("staging_events", nth=rng.randint(*rows)),
        "parse quarantine": lambda: RowGate("quarantine", nth=rng.randint(*rejected), when="NEW.stage = 'parse'"),
        "rejection quarantine": lambda: RowGate(
            "quarantine", nth=rng.randint(1, refused), when="NEW.stage = 'normalize'"
        ),
        "batch close": lambda: RowGate("raw_batches", event="UPDATE"),
    }[trial.phase]()
    lab.gates.arm(gate)
    run = {
        "job": "ingest_landing_file_job",
        "run_config": request.run_config,
        "tags": {**request.tags, "dagster/run_key": request.run_key},
    }
    statement = lab.kill_at(gate, lab.start(run, "ingest"))
    committed = committed_records(lab.engine)
    closed = batch_closed(lab.engine)
    assert committed % DEFAULT_CHUNK_SIZE == 0 or committed == len(known.records), (
        f"{committed} records committed: the kill left part of a chunk behind"
    )
    assert committed < len(known.records) or not closed, "the kill came after the run had done everything"
    assert committed or not trial.large, "the large file's kill came before its first chunk committed"
    lab.run_to_end(run, "ingest-retry")
    lab.platform.settle()
    lab.assert_no_backends_left("ingest")
    return Outcome(
        trial,
        gate.describe(),
        statement,
        "the run again (run retry), then the sensors' next ticks",
        reconcile(lab.engine, known),
        0.0,
        {"records": len(known.records), "records committed at the kill": committed, "batch closed": closed},
    )


def merge_trial(lab: Lab) -> Outcome:
    """A range of days' merge run killed inside a day's merge transaction or while it rebuilds the daily tables."""
    trial, rng = lab.trial, lab.rng
    known = shop_input(trial.seed, 600, days=3)
    lab.s3.put_object(Bucket=lab.buckets["landing"], Key="landing/2025-08-01/merge.jsonl", Body=known.jsonl())
    lab.platform.tick_and_run("landing_files_sensor")
    [request] = lab.platform.tick("staged_days_sensor")
    lab.platform.run_keys.add(request.run_key)
    with lab.engine.connect() as conn:
        staged_days = list(conn.scalars(text("SELECT DISTINCT day FROM batch_days ORDER BY 1")))
    events = len(known.expected_events())
    lines = sum(len(event.lines) for event in known.expected_events().values())
    links = len(known.links())
    assert lines, "the input holds no order"
    assert links, "the input holds no login that links an anonymous visitor to a user"
    gate = {
        "day lock": lambda: day_lock(rng.choice(staged_days)),
        "batch days advance": lambda: RowGate(
            "batch_days", nth=rng.randint(1, len(staged_days)), event="UPDATE", when=READ_FURTHER
        ),
        "ledger claim": lambda: RowGate("event_ledger", nth=rng.randint(1, events)),
        "identity links": lambda: RowGate("identity_links", nth=rng.randint(1, links)),
        "events upsert": lambda: RowGate("events", nth=rng.randint(1, events)),
        "order lines": lambda: RowGate("order_lines", nth=rng.randint(1, lines)),
        "enrichment rebuild": lambda: RowGate(rng.choice(DAILY_TABLES).name),
    }[trial.phase]()
    lab.gates.arm(gate)
    run = {"job": "daily_events_job", "tags": {**request.tags, "dagster/run_key": request.run_key}}
    statement = lab.kill_at(gate, lab.start(run, "merge"))
    days = day_states(lab.engine)
    assert set(days.values()) <= {"merged", "pending"}, f"a day's merge was left half done: {days}"
    interrupted = daily_tables(lab.engine)
    lab.run_to_end(run, "merge-retry")
    lab.platform.tick_and_run("staged_days_sensor")
    lab.assert_no_backends_left("merge")
    recovered = daily_tables(lab.engine)
    assert "pending" in days.values() or interrupted != recovered, "the kill came after the run had done everything"
    rebuild = lab.platform.definitions.resolve_job_def("daily_events_job").execute_in_process(
        instance=lab.platform.instance, tags=request.tags
    )
    assert rebuild.success
    assert daily_tables(lab.engine) == recovered, "the daily tables after recovery differ from a clean rebuild"
    return Outcome(
        trial,
        gate.describe(),
        statement,
        "the run again (run retry), then the sensor's next tick",
        reconcile(lab.engine, known),
        0.0,
        {"records": len(known.records), "days at the kill": dict(Counter(days.values()))},
    )


READ_FURTHER = "NEW.merged_through > OLD.merged_through"
"""A ``batch_days`` update that advances what merges have read (not the ingest's, nor a refresh's reset)."""


def day_lock(day: date) -> LockGate:
    """The lock a day's merge takes first (``warehouse.merge.lock_day``)."""
    return LockGate((DAY_LOCK_CLASS, day.toordinal()), f"merge lock of {day}")


def daily_tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    return {
        table.name: table_rows(engine, table.name, ", ".join(column.name for column in table.primary_key.columns))
        for table in DAILY_TABLES
    }


OVERLAP_START = date(2025, 8, 1)
OVERLAP_DAYS = 3


def partition_range(first: date, last: date) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)}


def on_day(day: date) -> str:
    """A row gate's condition: the row (of ``events`` or ``event_ledger``) lies on ``day``."""
    return f"(NEW.occurred_at AT TIME ZONE 'UTC')::date = DATE '{day}'"


def overlapping_merges_trial(lab: Lab) -> Outcome:
    """Two merge runs of overlapping day ranges (D1..D2 and D2..D3) at once, over events that a later file sent
    again on another day, so that two days' merges hold the same ids. The first merge of D2 is held inside its
    ledger claim or events upsert until the other run waits for it (for D2's merge lock, or for a ledger row it
    claimed), and killed there; the other run then merges D2 itself, and the killed range runs again."""
    trial, rng = lab.trial, lab.rng
    days = [date.fromordinal(OVERLAP_START.toordinal() + offset) for offset in range(OVERLAP_DAYS)]
    sent = shop_input(trial.seed, 300, start=OVERLAP_START, days=OVERLAP_DAYS)
    resent = resent_on_other_days(sent, trial.seed, 0.25, OVERLAP_START, OVERLAP_DAYS)
    for name, part in (("1-sent", sent), ("2-resent", resent)):
        lab.s3.put_object(Bucket=lab.buckets["landing"], Key=f"landing/2025-08-01/{name}.jsonl", Body=part.jsonl())
        lab.platform.tick_and_run("landing_files_sensor")
    known = KnownInput(sent.records + resent.records)
    contested = days[1]
    on_contested = sum(1 for event in known.expected_events().values() if event.occurred_at.date() == contested)
    assert resent.records and on_contested, "the input holds no event re-sent on another day"
    table = "event_ledger" if trial.phase == "ledger claim" else "events"
    gate = RowGate(table, nth=rng.randint(1, on_contested), when=on_day(contested))
    lab.gates.arm(gate)
    run_days = {"early": days[:2], "late": days[1:]}
    runs = {
        label: {"job": "daily_events_job", "tags": partition_range(covered[0], covered[-1])}
        for label, covered in run_days.items()
    }
    processes = {label: lab.start(run, label) for label, run in runs.items()}
    waiter = lab.gates.wait_for(gate, lambda: any(process.running() for process in processes.values()))
    [held] = [label for label in runs if waiter.application_name == lab.app_name(label)]
    [other] = [label for label in runs if label != held]
    waits: list[str] = []

    def other_waits() -> bool:
        assert processes[other].running(), (
            f"the {other} run ended while {contested} was held:\n{processes[other].tail()}"
        )
        query = lab.gates.blocked_by(lab.app_name(other), waiter.pid)
        waits.extend([query] if query else [])
        return bool(waits)

    wait_until(other_waits, f"the {other} run waiting for the {held} run's merge of {contested}", RUN_SECONDS)
    statement = lab.kill_at(gate, processes[held])
    code = processes[other].wait(RUN_SECONDS)
    assert code == 0, f"the {other} run ended with {code}:\n{processes[other].tail()}"
    lab.assert_no_backends_left(held)
    merged_by_other = {day: state for day, state in day_states(lab.engine).items() if day in run_days[other]}
    assert set(merged_by_other.values()) == {"merged"}, f"the {other} run left its days {merged_by_other}"
    lab.run_to_end(runs[held], f"{held}-retry")
    lab.platform.tick_and_run("staged_days_sensor")
    return Outcome(
        trial,
        f"{gate.describe()}, in the {held} run, the {other} run waiting for it",
        statement,
        f"the {other} run merging {contested} itself, then the {held} run again (run retry), the sensor's next tick",
        reconcile(lab.engine, known),
        0.0,
        {
            "records": len(known.records),
            "events re-sent on another day": len(resent.records),
            f"the {other} run waited in": _statement(waits[0]),
        },
    )


@pytest.mark.parametrize("trial", [Trial(950, "merges", "one day twice")], ids=str)
def test_merges_of_one_day_take_turns(trial: Trial, lab: Lab) -> None:
    """Two merges of the same day at once, both let go at the same moment: one merges the day, the other waits for
    it and then finds nothing left to read."""
    day = OVERLAP_START
    known = shop_input(trial.seed, 200, start=day, days=1)
    lab.s3.put_object(Bucket=lab.buckets["landing"], Key=f"landing/{day}/twice.jsonl", Body=known.jsonl())
    lab.platform.tick_and_run("landing_files_sensor")
    with lab.engine.connect() as conn:
        staged = conn.scalar(text("SELECT count(*) FROM staging_events WHERE event_day = :day"), {"day": day})
    gate = day_lock(day)
    lab.gates.arm(gate)
    options = MergeOptions(accepted=accepted_times(), pii=pii_policy())
    with ThreadPoolExecutor(2) as pool:
        merges = [pool.submit(merge_days, lab.engine, [day], options) for _ in range(2)]
        wait_until(lambda: len(lab.gates.waiters(gate)) == 2, f"both merges waiting for the merge lock of {day}")
        lab.gates.release(gate)
        received = sorted(merge.result(timeout=RUN_SECONDS).received for merge in merges)
    assert received == [0, staged], f"the two merges read {received} of the {staged} rows staged on {day}"
    lab.platform.tick_and_run("staged_days_sensor")
    reconcile(lab.engine, known).check()


def api_trial(lab: Lab) -> Outcome:
    """An events API poll run killed while it waits for a page, stages it, or before its cursor moves."""
    trial, rng = lab.trial, lab.rng
    backlog = 300
    pages = backlog // API_PAGE_SIZE
    feed = FeedSettings(
        seed=trial.seed % 10_000,
        token="crash-token",
        backlog=backlog,
        events_per_second=backlog / (2 * 86_400),
        rate_limit_share=0.0,
        error_share=0.0,
    )
    app = create_app(feed)
    held = HeldRequest(app, "/events", rng.randint(1, pages)) if trial.phase == "page request" else None
    gate: Gate | None = {
        "page request": lambda: None,
        "page ledger": lambda: RowGate("raw_batches", nth=rng.randint(1, pages), when="NEW.source = 'api:demo'"),
        "page staging": lambda: RowGate("staging_events", nth=rng.randint(1, backlog)),
        "cursor move": lambda: RowGate("source_cursors", nth=rng.randint(1, pages)),
    }[trial.phase]()
    with serve(held or app) as url:
        sources = lab.logs / "api-sources.json"
        source = {"name": "demo", "base_url": f"{url}/events", "token_env": API_TOKEN_ENV, "page_size": API_PAGE_SIZE}
        sources.write_text(json.dumps([{**source, "backoff_factor": 0.05, "backoff_max": 0.2}]))
        lab.setenv("ETL_EVENTS_API_SOURCES", str(sources))
        lab.setenv(API_TOKEN_ENV, feed.token or "")
        [request] = lab.platform.tick("events_api_sensor")
        run = {"job": "events_api_poll_job", "run_config": request.run_config, "tags": request.tags}
        if gate is not None:
            lab.gates.arm(gate)
            process = lab.start(run, "poll")
            statement = lab.kill_at(gate, process)
            kill_point = gate.describe()
        else:
            assert held is not None
            process = lab.start(run, "poll")
            held.wait_for(process.running)
            assert process.kill() == -signal.SIGKILL, process.tail()
            held.release()
            statement, kill_point = "GET /events", held.describe()
        committed_pages, committed_rows, position = api_progress(lab.engine)
        assert committed_rows == committed_pages * API_PAGE_SIZE == position, (
            f"{committed_pages} pages, {committed_rows} rows and a cursor at {position}: a page and its cursor "
            "did not commit together"
        )
        assert position < backlog, "the kill came after the run had done everything"
        lab.platform.tick_and_run("events_api_sensor")
        lab.platform.tick_and_run("staged_days_sensor")
    lab.assert_no_backends_left("poll")
    with lab.engine.connect() as conn:
        cursor = conn.scalar(text("SELECT cursor FROM source_cursors WHERE source = 'api:demo'"))
    served = decode_cursor(cursor)
    assert served >= backlog, f"the cursor stopped at {served}, before the end of the backlog ({backlog})"
    known = feed_input(app.state.feed.events(0, served))
    return Outcome(
        trial,
        kill_point,
        statement,
        "the poll sensor's next tick (a new poll from the stored cursor)",
        reconcile(lab.engine, known),
        0.0,
        {"events served": served, "pages committed before the kill": committed_pages},
    )


@dataclass
class WebhookClient:
    """A partner that sends its requests and sends again, later, every one not answered 200."""

    known: KnownInput
    batches: list[list[int]]
    """Records (indexes into the known input) of each request."""
    url: str = ""
    acknowledged: set[int] = field(default_factory=set)

    def partner(self, request: int) -> str:
        return sorted(PARTNERS)[request % len(PARTNERS)]

    def send(self, request: int) -> bool:
        records = [self.known.records[index] for index in self.batches[request]]
        body = json.dumps({"events": [record.body for record in records]}).encode()
        self.known.deliveries.update(record.ref for record in records)
        partner, at = self.partner(request), int(time.time())
        headers = {TIMESTAMP_HEADER: str(at), SIGNATURE_HEADER: sign(PARTNERS[partner], at, body)}
        try:
            answer = requests.post(f"{self.url}/webhooks/{partner}", data=body, headers=headers, timeout=60)
        except requests.ConnectionError:
            return False
        if answer.status_code == 200:
            self.acknowledged.add(request)
            return True
        assert answer.status_code == 503, f"request {request} answered {answer.status_code}: {answer.text}"
        return False

    def send_all(self, requests_: list[int], threads: int = 4) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(self.send, requests_))

    def unacknowledged(self) -> list[int]:
        return [request for request in range(len(self.batches)) if request not in self.acknowledged]


def collector_trial(lab: Lab) -> Outcome:
    """The collector killed while it answers: in a flush's ledger entry or COPY, or after a commit it never answered."""
    trial, rng = lab.trial, lab.rng
    known = shop_input(trial.seed, 200, broken_lines=False, versions=False)
    indexes = list(range(len(known.records)))
    client = WebhookClient(
        known, [indexes[start : start + EVENTS_PER_REQUEST] for start in range(0, len(indexes), EVENTS_PER_REQUEST)]
    )
    port = free_port()
    client.url = f"http://127.0.0.1:{port}"
    lab.env.update(
        {
            "ETL_COLLECTOR_PORT": str(port),
            "ETL_WEBHOOK_SECRETS": ",".join(f"{name}={secret}" for name, secret in PARTNERS.items()),
        }
    )
    with_ids = sum(1 for record in known.records if "id" in record.body)
    facts: dict[str, Any] = {"requests": len(client.batches)}
    collector = start_collector(lab, client.url, "collector")
    if trial.phase == "acknowledgement":
        kill_point, statement = kill_after_unanswered_commit(lab, client, collector, facts)
    else:
        gate = (
            RowGate("raw_batches", nth=rng.randint(1, 2))
            if trial.phase == "flush ledger"
            else RowGate("staging_events", nth=rng.randint(1, with_ids))
        )
        lab.gates.arm(gate)
        with ThreadPoolExecutor(1) as traffic:
            sending = traffic.submit(client.send_all, list(range(len(client.batches))))
            statement = lab.kill_at(gate, collector)
            sending.result()
        kill_point = gate.describe()
    facts["answered 200 before the kill"] = len(client.acknowledged)
    half_written = half_written_batches(lab.engine)
    assert not half_written, f"flushes committed in part: {half_written}"
    assert client.unacknowledged(), "the kill came after every request was answered"
    restarted = start_collector(lab, client.url, "collector-restarted")
    for _ in range(3):
        client.send_all(client.unacknowledged())
    assert not client.unacknowledged(), f"requests never answered 200: {client.unacknowledged()}"
    # uvicorn stops gracefully on SIGTERM, then ends itself with the signal it caught
    assert restarted.terminate() in (0, -signal.SIGTERM), restarted.tail()
    lab.platform.tick_and_run("staged_days_sensor")
    lab.assert_no_backends_left("collector")
    facts["records sent twice or more"] = sum(1 for count in known.deliveries.values() if count > 1)
    return Outcome(
        trial,
        kill_point,
        statement,
        "a restart, the client sending again what was not answered 200, the sensor's next tick",
        reconcile(lab.engine, known),
        0.0,
        facts,
    )


def start_collector(lab: Lab, url: str, label: str) -> RunProcess:
    process = lab.start({"collector": True}, label)
    deadline = time.monotonic() + 60
    while True:
        assert process.running(), f"the collector ended:\n{process.tail()}"
        assert time.monotonic() < deadline, "the collector did not come up in 60 s"
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.05)


def kill_after_unanswered_commit(
    lab: Lab, client: WebhookClient, collector: RunProcess, facts: dict[str, Any]
) -> tuple[str, str]:
    """Kill the collector after one partner's group of a flush committed and before the flush was answered.

    The first flush is held at its ledger entry while a request of each partner queues behind it; released,
    the next flush takes both, commits the first partner's group and is held at the second's ledger entry.
    The first partner's request is then durable but was never answered: its sender must send it again.
    """
    first, second = sorted(PARTNERS)
    opening = next(request for request in range(len(client.batches)) if client.partner(request) == first)
    committed = next(request for request in range(opening + 1, len(client.batches)) if client.partner(request) == first)
    held = next(request for request in range(len(client.batches)) if client.partner(request) == second)
    first_flush = RowGate("raw_batches")
    second_group = RowGate("raw_batches", when=f"NEW.source = 'webhook:{second}'")
    lab.gates.arm(first_flush)
    lab.gates.arm(second_group)
    with ThreadPoolExecutor(3) as senders:
        senders.submit(client.send, opening)
        lab.gates.wait_for(first_flush, collector.running)
        for queued, request in enumerate((committed, held), 1):
            senders.submit(client.send, request)
            wait_until(lambda queued=queued: pending_requests(client.url) >= queued, f"{queued} requests queued")
        lab.gates.release(first_flush)
        statement = lab.kill_at(second_group, collector)
    ids = [client.known.records[index].body.get("id") for index in client.batches[committed]]
    with lab.engine.connect() as conn:
        durable = conn.scalar(
            text("SELECT count(*) FROM staging_events WHERE event_id = ANY(:ids)"), {"ids": [i for i in ids if i]}
        )
    assert committed not in client.acknowledged and durable == sum(1 for i in ids if i), (
        "the kill did not land between the commit of a request and its answer"
    )
    facts["committed but never answered"] = f"request {committed} ({durable} events)"
    rest = [request for request in range(len(client.batches)) if request not in (opening, committed, held)]
    client.send_all(rest)
    return f"{second_group.describe()}, after {first}'s group of the flush committed", statement


def pending_requests(url: str) -> float:
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    match = re.search(r"^etl_collector_pending_requests (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def committed_records(engine: Engine) -> int:
    """Records of the batch committed so far: staged, or quarantined before staging."""
    with engine.connect() as conn:
        return conn.scalar(
            text(
                "SELECT (SELECT count(*) FROM staging_events) + (SELECT count(*) FROM quarantine WHERE stage = 'parse')"
            )
        )


def batch_closed(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT bool_and(staged_at IS NOT NULL) FROM raw_batches")))


def day_states(engine: Engine) -> dict[date, str]:
    """Each staged day: ``merged`` (no row pending), ``pending`` (every row pending) or ``half`` (some of each).

    Rows the transform rejected are ``failed`` from their staging on, merged or not: they do not count."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT event_day, count(*) FILTER (WHERE status = 'pending'), "
                "count(*) FILTER (WHERE status <> 'failed') "
                "FROM staging_status GROUP BY event_day"
            )
        )
        return {
            day: "merged" if not pending else "pending" if pending == total else "half" for day, pending, total in rows
        }


def api_progress(engine: Engine) -> tuple[int, int, int]:
    """Pages committed, their staged rows, and the position the source's cursor points after."""
    with engine.connect() as conn:
        pages = conn.scalar(text("SELECT count(*) FROM raw_batches"))
        rows = conn.scalar(text("SELECT count(*) FROM staging_events"))
        cursor = conn.scalar(text("SELECT cursor FROM source_cursors WHERE source = 'api:demo'"))
    return pages, rows, decode_cursor(cursor) if cursor else 0


def half_written_batches(engine: Engine) -> list[str]:
    """Collector batches whose ledger row, staged rows and parse quarantine do not add up."""
    with engine.connect() as conn:
        return list(
            conn.scalars(
                text(
                    "SELECT b.batch_id FROM raw_batches b WHERE b.staged_at IS NULL OR b.record_count <> "
                    "(SELECT count(*) FROM staging_events s WHERE s.batch_id = b.batch_id) + "
                    "(SELECT count(*) FROM quarantine q WHERE q.batch_id = b.batch_id AND q.stage = 'parse')"
                )
            )
        )


@pytest.mark.slow
def test_dagster_retries_the_runs_it_lost(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, trial_log: list[Outcome]
) -> None:
    """Dagster's own recovery, in ``etl dev`` (its dagster.yaml: run retries on): an ingest run killed mid-COPY,
    then the merge run of its days killed mid-upsert, each found from outside as the process holding the
    connection that waits at the gate. The code server sees its run process die and fails the run; the daemon
    retries it; nothing else is done by the test before it reconciles."""
    started = time.perf_counter()
    platform = start_dev_platform(
        s3_endpoint, tmp_path_factory.mktemp("etl-dev") / "etl-home", tmp_path_factory.mktemp("artifacts"), "crash"
    )
    dev, s3, landing = platform.run, platform.s3, platform.landing_bucket
    with ExitStack() as stack:
        stack.callback(lambda: ctrl_c(dev))
        dev.wait_for("ready", 180)
        stack.callback(lambda: platform.engine.dispose())
        gates = Gates(platform.warehouse_url)
        stack.callback(gates.close)
        trial = Trial(999, *RUN_RETRY)
        rng = random.Random(trial.seed)
        known = shop_input(trial.seed, 400)
        key = "landing/2025-08-01/run-retry.jsonl"
        s3.put_object(Bucket=landing, Key=key, Body=known.jsonl())
        head = s3.head_object(Bucket=landing, Key=key)
        file = {"key": key, "etag": head["ETag"].strip('"'), "size": head["ContentLength"]}
        staged = sum(1 for record in known.records if isinstance(record.body, dict) and "id" in record.body)
        copy = RowGate("staging_events", nth=rng.randint(1, staged))
        ingest = kill_and_await_retry(
            platform,
            gates,
            copy,
            "ingest_landing_file_job",
            run_config={"ops": {"ingest_landing_file": {"config": file}}},
        )
        with platform.engine.connect() as conn:
            first, last = conn.execute(text("SELECT min(event_day), max(event_day) FROM staging_events")).one()
        upsert = RowGate("events", nth=rng.randint(1, len(known.expected_events())))
        merge = kill_and_await_retry(platform, gates, upsert, "daily_events_job", tags=partition_range(first, last))
        outcome = Outcome(
            trial,
            f"{copy.describe()}; {upsert.describe()}",
            f"{ingest}; {merge}",
            "Dagster: the code server failed each killed run, the daemon's run retry ran it again",
            reconcile(platform.engine, known),
            time.perf_counter() - started,
        )
        print(f"trial {trial}: killed at {outcome.kill_point} [{outcome.statement}]")
        outcome.reconciliation.check()
        trial_log.append(outcome)


def kill_and_await_retry(platform: DevPlatform, gates: Gates, gate: RowGate, job: str, **launch: Any) -> str:
    """Launch ``job``, SIGKILL the process whose connection waits at ``gate``, and wait for Dagster's retry."""
    gates.arm(gate)
    run_id = platform.client.submit_job_execution(job, **launch)
    checked = {"at": 0.0, "running": True}

    def running() -> bool:
        if time.monotonic() - checked["at"] > 1:
            checked.update(at=time.monotonic(), running=platform.client.get_run_status(run_id).value not in FINISHED)
        return checked["running"]

    waiter = gates.wait_for(gate, running, timeout=180)
    process = waiter.client_process()
    spawned_by = " ".join(process.parent().cmdline()[1:4])
    process.kill()
    process.wait(30)
    gates.release(gate)
    retry = platform.wait_for_tagged_run("dagster/parent_run_id", run_id)
    assert platform.client.get_run_status(run_id).value == "FAILURE", "the killed run was not marked failed"
    assert retry["status"] == "SUCCESS", f"the retry of {job} ended {retry['status']}"
    return f"{_statement(waiter.query)} in run process {process.pid} of `{spawned_by}`"


FAMILIES: dict[str, Callable[[Lab], Outcome]] = {
    "ingest": ingest_trial,
    "merge": merge_trial,
    "merges": overlapping_merges_trial,
    "api": api_trial,
    "collector": collector_trial,
}


def crash_summary(outcomes: list[Outcome], seconds: float) -> str:
    hits = Counter((outcome.trial.family, outcome.trial.phase) for outcome in outcomes)
    statements: dict[tuple[str, str], set[str]] = {}
    for outcome in outcomes:
        statements.setdefault((outcome.trial.family, outcome.trial.phase), set()).add(outcome.statement)
    totals = Counter()
    for outcome in outcomes:
        result = outcome.reconciliation
        totals.update(
            records=result.records,
            in_events=result.in_events,
            quarantined=result.quarantined,
            superseded=result.superseded,
            lines=result.lines,
            lost=len(result.lost),
            doubled=len(result.doubled),
            extra=len(result.extra),
            wrong=len(result.wrong),
            platform=len(result.platform),
        )
    lines = [
        f"crash trials (seed {MASTER_SEED}): {len(outcomes)} trials in {seconds:.1f} s, "
        "each run process killed with SIGKILL at its kill point",
        "kill points hit, by phase:",
    ]
    for family, phases in {**PHASES, RUN_RETRY[0]: RUN_RETRY[1:]}.items():
        for phase in phases:
            if hits[(family, phase)]:
                shown = "; ".join(sorted(statements[(family, phase)]))
                lines.append(f"  {family:<10} {phase:<22} {hits[(family, phase)]:>3}   ({shown})")
    lines += [
        f"records reconciled: {totals['records']} (in events {totals['in_events']}, quarantined "
        f"{totals['quarantined']}, re-sent or superseded versions {totals['superseded']}); order lines once, "
        f"as sent: {totals['lines']}",
        f"lost: {totals['lost']}  doubled: {totals['doubled']}  in events but never sent: {totals['extra']}  "
        f"wrong content: {totals['wrong']}  platform accounting mismatches: {totals['platform']}",
    ]
    return "\n".join(lines)
