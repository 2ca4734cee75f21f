"""Benchmarks: ``etl bench`` and the scripts beside it; ``README.md`` here holds the figures and how to reproduce
them.

``etl bench`` measures the platform's load paths against PostgreSQL's own COPY, on the same server, in one run:
``runner`` makes the seeded input and puts the paths in order, ``paths`` runs one measured path in a process of
its own (so each path's peak memory is its own), ``cpu`` counts the CPU seconds a path costs, ``references`` runs
psql's ``\\copy``, ``sensor`` times the S3 sensor's ticks, and ``report`` prints the table, the JSON and the
targets.

Run on their own (``uv run python -m etl_assets.bench.<name> --help``): ``profile_transform``, the transform
chain's cost per record, stage by stage, with no database; ``collector_load``, the collector under a sustained
load from a process of its own; ``live_latency``, from the collector's 200 to the event being queryable in
``events``. The last two run against a running ``etl dev``.
"""
