"""`etl bench` at a tiny size: every path and reference runs on the same rows, and the report adds up.

The figures themselves are not judged here (a timing never decides a test): the test checks that each path
did the work it names, that each reference loaded exactly the rows the platform wrote, and that every ratio
is the quotient of the two rates it reports.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EVENTS = 2_000
SMALL_FILES = 30


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory) -> tuple[dict, str]:
    output = tmp_path_factory.mktemp("bench") / "bench.json"
    arguments = ["--events", str(EVENTS), "--repeat", "1", "--tutorial-events", "1000", "--sensor-objects", "3000"]
    arguments += ["--small-files", str(SMALL_FILES)]
    arguments += ["--memory-events", "2000,4000", "--output", str(output)]
    finished = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "bench", *arguments],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(output.read_text()), finished.stdout


def test_each_platform_path_does_the_work_it_names(bench_report):
    paths = bench_report[0]["paths"]
    assert paths["stage"]["rows"] == EVENTS and paths["stage"]["details"]["staged"] == EVENTS
    assert paths["merge"]["details"]["inserted"] == EVENTS
    assert paths["whole"]["details"]["inserted"] == EVENTS
    assert paths["again"]["details"]["staged"] == 0 and paths["again"]["details"]["inserted"] == 0
    resent = paths["resent"]["details"]  # the same events in another file: already in events, nothing staged
    assert (resent["staged"], resent["already in events"], resent["inserted"]) == (0, EVENTS, 0)
    assert paths["enrichment"]["details"]["written"] > 0
    assert paths["orm"]["rows"] == paths["core"]["rows"] == 1000
    assert {paths["memory-2000"]["rows"], paths["memory-4000"]["rows"]} == {2000, 4000}
    for workers in (1, 2, 4):  # the same four staged days, merged one, two and four at a time
        merged = paths[f"merge_{workers}"]["details"]
        assert (merged["inserted"], merged["days"], merged["workers"]) == (EVENTS, 4, workers)


def test_the_time_split_names_the_steps_of_staging_and_of_the_merge(bench_report):
    paths, stdout = bench_report[0]["paths"], bench_report[1]
    assert {"parse", "transform"} <= set(paths["stage"]["details"]["split"])
    assert {"read", "ledger", "upsert", "identity"} <= set(paths["merge"]["details"]["split"])
    assert "split      landing file → staging" in stdout and "split      staging → events merge" in stdout
    assert "parallel   day merges at once, speed-up over one at a time: 2 at a time" in stdout


def test_the_cpu_seconds_of_the_path_and_of_the_server_give_the_floor_on_this_machine(bench_report):
    paths, stdout = bench_report[0]["paths"], bench_report[1]
    for key in ("stage", "merge", "whole"):
        spent = paths[key]["details"]["cpu"]
        assert spent["python"] > 0 and spent["postgresql"] > 0, (key, spent)
    assert "cpu        whole file → events" in stdout and "cores no less than" in stdout


def test_small_files_and_one_file_of_the_same_events_go_through_the_sensor_runs_and_merge(bench_report):
    paths = bench_report[0]["paths"]
    one, small = paths["one_file"]["details"], paths["small_files"]["details"]
    events = SMALL_FILES * 100
    assert paths["one_file"]["rows"] == paths["small_files"]["rows"] == events
    assert one["inserted"] == small["inserted"] == events
    assert (one["files"], one["runs"]) == (1, 1)
    assert small["files"] == SMALL_FILES and small["runs"] == 1  # 30 files fit in one run of up to 200
    assert small["ticks"] == one["ticks"] == 2  # a tick that asks for the runs, one that finds nothing more


def test_the_references_load_exactly_the_rows_the_platform_wrote(bench_report):
    paths = bench_report[0]["paths"]
    assert paths["copy_staging"]["rows"] == paths["stage"]["details"]["staged"]
    assert paths["copy_events"]["rows"] == paths["merge"]["details"]["inserted"]


def test_each_ratio_is_the_path_rate_over_its_reference_rate(bench_report):
    paths = bench_report[0]["paths"]
    for key in ("stage", "merge", "whole", "enrichment", "orm", "core"):
        reference = paths[paths[key]["reference"]]
        expected = paths[key]["rows_per_second"] / reference["rows_per_second"]
        assert paths[key]["ratio_to_reference"] == pytest.approx(expected, abs=1e-3)  # rounded to 3 places


def test_the_report_names_every_target_and_the_sensor_ticks(bench_report):
    report, stdout = bench_report
    names = [target["name"] for target in report["targets"]]
    assert names[:5] == [
        "landing → staging",
        "staging → events merge",
        "whole file → events",
        "the same file again",
        "the same events re-sent in another file",
    ]
    assert any(name.startswith("peak memory at 4,000 vs 2,000") for name in names)
    assert any(name.startswith("sensor tick, nothing new, 3,000 objects") for name in names)
    assert all(target["value"] is not None and target["met"] in (True, False) for target in report["targets"])
    assert report["sensor"]["new_files_requested"] == report["sensor"]["new_objects"] == 1000
    assert report["sensor"]["new_runs_requested"] == 5  # up to 200 files a run
    assert any(name.startswith(f"{SMALL_FILES} small files vs one file") for name in names)
    assert report["machine"]["cpus"] and report["machine"]["postgresql"]
    assert "psql \\copy into staging" in stdout and "landing file → staging" in stdout
