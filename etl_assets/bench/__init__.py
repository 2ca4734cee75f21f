"""``etl bench``: the platform's load paths measured against PostgreSQL's own COPY, on the same server, in one run.

``workload`` makes the seeded input, ``paths`` runs one measured path in a process of its own (so each path's
peak memory is its own), ``references`` runs psql's ``\\copy``, ``sensor`` times the S3 sensor's ticks,
``runner`` puts them in order, and ``report`` prints the table, the JSON and the targets.
"""
