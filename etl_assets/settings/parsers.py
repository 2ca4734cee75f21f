"""Parsers of raw environment values: each takes the variable's name and its value and returns what it means, or
raises ``ConfigError`` with one line that says what is wrong and what to do."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from etl_assets.settings.declare import ConfigError


def integer(*, minimum: int, maximum: int, kind: str) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r} is not {kind}: set it to an integer between {minimum} and {maximum}"
            ) from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value} is out of range: set it to an integer between {minimum} and {maximum}")
        return value

    return parse


port = integer(minimum=1, maximum=65535, kind="a port number")
count = integer(minimum=0, maximum=10_000, kind="a whole number")


def flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name}={raw!r} is not true or false: set it to true or false")
    return value in ("true", "1", "yes")


def share(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={raw!r} is not a share: set it to a number between 0 and 1, like 0.05")
    return value


def day(name: str, raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a date: write it as YYYY-MM-DD") from None


def http_url(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r} is not a URL: write it as http(s)://host:port/path")
    return raw


def text(name: str, raw: str) -> str:
    return raw


def folder(name: str, raw: str) -> Path:
    """A path made absolute (``~`` and ``..`` resolved)."""
    return Path(raw).expanduser().resolve()


def path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def names(check: Callable[[str, str], None]) -> Callable[[str, str], tuple[str, ...] | None]:
    """A comma-separated list, blanks and repeats dropped, each entry passed through ``check``; an empty list says
    nothing (the default applies)."""

    def parse(name: str, raw: str) -> tuple[str, ...] | None:
        entries = tuple(dict.fromkeys(entry.strip() for entry in raw.split(",") if entry.strip()))
        for entry in entries:
            check(name, entry)
        return entries or None

    return parse
