"""Many small files dropped at once go into few runs, each file still a batch of its own, staged exactly once.

Real parts: the S3 endpoint, the landing sensor of the code location and the ingest runs it requests, executed
in-process against a real PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import Engine, text

from etl_assets.defs import ingest
from etl_assets.defs.ingest import LandingFile, LandingFileConfig, ingest_landing_file, requested_objects
from etl_assets.orchestration.step_failures import TransientFailure
from etl_assets.sources import landing_ingest
from etl_assets.sources.landing import LandingObject
from tests.harness import ACCEPTED, pipeline

FILES = 300
EVENTS_A_FILE = 3
PREFIX = "landing/2025-09-20/"
BAD = f"{PREFIX}part-00150.jsonl"
"""Not events at all: a zip archive under a JSONL name."""


def body(number: int) -> bytes:
    return b"".join(
        json.dumps(
            {"id": f"f{number}-{n}", "type": "page_view", "timestamp": f"2025-09-20T10:{n:02d}:00Z", "user_id": "u1"}
        ).encode()
        + b"\n"
        for n in range(EVENTS_A_FILE)
    )


def drop(s3, bucket: str, count: int) -> dict[str, str]:
    """Put ``count`` small files (one of them the bad one); key → batch id."""

    def put(number: int) -> tuple[str, str]:
        key = f"{PREFIX}part-{number:05d}.jsonl"
        data = b"PK\x03\x04\x14\x00\x00\x00not events" if key == BAD else body(number)
        etag = s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
        return key, f"{key}#{etag}"

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(put, range(count)))


def rows(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def test_300_small_files_are_staged_once_each_in_fewer_runs_and_a_bad_one_is_quarantined(
    definitions, s3, buckets: dict[str, str], warehouse_engine: Engine
):
    batch_ids = drop(s3, buckets["landing"], FILES)
    with pipeline(definitions) as run:
        requests = run.tick("landing_files_sensor")
        assert [len(requested_objects(request.run_config)) for request in requests] == [200, 100]
        requested = [obj.batch_id for request in requests for obj in requested_objects(request.run_config)]
        assert sorted(requested) == sorted(batch_ids.values())  # every file, once
        executed = run.execute("landing_files_sensor", requests)
        assert len(executed) == 2 and all(result.success for result in executed)

        assert run.tick("landing_files_sensor") == []  # caught up
        again = run.tick("landing_files_sensor", cursor="")  # the first tick evaluated again: the same run keys
        assert [request.run_key for request in again] == [request.run_key for request in requests]
        assert run.execute("landing_files_sensor", again) == []  # the daemon drops a run key it has seen
        swept = json.loads(run.cursors["landing_files_sensor"]) | {"last_sweep": 0.0}
        assert run.tick("landing_files_sensor", cursor=json.dumps(swept)) == []  # every file is in the ledger

        assert rows(warehouse_engine, "SELECT batch_id FROM raw_batches ORDER BY 1") == [
            (batch_id,) for batch_id in sorted(batch_ids.values())
        ]
        good = FILES - 1
        assert rows(warehouse_engine, "SELECT count(*), count(DISTINCT event_id) FROM staging_events") == [
            (good * EVENTS_A_FILE, good * EVENTS_A_FILE)
        ]
        assert rows(
            warehouse_engine,
            "SELECT count(*) FROM raw_batches WHERE staged_at IS NOT NULL AND record_count = "
            f"(CASE WHEN batch_id = '{batch_ids[BAD]}' THEN 1 ELSE {EVENTS_A_FILE} END)",
        ) == [(FILES,)]
        [(batch_id, record_no, reason)] = rows(warehouse_engine, "SELECT batch_id, record_no, reason FROM quarantine")
        assert (batch_id, record_no) == (batch_ids[BAD], 0)
        assert "zip archive" in reason and BAD in reason

        materialized = [
            materialization.metadata
            for result in executed
            for materialization in result.asset_materializations_for_node("ingest_landing_file")
            if materialization.asset_key == dg.AssetKey("staging_events")
        ]
        assert sorted(meta["files"].value for meta in materialized) == [100, 200]
        assert sum(meta["rows written"].value for meta in materialized) == good * EVENTS_A_FILE
        assert sum(meta["rows quarantined"].value for meta in materialized) == 1

        rerun = run.definitions.resolve_job_def("ingest_landing_file_job").execute_in_process(
            run_config=requests[1].run_config, instance=run.instance
        )  # a re-execution of a run from the UI
        [staged] = [
            materialization.metadata
            for materialization in rerun.asset_materializations_for_node("ingest_landing_file")
            if materialization.asset_key == dg.AssetKey("staging_events")
        ]
        assert (staged["rows written"].value, staged["rows already staged"].value) == (0, 100 * EVENTS_A_FILE)
        assert rows(warehouse_engine, "SELECT count(*) FROM raw_batches") == [(FILES,)]


def test_a_file_failing_for_a_while_fails_its_step_at_the_end_and_the_retry_stages_only_it(
    definitions, s3, buckets: dict[str, str], warehouse_engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    """The store answers one file's download with 503 (as after its own retries): the run's other files are staged,
    the step fails naming that file as transient (so its retry policy runs it again), and the retry stages it while
    the ledger skips the rest."""
    batch_ids = drop(s3, buckets["landing"], 5)
    failing = f"{PREFIX}part-00002.jsonl"
    real = landing_ingest.fetch_landing_object
    outage = {"left": 1}

    def store_down_for_one_file(client, engine, obj, known, **arguments):
        if obj.key == failing and outage["left"]:
            outage["left"] -= 1
            error = {"Error": {"Code": "SlowDown", "Message": "Reduce your rate."}}
            raise ClientError(error | {"ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
        return real(client, engine, obj, known, **arguments)

    monkeypatch.setattr(landing_ingest, "fetch_landing_object", store_down_for_one_file)
    files = [
        LandingFile(key=key, etag=batch_id.rsplit("#", 1)[1], size=0) for key, batch_id in sorted(batch_ids.items())
    ]
    resources = {name: definitions.resources[name] for name in ("object_store", "ingest_warehouse", "settings")}

    def attempt() -> dict[str, dg.MaterializeResult]:
        with dg.build_asset_context() as context:
            results = ingest_landing_file(context, config=LandingFileConfig(files=files), **resources)
            return {str(result.asset_key.path[-1]): result for result in results}

    with pytest.raises(TransientFailure) as failed:
        attempt()
    assert "SlowDown, HTTP 503" in str(failed.value) and f"1 of 5 files failed: {failing}" in str(failed.value)
    staged = rows(warehouse_engine, "SELECT batch_id FROM raw_batches WHERE staged_at IS NOT NULL ORDER BY 1")
    assert staged == [(batch_id,) for key, batch_id in sorted(batch_ids.items()) if key != failing]

    retried = attempt()["staging_events"].metadata
    assert (retried["rows written"].value, retried["rows already staged"].value) == (EVENTS_A_FILE, 4 * EVENTS_A_FILE)
    assert (retried["files"].value, retried["rows quarantined"].value) == (5, 0)
    assert rows(warehouse_engine, "SELECT count(*) FROM raw_batches WHERE staged_at IS NOT NULL") == [(5,)]


def test_a_sweep_does_not_ask_again_for_files_of_a_run_that_has_not_succeeded_but_does_for_new_bytes(
    definitions, s3, buckets: dict[str, str]
):
    batch_ids = drop(s3, buckets["landing"], 3)
    with pipeline(definitions) as run:
        [request] = run.tick("landing_files_sensor")
        job = definitions.resolve_job_def("ingest_landing_file_job")
        queued = run.instance.create_run_for_job(job, run_config=request.run_config, tags=request.tags)
        assert queued.status == dg.DagsterRunStatus.NOT_STARTED  # asked for, not run yet: none of its files staged
        overdue = json.loads(run.cursors["landing_files_sensor"]) | {"last_sweep": 0.0}
        assert run.tick("landing_files_sensor", cursor=json.dumps(overdue)) == []

        key = f"{PREFIX}part-00001.jsonl"
        s3.put_object(Bucket=buckets["landing"], Key=key, Body=body(1) + body(1000))  # new bytes, a new batch
        [reupload] = run.tick("landing_files_sensor", cursor=json.dumps(overdue))
        [obj] = requested_objects(reupload.run_config)
        assert obj.key == key and obj.batch_id != batch_ids[key]
        assert reupload.run_key == obj.batch_id and reupload.tags["etl/landing_key"] == key


def test_after_three_files_in_a_row_fail_for_good_the_run_stops_trying_and_fails_without_retries(
    definitions, s3, buckets: dict[str, str], warehouse_engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    """Every file refused for good (as when the archive bucket refuses the platform's credentials): the run stops
    after three failures in a row (and those already under way), and fails at once, naming the files not tried."""
    batch_ids = drop(s3, buckets["landing"], 12)
    tried: list[str] = []

    def archive_refused(client, engine, obj, known, **arguments):
        tried.append(obj.key)
        error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        raise ClientError(error | {"ResponseMetadata": {"HTTPStatusCode": 403}}, "CopyObject")

    monkeypatch.setattr(landing_ingest, "fetch_landing_object", archive_refused)
    files = [LandingFile(key=key, etag=batch_id.rsplit("#", 1)[1]) for key, batch_id in sorted(batch_ids.items())]
    resources = {name: definitions.resources[name] for name in ("object_store", "ingest_warehouse", "settings")}
    with dg.build_asset_context() as context, pytest.raises(dg.Failure) as failed:
        list(ingest_landing_file(context, config=LandingFileConfig(files=files), **resources))
    assert 3 <= len(tried) <= 3 + ingest.FILES_AT_ONCE - 1
    message = str(failed.value.description)
    assert message.startswith("the object store refused the request (AccessDenied, HTTP 403)")
    assert f"{len(tried)} of 12 files failed" in message and f"{12 - len(tried)} not tried" in message
    assert failed.value.allow_retries is False
    assert rows(warehouse_engine, "SELECT count(*) FROM raw_batches") == [(0,)]


def _ingest_run(s3, buckets: dict[str, str], engine: Engine, keys: list[str]) -> list[landing_ingest.FileOutcome]:
    """The files of one run through ``ingest_landing_objects``, the first one fetched last: its fetch waits until
    every other file's fetch has returned, so all of them are ready to stage together when it is."""
    real = landing_ingest.fetch_landing_object
    others_fetched = threading.Semaphore(0)

    def first_fetched_last(client, engine, obj, known, **arguments):
        if obj.key == keys[0]:
            for _ in keys[1:]:
                assert others_fetched.acquire(timeout=60), "the other files' fetches never returned"
            return real(client, engine, obj, known, **arguments)
        try:
            return real(client, engine, obj, known, **arguments)
        finally:
            others_fetched.release()

    objects = []
    for key in keys:
        head = s3.head_object(Bucket=buckets["landing"], Key=key)
        objects.append(LandingObject(key, head["ETag"].strip('"'), head["ContentLength"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(landing_ingest, "fetch_landing_object", first_fetched_last)
        return list(
            landing_ingest.ingest_landing_objects(
                s3,
                engine,
                objects,
                landing_bucket=buckets["landing"],
                archive_bucket=buckets["archive"],
                reading=landing_ingest.Reading.of(ACCEPTED),
                at_once=len(keys),
                give_up_after=ingest.FAILED_IN_A_ROW_LIMIT,
            )
        )


def _event(event_id: str, event_type: str) -> bytes:
    record = {"id": event_id, "type": event_type, "timestamp": "2025-09-20T10:00:00Z", "user_id": "u1"}
    return json.dumps(record).encode() + b"\n"


def test_files_of_a_run_stage_together_in_the_runs_order_so_the_later_files_version_of_an_event_wins(
    s3, buckets: dict[str, str], warehouse_engine: Engine
):
    keys = [f"{PREFIX}part-{number:05d}.jsonl" for number in range(4)]
    s3.put_object(Bucket=buckets["landing"], Key=keys[0], Body=_event("same", "page_view") + body(0))
    for number, key in enumerate(keys[1:-1], 1):
        s3.put_object(Bucket=buckets["landing"], Key=key, Body=body(number))
    s3.put_object(Bucket=buckets["landing"], Key=keys[-1], Body=body(3) + _event("same", "add_to_cart"))

    outcomes = _ingest_run(s3, buckets, warehouse_engine, keys)

    assert [outcome.obj.key for outcome in outcomes] == keys
    assert [outcome.ingested.counts.staged for outcome in outcomes] == [4, 3, 3, 4]
    versions = rows(warehouse_engine, "SELECT batch_id FROM staging_events WHERE event_id = 'same' ORDER BY id")
    assert [batch_id.split("#")[0] for (batch_id,) in versions] == [keys[0], keys[-1]]  # the later file's is newer
    # fetched by the time the first one was: staged in one transaction, each still a batch of its own
    assert rows(
        warehouse_engine, "SELECT count(*), count(DISTINCT xmin::text) FROM raw_batches WHERE staged_at IS NOT NULL"
    ) == [(4, 1)]


def test_a_file_whose_rows_the_database_refuses_fails_alone_and_the_files_staged_beside_it_load(
    s3, buckets: dict[str, str], warehouse_engine: Engine
):
    keys = [f"{PREFIX}part-{number:05d}.jsonl" for number in range(4)]
    for number, key in enumerate(keys):
        s3.put_object(Bucket=buckets["landing"], Key=key, Body=body(number))
    refused = keys[2]
    with warehouse_engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.batch_id LIKE '{refused}#%' THEN RAISE EXCEPTION 'rows of this file refused'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_rows BEFORE INSERT ON staging_events FOR EACH ROW EXECUTE FUNCTION refuse_rows()"
            )
        )

    outcomes = _ingest_run(s3, buckets, warehouse_engine, keys)

    assert [outcome.obj.key for outcome in outcomes] == keys
    [failed] = [outcome for outcome in outcomes if outcome.error is not None]
    assert failed.obj.key == refused and "rows of this file refused" in str(failed.error)
    staged = rows(warehouse_engine, "SELECT batch_id FROM raw_batches WHERE staged_at IS NOT NULL ORDER BY 1")
    assert [batch_id.split("#")[0] for (batch_id,) in staged] == [key for key in keys if key != refused]
    assert rows(warehouse_engine, "SELECT count(*) FROM staging_events") == [(3 * EVENTS_A_FILE,)]
    assert rows(warehouse_engine, f"SELECT count(*) FROM raw_batches WHERE batch_id LIKE '{refused}#%'") == [(0,)]
