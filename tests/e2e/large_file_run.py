"""Run one landing object through ingest and the merge of its days in this process; print the peak RSS.

Started as its own process by test_large_file.py, so the figure is the run process's alone: its own high-water
mark (``VmHWM``), not ``ru_maxrss``, which carries the parent's peak from before ``exec`` (an xdist worker that
has run other tests).
"""

import json
import sys
import time

import dagster as dg

from etl_assets.bench.paths import peak_rss_mb
from etl_assets.definitions import defs
from etl_assets.sources.landing import LandingObject


def main(key: str, etag: str, size: int, first_day: str, last_day: str) -> None:
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    obj = LandingObject(key, etag, size)
    ingest = definitions.resolve_job_def("ingest_landing_file_job").execute_in_process(
        run_config={"ops": {"ingest_landing_file": {"config": {"key": obj.key, "etag": obj.etag, "size": obj.size}}}}
    )
    staged = time.perf_counter()
    merge = definitions.resolve_job_def("daily_events_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first_day, "dagster/asset_partition_range_end": last_day},
    )
    finished = time.perf_counter()
    print(
        json.dumps(
            {
                "success": ingest.success and merge.success,
                "peak_rss_mb": peak_rss_mb(),
                "staging_seconds": round(staged - started, 1),
                "merge_and_enrichment_seconds": round(finished - staged, 1),
                "step_seconds": {
                    stats.step_key: round(stats.end_time - stats.start_time, 1)
                    for stats in instance.get_run_step_stats(merge.run_id)
                    if stats.end_time and stats.start_time
                },
                "checks": {
                    evaluation.check_name: "passed" if evaluation.passed else evaluation.severity.value
                    for evaluation in merge.get_asset_check_evaluations()
                },
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
