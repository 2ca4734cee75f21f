"""Configuration read from the environment, validated once, in one place.

Each setting is declared once, as a field of its area (``local``, ``database``, ``storage``, ``pipeline``,
``privacy``, ``sources``, ``checks``): its variable, parser, default and help. ``Settings`` is every area at once;
the registry (``VARIABLES``, shown by ``etl config``) and the README's configuration table derive from the same
declarations (see ``declare``). Values are parsed here so that a bad one fails early with one line that says what
is wrong and what to do, instead of a traceback deep inside a run. Secrets are read only where they are needed, by
the readers in ``secrets``.
"""

from etl_assets.settings.checks import ChecksSettings, QualitySettings
from etl_assets.settings.database import (
    SSL_MODES,
    DatabaseSettings,
    parse_database_url,
    redact,
    with_driver,
    with_ssl,
)
from etl_assets.settings.declare import ConfigError, Section, Setting
from etl_assets.settings.local import PROJECT_ROOT, LocalSettings
from etl_assets.settings.pipeline import PipelineSettings
from etl_assets.settings.platform import Settings, definition_settings
from etl_assets.settings.privacy import PrivacySettings, pii_policy
from etl_assets.settings.registry import SECRET_VARIABLES, VARIABLES, Variable, printable_value, readme_table
from etl_assets.settings.secrets import alert_webhook_url, pii_key, segment_write_keys, webhook_secrets
from etl_assets.settings.sources import CollectorSettings, EventsApiSettings
from etl_assets.settings.storage import S3ClientCredentials, StorageSettings

__all__ = [
    "PROJECT_ROOT",
    "SECRET_VARIABLES",
    "SSL_MODES",
    "VARIABLES",
    "ChecksSettings",
    "CollectorSettings",
    "ConfigError",
    "DatabaseSettings",
    "EventsApiSettings",
    "LocalSettings",
    "PipelineSettings",
    "PrivacySettings",
    "QualitySettings",
    "S3ClientCredentials",
    "Section",
    "Setting",
    "Settings",
    "StorageSettings",
    "Variable",
    "alert_webhook_url",
    "definition_settings",
    "parse_database_url",
    "pii_key",
    "pii_policy",
    "printable_value",
    "readme_table",
    "redact",
    "segment_write_keys",
    "webhook_secrets",
    "with_driver",
    "with_ssl",
]
