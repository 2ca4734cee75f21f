"""Readers of the sources: landing files in S3 and their ingest into staging, the cursor-paginated HTTP events
API, the raw archive of every byte that entered, and the replay of archived batches."""
