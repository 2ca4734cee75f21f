"""What the Dagster definitions share that is not itself a definition: the days of the daily partitions and the
timestamps they accept, which days a merge run takes, which runs are in flight, when a failed merge is tried again,
the metadata a table or a materialization shows, how a step fails (retried when the outside error is transient; at
once for a permanent one or a missing PII key).

These modules use Dagster's types; ``dagster.load_from_defs_folder`` never loads them, and they define no asset,
check, sensor or job (those live in ``etl_assets.defs``).
"""
