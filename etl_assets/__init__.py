"""The events platform: e-commerce events into PostgreSQL, exactly once, orchestrated by Dagster."""
