"""The data checks, freshness and alerts: the thresholds of the checks, when silence warns and fails, where
failures are posted."""

from __future__ import annotations

from dataclasses import dataclass

from etl_assets.settings.declare import ConfigError, Section, secret_configured, section, setting
from etl_assets.settings.parsers import http_url, integer, share
from etl_assets.settings.secrets import alert_webhook_url

minutes = integer(minimum=1, maximum=60 * 24 * 30, kind="a number of minutes")


@dataclass(frozen=True)
class QualitySettings(Section):
    """Thresholds of the data checks (see ``etl_assets.quality.day_checks``)."""

    max_rejected_share: float = setting(
        "ETL_QUALITY_MAX_REJECTED_SHARE",
        share,
        default="0.05",
        help="Share of a source's staged rows of a day the transform may reject (each reason on its own) before the "
        "staging gate holds that source back for the day (its rows wait; the other sources merge); below it, "
        "rejected rows are quarantined and the check warns.",
    )
    min_rows: int = setting(
        "ETL_QUALITY_MIN_ROWS",
        integer(minimum=1, maximum=10_000_000, kind="a whole number"),
        default="100",
        help="Rows a share-based rule (rejected share, null share, missing currency) needs before it can fail: on "
        "fewer rows a share means little, so breaking it only warns.",
    )
    max_null_share: float = setting(
        "ETL_QUALITY_MAX_NULL_SHARE",
        share,
        default="0.5",
        help="Share of a day's events a nullable column (session, product on product events, page URL on page "
        "views) may leave empty before its check warns.",
    )
    max_currency_missing_share: float = setting(
        "ETL_QUALITY_MAX_CURRENCY_MISSING_SHARE",
        share,
        default="0.01",
        help="Share of a day's priced purchases that may lack an ISO 4217 currency: above it the events check fails "
        "with ERROR (blocking enrichment), at or below it warns.",
    )
    future_skew_minutes: int = setting(
        "ETL_QUALITY_FUTURE_SKEW_MINUTES",
        integer(minimum=0, maximum=7 * 24 * 60, kind="a whole number"),
        default="5",
        help="How far in the future of the check's clock an event's time may be before the events check warns.",
    )
    chunk_rows: int = setting(
        "ETL_QUALITY_CHUNK_ROWS",
        integer(minimum=100, maximum=10_000_000, kind="a whole number"),
        default="20000",
        help="Rows a data check holds in memory at once; a larger day is read and checked chunk by chunk.",
    )
    sample_rows: int = setting(
        "ETL_QUALITY_SAMPLE_ROWS",
        integer(minimum=100, maximum=100_000_000, kind="a whole number"),
        default="200000",
        help="Staged rows the staging check runs through the transform per day; a larger day is checked on an even "
        "sample of that size (the check says so).",
    )
    drift_min_rows: int = setting(
        "ETL_DRIFT_MIN_ROWS",
        integer(minimum=1, maximum=10_000_000, kind="a whole number"),
        default="20",
        help="Rows a source must have sent in a day before a field it stopped sending is reported as vanished.",
    )


@dataclass(frozen=True)
class ChecksSettings(Section):
    quality: QualitySettings = section(QualitySettings)
    freshness_warn_minutes: int = setting(
        "ETL_FRESHNESS_WARN_MINUTES",
        minutes,
        default="30",
        help="A source silent this long, or events and the daily tables not updated for this long, warn.",
    )
    freshness_fail_minutes: int = setting(
        "ETL_FRESHNESS_FAIL_MINUTES",
        minutes,
        default="120",
        help="A source silent this long fails its freshness check; events and the daily tables turn stale (fail).",
    )
    alert_webhook_configured: bool = secret_configured(
        "ETL_ALERT_WEBHOOK_URL",
        alert_webhook_url,
        help="Incoming-webhook URL (Slack's JSON shape) that failed checks and failed runs are posted to (a secret, "
        "read when the alert sensor runs). Unset: no alert is sent, and the sensor's log says so once.",
    )
    ui_url: str | None = setting(
        "ETL_UI_URL",
        http_url,
        help="Base URL of the Dagster UI used for links in alerts. Unset: http://127.0.0.1:`ETL_UI_PORT`.",
    )

    def _check(self) -> None:
        if self.freshness_warn_minutes >= self.freshness_fail_minutes:
            raise ConfigError(
                f"ETL_FRESHNESS_WARN_MINUTES={self.freshness_warn_minutes} is not below "
                f"ETL_FRESHNESS_FAIL_MINUTES={self.freshness_fail_minutes}: warn before failing"
            )
