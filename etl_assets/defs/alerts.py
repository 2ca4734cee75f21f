"""Alerts: failed asset checks and failed runs, posted to an incoming webhook in Slack's JSON shape.

The sensor starts no runs. Its cursor holds the last event-log storage id it handled of each kind, so
a tick reads only what is new, and a message the webhook did not take is sent again on the next tick
(delivery is at least once). The webhook URL is a secret: it is read from the environment at tick
time and never logged, stored in the cursor or shown in an error.
"""

import dagster as dg

from etl_assets.observability.alert_message import slack_message
from etl_assets.observability.alerts import AlertCursor, check_alert, latest_cursor, pending_events, run_alert
from etl_assets.observability.webhook import WEBHOOK_VARIABLE, DeliveryError, post_message, webhook_session
from etl_assets.settings import ConfigError, Settings, alert_webhook_url


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Every 30 seconds, posts each new failed asset check (ERROR or WARN) and each failed run to the "
    f"incoming webhook in {WEBHOOK_VARIABLE} (Slack's message format); starts no runs. Starts from the newest "
    "events when first turned on; an undelivered message is sent again on the next tick.",
)
def quality_alerts_sensor(context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]) -> dg.SensorResult:
    instance = context.instance
    if instance.event_log_storage.is_run_sharded:
        return dg.SensorResult(
            skip_reason="alerts need an event log with global storage ids (the PostgreSQL storage of dagster.yaml); "
            "this instance's SQLite event log is sharded by run"
        )
    cursor = AlertCursor.parse(context.cursor) if context.cursor else latest_cursor(instance, unconfigured_noted=False)
    try:
        url = alert_webhook_url()
    except ConfigError:
        # The message would quote the value, and the value is the secret.
        return dg.SensorResult(
            cursor=cursor.serialize(),
            skip_reason=f"{WEBHOOK_VARIABLE} is not an http(s) URL: alerts wait until it is fixed",
        )
    if url is None:
        if not cursor.unconfigured_noted:
            context.log.info(
                f"Alerts are off: set {WEBHOOK_VARIABLE} to an incoming-webhook URL to post failed checks and runs"
            )
        return dg.SensorResult(
            cursor=latest_cursor(instance, unconfigured_noted=True).serialize(),
            skip_reason=f"alerts are off ({WEBHOOK_VARIABLE} is not set)",
        )

    cursor.unconfigured_noted = False
    posted = {"check": 0, "run": 0}
    with webhook_session() as session:
        for kind, record in pending_events(cursor, instance):
            alert = (
                check_alert(instance, record, settings) if kind == "check" else run_alert(instance, record, settings)
            )
            if alert is not None:
                try:
                    post_message(session, url, slack_message(alert))
                except DeliveryError as error:
                    context.log.warning(f"alert not delivered, sent again on the next tick: {alert.title}: {error}")
                    return dg.SensorResult(
                        cursor=cursor.serialize(),
                        skip_reason=f"{sum(posted.values())} alerts posted, then {error}; the rest wait for the "
                        "next tick",
                    )
                posted[kind] += 1
            if kind == "check":
                cursor.check_storage_id = record.storage_id
            else:
                cursor.run_storage_id = record.storage_id
    if any(posted.values()):
        context.log.info(f"posted {posted['check']} failed check(s) and {posted['run']} failed run(s)")
    return dg.SensorResult(
        cursor=cursor.serialize(),
        skip_reason=f"posted {posted['check']} failed check(s) and {posted['run']} failed run(s)",
    )
