"""Alerts as Slack incoming-webhook messages (Block Kit), built from plain values.

Slack's limits shape the output: a header's text ≤ 150 characters, a section's text ≤ 3000, a
section ≤ 10 fields of ≤ 2000 characters each. User text (asset keys, errors, metadata labels) is
escaped for mrkdwn, so an error such as ``<class 'KeyError'>`` is shown, not read as a link.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

HEADER_MAX_CHARS = 150
SECTION_MAX_CHARS = 3000
FIELD_MAX_CHARS = 2000
MAX_FIELDS = 10
FALLBACK_MAX_CHARS = 300
ERROR_MAX_CHARS = 1500
"""How much of an error message an alert carries; the rest is in the run's logs."""

MAX_COUNTS_SHOWN = 20
COUNT_LABEL_MAX_CHARS = 200

_EMOJI = {("check", "ERROR"): ":red_circle:", ("check", "WARN"): ":large_yellow_circle:"}
_RUN_EMOJI = ":x:"


@dataclass(frozen=True)
class Alert:
    """One thing that went wrong: a failed asset check evaluation or a failed run."""

    kind: Literal["check", "run"]
    title: str
    link: str
    """A URL into the Dagster UI."""
    run_id: str | None = None
    job_name: str | None = None
    asset: str | None = None
    partition: str | None = None
    check_name: str | None = None
    severity: str | None = None
    """``ERROR`` or ``WARN`` (checks only)."""
    counts: Mapping[str, int | float] = field(default_factory=dict)
    """Numbers that say how bad it is, e.g. rows by failed rule (a check's numeric metadata)."""
    description: str | None = None
    """What the check said about its result."""
    error: str | None = None
    """Why the run failed (the alert builder cuts it to ``ERROR_MAX_CHARS``; so does ``slack_message``)."""


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_count(value: int | float) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value) or abs(value) >= 1e15:
        return f"{value:.4g}"
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def fallback_text(alert: Alert) -> str:
    """The notification's one-line text (shown where blocks are not: push notifications, old clients)."""
    parts = [alert.title]
    if alert.partition:
        parts.append(f"partition {alert.partition}")
    if alert.kind == "run" and alert.error:
        parts.append(alert.error)
    return truncate(escape_mrkdwn(_one_line(" · ".join(parts))), FALLBACK_MAX_CHARS)


def _field(label: str, value: str, *, code: bool = False) -> dict[str, str]:
    shown = escape_mrkdwn(value)
    shown = f"`{shown}`" if code else shown
    return {"type": "mrkdwn", "text": truncate(f"*{label}*\n{shown}", FIELD_MAX_CHARS)}


def _fields(alert: Alert) -> list[dict[str, str]]:
    candidates: list[tuple[str, str | None, bool]] = [
        ("Asset", alert.asset, True),
        ("Partition", alert.partition, False),
        ("Check", alert.check_name, True),
        ("Severity", alert.severity, False),
        ("Job", alert.job_name, True),
        ("Run", alert.run_id, True),
    ]
    return [_field(label, value, code=code) for label, value, code in candidates if value][:MAX_FIELDS]


def _counts_text(counts: Mapping[str, int | float]) -> str:
    lines = ["*Counts*"]
    size = len(lines[0])
    items = list(counts.items())
    for index, (label, value) in enumerate(items):
        line = f"• {truncate(escape_mrkdwn(label), COUNT_LABEL_MAX_CHARS)}: {format_count(value)}"
        more = f"… and {len(items) - index} more"
        if index == MAX_COUNTS_SHOWN or size + len(line) + len(more) + 2 > SECTION_MAX_CHARS:
            lines.append(more)
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _error_text(error: str) -> str:
    fence = "```"
    room = SECTION_MAX_CHARS - len("*Error*\n") - 2 * len(fence)
    # Escaping can lengthen the text, so cut it after escaping; a cut entity (``&am…``) is harmless.
    shown = truncate(escape_mrkdwn(truncate(error.strip(), ERROR_MAX_CHARS)), room)
    return f"*Error*\n{fence}{shown}{fence}"


def _link_target(url: str) -> str:
    # Inside <url|label>, these would end the link or the URL early.
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_message(alert: Alert) -> dict[str, Any]:
    """The JSON body of an incoming-webhook POST: ``{"text": <fallback>, "blocks": [...]}``."""
    emoji = _EMOJI.get((alert.kind, alert.severity or ""), ":warning:") if alert.kind == "check" else _RUN_EMOJI
    header = truncate(_one_line(f"{emoji} {alert.title}"), HEADER_MAX_CHARS)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}]
    fields = _fields(alert)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if alert.description:
        blocks.append(_section(truncate(escape_mrkdwn(alert.description.strip()), SECTION_MAX_CHARS)))
    if alert.counts:
        blocks.append(_section(_counts_text(alert.counts)))
    if alert.error:
        blocks.append(_section(_error_text(alert.error)))
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{_link_target(alert.link)}|Open in Dagster>"}]}
    )
    return {"text": fallback_text(alert), "blocks": blocks}
