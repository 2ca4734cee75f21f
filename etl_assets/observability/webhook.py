"""Posting a message to the alert webhook: a session that retries what may pass on a second try, and errors
and log lines that never show the URL (its path is the secret)."""

import logging
import os
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from etl_assets.observability.alert_message import truncate

WEBHOOK_VARIABLE = "ETL_ALERT_WEBHOOK_URL"
POST_TIMEOUT_SECONDS = 10
POST_RETRIES = 3
RETRIED_STATUSES = (429, 500, 502, 503, 504)
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager")


class DeliveryError(Exception):
    """The webhook did not take a message; the text names no URL."""


class HideWebhookUrl(logging.Filter):
    """urllib3 logs the path of every request (at DEBUG) and of every retry after a broken connection (at
    WARNING); the webhook's path is its secret, so its records show the variable's name in its place."""

    def filter(self, record: logging.LogRecord) -> bool:
        url = os.environ.get(WEBHOOK_VARIABLE, "")
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        secrets = [value for value in (url, path) if value not in ("", "/")]
        if not secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:
            return True
        if any(secret in text for secret in secrets):
            for secret in secrets:
                text = text.replace(secret, f"<{WEBHOOK_VARIABLE}>")
            record.msg, record.args = text, None
        return True


_HIDE_WEBHOOK_URL = HideWebhookUrl()


def hide_webhook_url_in_logs() -> None:
    """Put ``HideWebhookUrl`` on urllib3's loggers; a logger holds a filter once, however often it is added."""
    for name in URLLIB3_LOGGERS:
        logging.getLogger(name).addFilter(_HIDE_WEBHOOK_URL)


def webhook_session() -> requests.Session:
    """A session for the webhook; urllib3's log lines about its requests show the variable's name, not the URL."""
    hide_webhook_url_in_logs()
    # Retry-After is not obeyed: it could hold the tick past its timeout. A webhook still saying 429
    # after the backoff gets the message again on the next tick, 30 s later.
    retry = Retry(
        total=POST_RETRIES,
        backoff_factor=0.5,
        status_forcelist=RETRIED_STATUSES,
        allowed_methods=frozenset({"POST"}),
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def post_message(session: requests.Session, url: str, message: dict) -> None:
    try:
        response = session.post(url, json=message, timeout=POST_TIMEOUT_SECONDS)
    except requests.RequestException as error:
        # requests' own message names the URL, whose path is the webhook's secret.
        raise DeliveryError(f"the webhook could not be reached ({type(error).__name__})") from None
    if not response.ok:
        retried = f" after {POST_RETRIES} retries" if response.status_code in RETRIED_STATUSES else ""
        body = truncate(" ".join(response.text.split()), 100)
        raise DeliveryError(f"the webhook answered HTTP {response.status_code}{retried}: {body or '(empty body)'}")
