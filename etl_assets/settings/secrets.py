"""Readers of the secrets: each reads its variable when a part of the platform needs it, checks it, and never
puts its value in ``Settings``, in a message or in a log (an error names an entry by its position)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from etl_assets.settings.declare import ConfigError
from etl_assets.transform.inbound import SEGMENT_SOURCE

SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
PII_KEY_MIN_CHARS = 16


def segment_write_keys(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write key → the source its events come from, from ``ETL_SEGMENT_WRITE_KEYS`` (secrets: read by the collector
    at start, never stored in Settings, never in a message; an error names an entry by its position).

    ``key=name`` entries (or a JSON object ``{"key": "name"}``) give source ``segment:name``; a bare key gives
    ``segment``, the one source of every key before keys had names.
    """
    env = os.environ if env is None else env
    raw = env.get("ETL_SEGMENT_WRITE_KEYS", "").strip()
    if raw.startswith("{"):
        try:
            entries = json.loads(raw)
        except ValueError:
            raise ConfigError(
                'ETL_SEGMENT_WRITE_KEYS starts with "{" but is not a JSON object: write {"key": "name", …}'
            ) from None
        if not all(isinstance(key, str) and isinstance(name, str) for key, name in entries.items()):
            raise ConfigError('ETL_SEGMENT_WRITE_KEYS as JSON maps keys to names, both strings: {"key": "name", …}')
        pairs = [(key.strip(), name.strip(), True) for key, name in entries.items()]
    else:
        pairs = []
        for entry in filter(None, (entry.strip() for entry in raw.split(","))):
            key, separator, name = entry.partition("=")
            pairs.append((key.strip(), name.strip(), bool(separator)))
    keys: dict[str, str] = {}
    for position, (key, name, named) in enumerate(pairs, start=1):
        if not key:
            raise ConfigError(f"ETL_SEGMENT_WRITE_KEYS entry {position} has no key: write key=name, comma-separated")
        if named and not SOURCE_NAME.fullmatch(name):
            raise ConfigError(
                f"ETL_SEGMENT_WRITE_KEYS entry {position} names its source {name!r}: a source name is 1-63 letters, "
                "digits, '.', '_' or '-', starting with a letter or digit"
            )
        source = f"{SEGMENT_SOURCE}:{name}" if named else SEGMENT_SOURCE
        if keys.get(key, source) != source:
            raise ConfigError(
                f"ETL_SEGMENT_WRITE_KEYS entry {position} repeats an earlier key with another source: "
                "a key belongs to one source"
            )
        keys[key] = source
    return keys


def webhook_secrets(env: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """Partner → its secrets, from ``ETL_WEBHOOK_SECRETS`` (``partner=secret,…``)."""
    env = os.environ if env is None else env
    secrets: dict[str, tuple[str, ...]] = {}
    for entry in env.get("ETL_WEBHOOK_SECRETS", "").split(","):
        if not entry.strip():
            continue
        partner, separator, secret = entry.strip().partition("=")
        if not separator or not partner or not secret:
            raise ConfigError(
                f"ETL_WEBHOOK_SECRETS has an entry {partner or entry.strip()!r} without a secret: "
                "write entries as partner=secret, comma-separated"
            )
        secrets[partner] = (*secrets.get(partner, ()), secret)
    return secrets


def alert_webhook_url(env: Mapping[str, str] | None = None) -> str | None:
    """The alert webhook URL (a secret: read when needed, never stored in config or shown, even when wrong)."""
    raw = (os.environ if env is None else env).get("ETL_ALERT_WEBHOOK_URL")
    if raw in (None, ""):
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(
            "ETL_ALERT_WEBHOOK_URL is not a URL (its value is a secret and not shown): write it as https://host/path"
        )
    return raw


def pii_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key that pseudonymizes PII (a secret: read when a run needs it, never stored in Settings or shown)."""
    raw = (os.environ if env is None else env).get("ETL_PII_KEY")
    if raw in (None, ""):
        return None
    if len(raw) < PII_KEY_MIN_CHARS:
        raise ConfigError(
            f"ETL_PII_KEY is shorter than {PII_KEY_MIN_CHARS} characters (its value is a secret and not shown): "
            "set it to a long random secret, e.g. the output of `openssl rand -hex 32`"
        )
    return raw.encode()
