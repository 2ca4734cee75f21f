"""What operators read: structured logs and the pipeline's counters."""
