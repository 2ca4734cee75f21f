"""Readers of the sources: landing files in S3 (and their raw archive); later the HTTP events API."""
