"""What operators read: structured logs, the pipeline's counters, the platform's status and alerts."""
