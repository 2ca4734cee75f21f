"""slack_message: an Alert as an incoming-webhook body in Slack's Block Kit shape, within Slack's limits."""

import json

from etl_assets.observability.alert_message import (
    ERROR_MAX_CHARS,
    FIELD_MAX_CHARS,
    HEADER_MAX_CHARS,
    MAX_FIELDS,
    SECTION_MAX_CHARS,
    Alert,
    format_count,
    slack_message,
)

CHECK = Alert(
    kind="check",
    title="ERROR: check positive_prices failed on events",
    link="https://dagster.example.com/assets/events?view=checks",
    run_id="8c1f0a52-run",
    job_name="daily_events_job",
    asset="events",
    partition="2025-08-02",
    check_name="positive_prices",
    severity="ERROR",
    counts={"negative price": 3, "rows checked": 120_000, "rejected share": 0.0525},
    description="3 purchases have a negative price",
)

RUN = Alert(
    kind="run",
    title="Run of daily_events_job failed",
    link="https://dagster.example.com/runs/8c1f0a52-run",
    run_id="8c1f0a52-run",
    job_name="daily_events_job",
    asset="events",
    partition="2025-08-02",
    error="events: KeyError: 'occurred_at'",
)


def texts(message: dict) -> list[str]:
    found = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            found.append(block["text"]["text"])
        found.extend(f["text"] for f in block.get("fields", []))
        found.extend(e["text"] for e in block.get("elements", []))
    return found


def test_a_failed_check_names_asset_partition_check_severity_counts_and_link():
    message = slack_message(CHECK)
    header, fields, description, counts, link = message["blocks"]

    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": f":red_circle: {CHECK.title}", "emoji": True},
    }
    assert [f["text"] for f in fields["fields"]] == [
        "*Asset*\n`events`",
        "*Partition*\n2025-08-02",
        "*Check*\n`positive_prices`",
        "*Severity*\nERROR",
        "*Job*\n`daily_events_job`",
        "*Run*\n`8c1f0a52-run`",
    ]
    assert all(f["type"] == "mrkdwn" for f in fields["fields"])
    assert description["text"]["text"] == "3 purchases have a negative price"
    assert counts["text"]["text"] == (
        "*Counts*\n• negative price: 3\n• rows checked: 120,000\n• rejected share: 0.0525"
    )
    assert link == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"<{CHECK.link}|Open in Dagster>"}],
    }
    assert message["text"] == f"{CHECK.title} · partition 2025-08-02"


def test_a_warning_says_warn_and_looks_different_from_an_error():
    warning = Alert(**{**CHECK.__dict__, "severity": "WARN", "title": "WARN: check null_share failed on events"})
    message = slack_message(warning)
    assert message["blocks"][0]["text"]["text"].startswith(":large_yellow_circle: WARN")
    assert "*Severity*\nWARN" in texts(message)


def test_a_failed_run_shows_its_error_and_links_to_the_run():
    message = slack_message(RUN)
    all_text = "\n".join(texts(message))
    assert message["blocks"][0]["text"]["text"] == ":x: Run of daily_events_job failed"
    assert "*Error*\n```events: KeyError: 'occurred_at'```" in all_text
    assert "<https://dagster.example.com/runs/8c1f0a52-run|Open in Dagster>" in all_text
    assert "*Check*" not in all_text and "*Severity*" not in all_text and "*Counts*" not in all_text
    assert message["text"] == "Run of daily_events_job failed · partition 2025-08-02 · events: KeyError: 'occurred_at'"


def test_long_errors_are_truncated_within_slack_limits():
    long_error = "Traceback line\n" * 2000
    message = slack_message(Alert(**{**RUN.__dict__, "error": long_error}))
    [error_block] = [b for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("*Error*")]
    error_text = error_block["text"]["text"]
    assert len(error_text) <= SECTION_MAX_CHARS
    assert error_text.endswith("…```")
    assert len(error_text) < ERROR_MAX_CHARS + 20
    assert "\n" not in message["text"] and len(message["text"]) <= 300


def test_every_text_stays_within_slack_limits_however_long_the_values():
    huge = Alert(
        kind="check",
        title="ERROR: check " + "c" * 500 + " failed",
        link="https://dagster.example.com/assets/x",
        asset="a" * 5000,
        partition="p" * 5000,
        check_name="c" * 500,
        severity="ERROR",
        run_id="r",
        job_name="j" * 5000,
        counts={f"rule {n} " + "x" * 200: n for n in range(200)},
        description="d" * 10_000,
    )
    message = slack_message(huge)
    header, fields, description, counts, _ = message["blocks"]
    assert len(header["text"]["text"]) <= HEADER_MAX_CHARS
    assert len(fields["fields"]) <= MAX_FIELDS
    assert all(len(f["text"]) <= FIELD_MAX_CHARS for f in fields["fields"])
    assert len(description["text"]["text"]) <= SECTION_MAX_CHARS
    assert len(counts["text"]["text"]) <= SECTION_MAX_CHARS
    count_lines = counts["text"]["text"].splitlines()
    assert count_lines[0] == "*Counts*"
    assert count_lines[1] == "• rule 0 " + "x" * 192 + "…: 0"  # a label is cut at 200 characters
    shown = len(count_lines) - 2
    assert 0 < shown < 20
    assert count_lines[-1] == f"… and {200 - shown} more"  # whole lines are dropped, never half of one


def test_at_most_twenty_counts_are_listed():
    message = slack_message(Alert(**{**CHECK.__dict__, "counts": {f"rule {n}": n for n in range(25)}}))
    count_lines = message["blocks"][3]["text"]["text"].splitlines()
    assert count_lines[1:3] == ["• rule 0: 0", "• rule 1: 1"]
    assert len(count_lines) == 22
    assert count_lines[-1] == "… and 5 more"


def test_user_text_is_escaped_so_it_cannot_make_links_or_mentions():
    message = slack_message(
        Alert(**{**RUN.__dict__, "error": "TypeError: <class 'int'> & <!channel>", "asset": "a<b>"})
    )
    all_text = "\n".join(texts(message))
    assert "&lt;class 'int'&gt; &amp; &lt;!channel&gt;" in all_text
    assert "`a&lt;b&gt;`" in all_text
    assert "<!channel>" not in all_text


def test_a_link_with_a_pipe_or_angle_bracket_cannot_break_out_of_its_link():
    message = slack_message(Alert(**{**RUN.__dict__, "link": "https://d.example.com/assets/a|b>c"}))
    assert message["blocks"][-1]["elements"][0]["text"] == "<https://d.example.com/assets/a%7Cb%3Ec|Open in Dagster>"


def test_the_message_is_json_serialisable_even_with_odd_numbers():
    odd = Alert(**{**CHECK.__dict__, "counts": {"nan share": float("nan"), "inf": float("inf"), "big": 1e20}})
    body = json.dumps(slack_message(odd), allow_nan=False)
    assert json.loads(body)["blocks"][3]["text"]["text"] == "*Counts*\n• nan share: nan\n• inf: inf\n• big: 1e+20"


def test_numbers_are_formatted_for_people():
    assert [format_count(v) for v in (3, 120_000, 2.0, 0.0525, 1234.567, True)] == [
        "3",
        "120,000",
        "2",
        "0.0525",
        "1,234.57",
        "true",
    ]
