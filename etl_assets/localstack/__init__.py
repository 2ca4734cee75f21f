"""The local platform's services: embedded PostgreSQL, a local S3 endpoint, Dagster, supervised by `etl dev`."""
