"""Every variable the platform reads, derived from the declarations: for ``etl config``, for printing values
safely, and for the README's configuration table (a test checks the README against ``readme_table``)."""

from __future__ import annotations

from etl_assets.settings.database import parse_database_url, postgres_url, redact
from etl_assets.settings.declare import ConfigError, Setting, declarations
from etl_assets.settings.platform import Settings

Variable = Setting

VARIABLES: tuple[Setting[object], ...] = tuple(declarations(Settings))

DATABASE_URL_VARIABLES = tuple(variable.name for variable in VARIABLES if variable.parse is postgres_url)

SECRET_VARIABLES = frozenset((*(variable.name for variable in VARIABLES if variable.secret), "AWS_SECRET_ACCESS_KEY"))


def printable_value(name: str, raw: str) -> str:
    """A variable's value as it may be printed: database URLs without their password, secrets not at all."""
    if name in DATABASE_URL_VARIABLES:
        try:
            return redact(parse_database_url(raw, name))
        except ConfigError:
            return "(not a valid URL)"
    if name in SECRET_VARIABLES:
        return "(set; a secret, not shown)"
    return raw


def readme_table() -> str:
    """The README's configuration table, one row a variable."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for variable in VARIABLES:
        default = variable.default_text
        shown = default if default.startswith("unset") else f"`{default}`"
        rows.append(f"| `{variable.name}` | {shown} | {variable.help} |")
    return "\n".join(rows)
