"""Personal data and retention: which fields are PII, the key that pseudonymizes them, how long data is kept."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from etl_assets.settings.declare import ConfigError, Section, read_field, secret_configured, setting
from etl_assets.settings.parsers import integer, names
from etl_assets.settings.secrets import pii_key
from etl_assets.transform.pii import PiiPolicy


def _field_name(name: str, field: str) -> None:
    if not field.replace("_", "").replace("-", "").isalnum() or not field.isascii() or not field[0].isalpha():
        raise ConfigError(
            f"{name} names {field!r}, which is not a field name: list names like email,ip,phone "
            "(each is matched at any depth, so write ip, not context.ip)"
        )


@dataclass(frozen=True)
class PrivacySettings(Section):
    pii_fields: tuple[str, ...] = setting(
        "ETL_PII_FIELDS",
        names(_field_name),
        default="email,ip,phone",
        help="Comma-separated names of personal-data fields, pseudonymized (keyed HMAC) before anything reaches "
        "`events`. A key at any depth matches a name when, in snake_case and any case, it equals it, starts with "
        "`<name>_` or ends with `_<name>` (`email` matches `email_address`, `userEmail`, `traits.email`; `ip` "
        "matches `context.ip`, `ip_address`; not `zip`). With `email` (`ip`) listed, email addresses inside any "
        "string (IP addresses as whole strings) are pseudonymized too, whatever their key.",
    )
    pii_key_configured: bool = secret_configured(
        "ETL_PII_KEY",
        pii_key,
        help="Secret HMAC key (16+ characters, e.g. `openssl rand -hex 32`) that pseudonymizes the ETL_PII_FIELDS; "
        "read when records are staged and when a merge runs, never shown. Changing it changes every pseudonym. "
        "Unset: `etl dev` uses a local demo key; elsewhere records holding PII are staged untransformed and their "
        "day's merge fails and loads nothing until it is set.",
    )
    retention_days: int = setting(
        "ETL_RETENTION_DAYS",
        integer(minimum=1, maximum=36_500, kind="a number of days"),
        default="90",
        help="Age in days past which `retention_job` deletes staging rows merges have read (never pending ones) and "
        "raw archive objects; the batches stay in the ledger, marked pruned.",
    )


def pii_policy(env: Mapping[str, str] | None = None) -> PiiPolicy:
    """What counts as PII (``ETL_PII_FIELDS``) and the key that pseudonymizes it (``ETL_PII_KEY``), as ingest and
    the merge read them from the environment when they need them."""
    env = os.environ if env is None else env
    return PiiPolicy(read_field(PrivacySettings, "pii_fields", env), pii_key(env))
