"""Pseudonymization of personal data (PII) in a raw payload, before ``normalize`` builds an event from it.

A PII value is replaced by ``pii:`` and the first 32 hex digits of its keyed HMAC-SHA256: the same value
always gives the same pseudonym under one key (analysts still count distinct users and join on it), another
key gives another, and nobody without the key can tell which value it stands for.

**Which values are PII** (``PiiPolicy.fields``, e.g. ``email, ip, phone``):

- *by key*, at any depth: a key is compared in snake_case, lower case (``emailAddress``, ``Email-Address``
  and ``email_address`` all read ``email_address``); it matches a field name when it **equals** it,
  **starts with** ``<name>_`` or **ends with** ``_<name>``. So ``email`` matches ``email``, ``Email``,
  ``email_address``, ``user_email``, ``traits.email``; ``ip`` matches ``ip``, ``context.ip``, ``ip_address``,
  ``client_ip``; ``phone`` matches ``phone_number``, ``mobile_phone``. Whole words only: ``zip``, ``tip`` or
  ``telephone`` are not ``ip`` or ``phone``. Everything under a matching key is PII: a string or a number is
  replaced, each value of an object or a list under it too; ``null``, booleans and blank strings stay.
- *by value*, anywhere, whatever the key: with ``email`` configured, every email address inside any string
  (a user id that is an email, ``?email=ann%40example.com`` in a URL); with ``ip`` configured, a string that
  is an IP address. Phone numbers are too ambiguous to find by value: only their keys mark them.

The top-level keys an event's identity is read from (its id, type and timestamp, under every alias) are never
changed: staging keyed the record by them before this runs, and they are not personal data.

**Canonical form before hashing**, so one person gives one pseudonym: surrounding blanks are dropped; an
email address is lower-cased (``%40`` read as ``@``); an IP address takes its standard text (``0:0::A`` →
``::a``; an IPv4-mapped ``::ffff:10.0.0.1`` → ``10.0.0.1``); a phone number keeps its digits and a leading ``+``.

The transform runs on raw staged payloads only (the archive and staging keep what was received), so a value
is never pseudonymized twice; ``pseudonymize`` is deliberately not idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from etl_assets.transform.normalize import IDENTITY_KEYS, RecordRejected

PREFIX = "pii:"
DIGEST_CHARS = 32
DEFAULT_FIELDS = ("email", "ip", "phone")
MAX_DEPTH = 256  # orjson writes 254 levels at most: a deeper record is rejected by normalize anyway

_CAMEL_LOWER_UPPER = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_ACRONYM = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
# Bounded (RFC 5321 lengths) so that a long hostile string costs linear time, not quadratic.
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}?(?:@|%40)[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_IP_CHARS = frozenset("0123456789abcdefABCDEF.:")
_IPV4_PART = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_IPV4_PART}(?:\.{_IPV4_PART}){{3}}")
"""An IPv4 address in its standard text (four parts of 0 to 255, no leading zeros): ``ipaddress`` reads it as an
address whose text is itself, so it needs no parsing."""
_PHONE = re.compile(r"\+?[0-9 ().\-/]+")
_MIN_PHONE_DIGITS = 6


class PiiKeyMissing(Exception):
    """A record holds PII and no key was given to pseudonymize it: nothing may be loaded in clear."""

    def __init__(self, path: list[str]) -> None:
        super().__init__()
        self.path = path

    @property
    def where(self) -> str:
        return ".".join(self.path) or "a value"

    def __str__(self) -> str:
        return f"a record holds PII in {self.where!r} and no pseudonymization key was given"


def snake_name(name: str) -> str:
    """``emailAddress``, ``IPAddress``, ``Email-Address`` → ``email_address``, ``ip_address``, ``email_address``."""
    spaced = _CAMEL_ACRONYM.sub("_", _CAMEL_LOWER_UPPER.sub("_", name))
    return _NOT_WORD.sub("_", spaced.lower()).strip("_")


def key_matches(key: str, fields: Iterable[str]) -> bool:
    """Whether ``key`` names one of ``fields`` (snake_case names): equal, ``<name>_…`` or ``…_<name>``."""
    snake = snake_name(key)
    return any(snake == name or snake.startswith(f"{name}_") or snake.endswith(f"_{name}") for name in fields)


def canonical(value: str) -> str:
    """The form a PII value is hashed in, so spellings of one email, IP or phone number give one pseudonym."""
    text = value.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if "@" in text or "%40" in text:
        return text.replace("%40", "@").lower()
    if _looks_like_ip(text):
        if _IPV4.fullmatch(text):
            return text  # already the standard text of its address
        address = ipaddress.ip_address(text)
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return str(mapped or address)
    if _PHONE.fullmatch(text):
        digits = "".join(char for char in text if char.isdigit())
        if len(digits) >= _MIN_PHONE_DIGITS:
            return ("+" if text.startswith("+") else "") + digits
    return text


def pseudonymize(value: str, key: bytes) -> str:
    """``pii:`` + the first 32 hex digits of HMAC-SHA256(key, canonical value): stable, keyed, one-way."""
    mac = _keyed(key).copy()
    mac.update(canonical(value).encode())
    return PREFIX + mac.digest()[:_DIGEST_BYTES].hex()


_DIGEST_BYTES = DIGEST_CHARS // 2


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with ``key`` set up, to copy for each value (a third cheaper than setting the key up again)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _looks_like_ip(text: str) -> bool:
    if not 2 <= len(text) <= 45 or not _IP_CHARS.issuperset(text):
        return False
    # An IPv6 address has a colon; an IPv4 address, without one, four dotted parts (what ipaddress requires).
    if ":" not in text and text.count(".") != 3:
        return False
    return _IPV4.fullmatch(text) is not None or _is_ip_address(text)


@lru_cache(maxsize=4096)
def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PiiPolicy:
    """What counts as PII and the key that pseudonymizes it (``None``: a record holding PII fails).

    The key never shows in ``repr`` (nor therefore in logs or run metadata)."""

    fields: tuple[str, ...] = DEFAULT_FIELDS
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(dict.fromkeys(snake_name(name) for name in self.fields if name)))

    @property
    def finds_emails(self) -> bool:
        return "email" in self.fields

    @property
    def finds_ips(self) -> bool:
        return "ip" in self.fields


def pseudonymize_payload(payload: Any, policy: PiiPolicy) -> Any:
    """``payload`` with every PII value replaced by its pseudonym (a new object; the input is left as it was).

    Raises ``PiiKeyMissing`` when it holds PII and ``policy.key`` is ``None``. Anything not an object is
    returned as it is (``normalize`` rejects it).
    """
    if not isinstance(payload, Mapping) or not policy.fields:
        return payload
    return _walker(policy.fields, policy.key).walk_dict(payload, False, 0, IDENTITY_KEYS)


_KEPT = 4096
"""Entries each cache of a walker keeps (key names, pseudonyms, texts holding an email address)."""
_KEPT_CHARS = 256
"""Longer texts are not cached: a cache holds short, repeated values (an address, an IP, a user's email)."""
_NOTHING_SKIPPED: frozenset[str] = frozenset()


@lru_cache(maxsize=8)
def _walker(fields: tuple[str, ...], key: bytes | None) -> _Walker:
    """The walker of a policy, shared by equal policies (a run makes its own), so its caches outlive a batch."""
    return _Walker(fields, key)


class _Walker:
    """Walks a payload and replaces its PII, with caches of what repeats from record to record: whether a key
    names PII, the pseudonym of a value, the text an email address inside a string becomes."""

    __slots__ = ("_emails_in", "_marks", "_pseudonym", "fields", "finds_emails", "finds_ips", "key")

    def __init__(self, fields: tuple[str, ...], key: bytes | None) -> None:
        self.fields = fields
        self.key = key
        self.finds_emails = "email" in fields
        self.finds_ips = "ip" in fields
        self._marks: dict[Any, bool] = {}
        self._pseudonym = lru_cache(maxsize=_KEPT)(self._pseudonym_of)
        self._emails_in = lru_cache(maxsize=_KEPT)(self._emails_replaced)

    def _pseudonym_of(self, text: str) -> str:
        if self.key is None:
            raise PiiKeyMissing([])
        return pseudonymize(text, self.key)

    def _hidden(self, text: str) -> str:
        return self._pseudonym(text) if len(text) <= _KEPT_CHARS else self._pseudonym_of(text)

    def _marked(self, key: Any) -> bool:
        """Whether ``key`` names PII (remembered for the key names a source sends)."""
        marked = self._marks.get(key)
        if marked is None:
            marked = isinstance(key, str) and key_matches(key, self.fields)
            if len(self._marks) < _KEPT and (not isinstance(key, str) or len(key) <= _KEPT_CHARS):
                self._marks[key] = marked
        return marked

    def walk(self, value: Any, inside: bool, depth: int) -> Any:
        """``value`` with its PII replaced (``value`` itself when nothing changed); ``inside``: under a PII key."""
        if isinstance(value, str):
            if inside:
                return value if not value or value.isspace() else self._hidden(value)
            return self._found_in_text(value)
        if isinstance(value, dict):
            return self.walk_dict(value, inside, depth)
        if isinstance(value, list):
            return self._walk_list(value, inside, depth)
        if inside and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return self._hidden(repr(value) if isinstance(value, float) else str(value))
        return value

    def walk_dict(
        self, value: Mapping[str, Any], inside: bool, depth: int, skipped: frozenset[str] = _NOTHING_SKIPPED
    ) -> Any:
        """``value`` with its PII replaced; keys in ``skipped`` (the record's identity at the top) stay as they are.

        The common kinds of values (text, objects, lists) are handled here rather than through ``walk``: this
        loop runs for every key of every record.
        """
        if depth >= MAX_DEPTH:
            raise RecordRejected(f"record cannot be stored as JSON: nested deeper than {MAX_DEPTH} levels")
        changed: dict[str, Any] | None = None
        marks = self._marks
        finds_emails, finds_ips = self.finds_emails, self.finds_ips
        for key, item in value.items():
            if key in skipped:
                continue
            marked = inside or marks.get(key)
            if marked is None:
                marked = self._marked(key)
            kind = type(item)
            try:
                if kind is str:
                    if marked:
                        if not item or item.isspace():
                            continue
                        new = self._hidden(item)
                    elif (finds_emails and ("@" in item or "%40" in item)) or (
                        finds_ips and (item[:1] in _IP_CHARS or item[:1].isspace())
                    ):
                        new = self._found_in_text(item)
                    else:
                        continue  # neither an email address nor, starting as no IP address does, an IP address
                elif kind is dict:
                    new = self.walk_dict(item, marked, depth + 1)
                elif kind is list:
                    new = self._walk_list(item, marked, depth + 1)
                elif not marked and (item is None or kind is int or kind is float or kind is bool):
                    continue
                else:
                    new = self.walk(item, marked, depth + 1)
            except PiiKeyMissing as missing:
                missing.path.insert(0, str(key))
                raise
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed

    def _walk_list(self, value: list[Any], inside: bool, depth: int) -> Any:
        if depth >= MAX_DEPTH:
            raise RecordRejected(f"record cannot be stored as JSON: nested deeper than {MAX_DEPTH} levels")
        changed: list[Any] | None = None
        for index, item in enumerate(value):
            new = self._found_in_text(item) if type(item) is str and not inside else self.walk(item, inside, depth + 1)
            if new is not item:
                if changed is None:
                    changed = list(value)
                changed[index] = new
        return value if changed is None else changed

    def _found_in_text(self, text: str) -> str:
        """A string under no PII key: the email addresses inside it, or the whole of it if it is an IP address."""
        if self.finds_emails and ("@" in text or "%40" in text):
            replaced = self._emails_in(text) if len(text) <= _KEPT_CHARS else self._emails_replaced(text)
            if replaced != text:
                return replaced
        if self.finds_ips and _looks_like_ip(text.strip()):
            return self._hidden(text)
        return text

    def _emails_replaced(self, text: str) -> str:
        return _EMAIL.sub(lambda match: self._hidden(match.group()), text)
