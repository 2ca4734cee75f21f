"""How a setting is declared once and read from the environment.

A setting is one field of an area's frozen dataclass, declared with ``setting(...)``: its environment variable,
its parser, its default (written as a value of the variable) and its help. The field's default, the registry
(``etl config``), the README's configuration table and the parsing all come from that one declaration. A secret
the platform reads only when it needs it (never stored) is declared with ``secret(...)``, as a class attribute
among the fields.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, overload

T = TypeVar("T")
S = TypeVar("S", bound="Section")

Parser = Callable[[str, str], T | None]
"""``(variable name, raw value) -> value``; ``None`` when the value says nothing (the default applies). Raises
``ConfigError`` for a bad value."""

_order = itertools.count()


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line saying what to do."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: how it is parsed, its default and what it does."""

    name: str
    help: str
    parse: Parser[T] | None = None
    """``None``: a secret read only where it is needed, by its own reader."""
    default: str | None = None
    """The value used when the variable is unset, as it would be written in the environment."""
    shown_default: str | None = None
    """How the default is shown when it is not ``default`` itself (``<project>/.etl``, ``unset (false)``)."""
    fallbacks: tuple[str, ...] = ()
    """Variables read, in order, when this one is unset or empty (AWS's own spellings)."""
    keep_empty: bool = False
    """An empty value is a value (an empty key prefix), not unset."""
    secret: bool = False
    unset_value: T | None = None
    """The value when the variable is unset and there is no ``default`` to parse."""
    order: int = dataclasses.field(default_factory=lambda: next(_order), compare=False, repr=False)

    @property
    def default_text(self) -> str:
        """The default as ``etl config`` and the README show it."""
        return self.shown_default or self.default or "unset"

    def raw(self, env: Mapping[str, str]) -> str | None:
        for name in (self.name, *self.fallbacks):
            value = env.get(name)
            if value or (value == "" and self.keep_empty and name == self.name):
                return value
        return None

    def default_value(self) -> T | None:
        if self.parse is None or self.default is None:
            return self.unset_value
        return self.parse(self.name, self.default)

    def read(self, env: Mapping[str, str]) -> T | None:
        """The variable's value in ``env``, or the default's when it is unset or says nothing."""
        assert self.parse is not None, f"{self.name} is a secret read by its own reader"
        raw = self.raw(env)
        value = None if raw is None else self.parse(self.name, raw)
        return self.default_value() if value is None else value


@dataclass(frozen=True)
class _Section:
    """A nested area (``Settings.quality``), read as a whole where it is declared."""

    area: type[Section]
    order: int = dataclasses.field(default_factory=lambda: next(_order), compare=False)


@overload
def setting(
    name: str,
    parse: Parser[T],
    *,
    default: str,
    help: str,
    shown_default: str | None = None,
    fallbacks: tuple[str, ...] = (),
    keep_empty: bool = False,
) -> T: ...


@overload
def setting(
    name: str,
    parse: Parser[T],
    *,
    default: None = None,
    help: str,
    shown_default: str | None = None,
    fallbacks: tuple[str, ...] = (),
    keep_empty: bool = False,
) -> T | None: ...


def setting(
    name: str,
    parse: Parser[T],
    *,
    default: str | None = None,
    help: str,
    shown_default: str | None = None,
    fallbacks: tuple[str, ...] = (),
    keep_empty: bool = False,
) -> T | None:
    """A dataclass field read from the variable ``name``; its default is ``parse(default)`` (``None`` if unset)."""
    declared = Setting(name, help, parse, default, shown_default, fallbacks, keep_empty)
    value = declared.default_value()
    return dataclasses.field(default=value, metadata={"setting": declared})


def secret_configured(name: str, reader: Callable[[Mapping[str, str]], object], *, help: str) -> bool:
    """A field that says whether the secret ``name`` is set, after ``reader`` found it valid; the secret itself is
    never stored (its reader reads it where it is needed)."""

    def configured(variable: str, raw: str) -> bool:
        return reader({variable: raw}) is not None

    declared: Setting[bool] = Setting(name, help, configured, secret=True, unset_value=False)
    return dataclasses.field(default=False, metadata={"setting": declared})


def secret(name: str, *, help: str) -> Setting[str]:
    """A secret read only where it is needed, by its own reader: declared for the registry and the README."""
    return Setting(name, help, secret=True)


def section(area: type[S]) -> S:
    """A field holding a whole area of its own (``Settings.quality``)."""
    return dataclasses.field(default_factory=area, metadata={"section": _Section(area)})


class Section:
    """Base of an area's frozen dataclass of settings: ``from_env`` reads each declared field.

    An area may define ``_derived(env)`` (fields that are not settings, worked out from the environment) and
    ``_check(self)`` (rules across its fields); both run for every area a class is made of.
    """

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            if (declared := field.metadata.get("setting")) is not None:
                values[field.name] = declared.read(env)
            elif (nested := field.metadata.get("section")) is not None:
                values[field.name] = nested.area.from_env(env)
        for area in _areas(cls):
            if (derived := vars(area).get("_derived")) is not None:
                values |= derived.__func__(env)
        made = cls(**values)
        for area in _areas(cls):
            if (check := vars(area).get("_check")) is not None:
                check(made)
        return made


def _areas(cls: type) -> list[type]:
    return [area for area in reversed(cls.__mro__) if issubclass(area, Section) and area is not Section]


def declarations(area: type[Section]) -> Iterator[Setting[Any]]:
    """Every variable an area reads, in the order of its source; a class made of areas (``Settings``): area by
    area, in the order of its bases; a nested area where it is declared."""
    parts = [base for base in area.__bases__ if issubclass(base, Section) and base is not Section]
    if parts:
        for part in parts:
            yield from declarations(part)
        return
    entries: list[Setting[Any] | _Section] = [value for value in vars(area).values() if isinstance(value, Setting)]
    for field in dataclasses.fields(area):  # type: ignore[arg-type]
        entries.extend(entry for key in ("setting", "section") if (entry := field.metadata.get(key)) is not None)
    for entry in sorted(entries, key=lambda entry: entry.order):
        if isinstance(entry, _Section):
            yield from declarations(entry.area)
        else:
            yield entry


def declaration(area: type[Section], field_name: str) -> Setting[Any]:
    """The declaration of one field of an area."""
    [field] = [field for field in dataclasses.fields(area) if field.name == field_name]  # type: ignore[arg-type]
    declared: Setting[Any] = field.metadata["setting"]
    return declared


def read_field(area: type[Section], field_name: str, env: Mapping[str, str]) -> Any:
    """One field of an area read alone, without the rest of its area (its default when unset)."""
    return declaration(area, field_name).read(env)
